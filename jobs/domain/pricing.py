"""What work costs: the worker's size and Fargate's prices (named once, for the settings and the CDK app),
the month a spend counts in, the scout frames of a quote and the quote's arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from jobs.domain.frames import FrameList

# The render worker's Fargate task (4 vCPU, 8 GiB): infra/config.py sizes the task from these, and the
# settings price a worker-second by them (RENDER_WORKER_VCPU, RENDER_WORKER_MEMORY_GB).
WORKER_CPU_UNITS = 4096  # 1024 units = 1 vCPU
WORKER_MEMORY_MIB = 8192
# Fargate, Linux/x86, us-east-1, on demand (dollars per vCPU-hour and per GB-hour).
PRICE_VCPU_HOUR = 0.04048
PRICE_GB_HOUR = 0.004445
SCOUT_FRAMES = 3  # frames a quote renders: the first, middle and last of the job's


@dataclass(frozen=True)
class Prices:
    """The price of one render worker's time: its size times Fargate's prices."""

    vcpu: float
    memory_gb: float
    vcpu_hour: float
    gb_hour: float

    @property
    def per_worker_second(self) -> float:
        return (self.vcpu * self.vcpu_hour + self.memory_gb * self.gb_hour) / 3600

    def dollars(self, worker_seconds: float) -> float:
        return round(worker_seconds * self.per_worker_second, 4)


def month_of(now: datetime) -> str:
    """The calendar month (UTC) a spend at `now` counts in: `2026-12`."""
    return now.strftime("%Y-%m")


def scout_frames(frames: FrameList, count: int = SCOUT_FRAMES) -> FrameList:
    """The frames a quote renders: `count` spread over the job's (first, middle, last), all of a shorter job."""
    if len(frames) <= count:
        return frames
    positions = sorted({round(i * (len(frames) - 1) / (count - 1)) for i in range(count)})
    return FrameList.of(frames[p] for p in positions)


@dataclass(frozen=True)
class QuoteFor:
    """What a scout job quotes: the full job's frames, chunks and chunk size."""

    frames: int
    chunks: int
    chunk_size: int

    def as_dict(self) -> dict:
        return {"frames": self.frames, "chunks": self.chunks, "chunk_size": self.chunk_size}


@dataclass(frozen=True)
class Quote:
    frames: int
    chunks: int
    seconds_per_frame: float
    startup_seconds: float
    renderer_start_seconds: float  # of startup_seconds: the renderer's own start, once per worker when it is kept
    renderer_starts: int
    worker_seconds: float
    workers: int
    wall_seconds: float | None  # None: no live worker to count on
    dollars: float

    def as_dict(self) -> dict:
        return {
            "frames": self.frames,
            "chunks": self.chunks,
            "seconds_per_frame": self.seconds_per_frame,
            "startup_seconds": self.startup_seconds,
            "renderer_start_seconds": self.renderer_start_seconds,
            "renderer_starts": self.renderer_starts,
            "worker_seconds": self.worker_seconds,
            "workers": self.workers,
            "wall_seconds": self.wall_seconds,
            "dollars": self.dollars,
        }


def quote_estimate(
    *,
    target: QuoteFor,
    scouted: int,
    worker_seconds: float,
    render_seconds: float,
    first_frame_seconds: float,
    workers: int,
    prices: Prices,
    kept_renderer: bool = False,
) -> Quote:
    """The full job's cost from its scout (`scouted` frames rendered in one chunk, so one start-up).

    A frame after a chunk's first costs the interval between frames (`render_seconds` without the first
    frame's, which holds Blender's start-up); a chunk costs the rest of the scout's worker-seconds once (the
    worker's start-up: claim, scene download, Blender start, the writes). Wall time: the chunks in waves of
    the live workers, each wave as long as a full chunk.

    With `kept_renderer` (Blender kept across a job's consecutive chunks: RENDER_BLENDER_PERSISTENT), the
    renderer's own start (the first frame's excess over the steady rate) is paid once per worker the chunks
    spread over, not once per chunk; the rest of the start-up (claim, download, writes) stays per chunk.
    """
    # One frame cannot tell its render from Blender's start: then all of it counts per frame.
    per_frame = (render_seconds - first_frame_seconds) / (scouted - 1) if scouted > 1 else render_seconds
    per_frame = max(per_frame, 0.0)
    startup = max(worker_seconds - scouted * per_frame, 0.0)
    renderer_start = min(max(first_frame_seconds - per_frame, 0.0), startup) if scouted > 1 else 0.0
    starts = target.chunks
    if kept_renderer:
        starts = min(target.chunks, max(workers, 1))
    per_chunk = startup - renderer_start
    total = target.frames * per_frame + target.chunks * per_chunk + starts * renderer_start
    wall = None
    if workers > 0:
        waves = math.ceil(target.chunks / min(workers, target.chunks))
        chunk = per_chunk + min(target.chunk_size, target.frames) * per_frame
        wall = round(waves * chunk + (1 if kept_renderer else waves) * renderer_start, 1)
    return Quote(
        frames=target.frames,
        chunks=target.chunks,
        seconds_per_frame=round(per_frame, 3),
        startup_seconds=round(startup, 3),
        renderer_start_seconds=round(renderer_start, 3),
        renderer_starts=starts,
        worker_seconds=round(total, 1),
        workers=workers,
        wall_seconds=wall,
        dollars=prices.dollars(total),
    )
