"""The records of the work: what to render (Scene), a frame's result, a failure, the job and its chunks."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from jobs.domain.frames import FrameList
from jobs.domain.pricing import QuoteFor
from jobs.domain.states import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNKS_PER_JOB,
    MAX_FRAME_NUMBER,
    MAX_FRAMES_PER_JOB,
    JobStatus,
    OutputFormat,
    Priority,
    RendererName,
)
from jobs.domain.steps import Step, StepStatus

SHA256_HEX_LENGTH = 64


@dataclass(frozen=True)
class Scene:
    """What to render. For a Blender job, width, height and samples may be None: the scene file's own
    settings apply (output_format is always the worker's: frames are stored in the job's format)."""

    name: str
    width: int | None
    height: int | None
    output_format: OutputFormat
    samples: int | None

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "output_format": str(self.output_format)}


@dataclass(frozen=True)
class FrameResult:
    """One rendered frame as stored in S3."""

    frame: int
    key: str
    size: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


MAX_ERROR_MESSAGE = 500
MAX_WARNING = 400  # characters of one warning on a job


@dataclass(frozen=True)
class Failure:
    """Why work failed, as the customer sees it: a stable code and a short message (no internals).

    Raw exception text (which may name roles, accounts or hosts) goes to the worker's log only.
    """

    code: str
    message: str

    def __post_init__(self):
        if len(self.message) > MAX_ERROR_MESSAGE:
            object.__setattr__(self, "message", self.message[: MAX_ERROR_MESSAGE - 1] + "\u2026")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """32 hex digits that sort by creation time (48-bit milliseconds, then 80 random bits), like a UUIDv7.

    Ties in the owner's listing (gsi1: `<created_at>#<id>`) sort by it, so newest-first stays exact.
    """
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    scene: Scene
    frame_start: int
    frame_end: int
    priority: Priority
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    attempt: int = 1
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunks_done: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    frames_done: int = 0
    render_failures: int = 0
    crashes: int = 0  # claims of a one-chunk job whose holder died without releasing it
    # As its chunks' (Chunk below), summed by their progress writes: render seconds, worker-seconds (each holder's
    # wall time from its claim to its writes, Blender's start-up included), and each holder's first frame's seconds.
    render_seconds: float = 0.0
    worker_seconds: float = 0.0
    first_frame_seconds: float = 0.0
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    # A one-chunk job is its own chunk: its frame results live on the job item (manifest.json for
    # more than one frame); a job of several chunks keeps them on its task items.
    results: tuple[FrameResult, ...] = ()
    has_preview: bool = False
    fanout_sent: int = -1  # highest chunk index whose message the fan-out has sent, this attempt
    renderer: RendererName = RendererName.SIMULATED
    scene_file: str | None = None  # the SHA-256 of the owner's asset (Blender jobs), see asset_key
    # Blender jobs: a file that reads files from outside itself fails at its first chunk, unless this is off
    fail_on_missing_files: bool = True
    warnings: tuple[str, ...] = ()  # what the owner should know: the farm's changes to the file's settings
    callback_url: str | None = None  # POSTed the job when it ends (webhooks: jobs/services/webhooks.py)
    steps: tuple[Step, ...] = ()  # run one after another once every frame is assembled (jobs/domain/steps.py)
    steps_attempt: int = 0  # the attempt whose assembly started the steps (0: not started)
    # The frames, when not every one from frame_start to frame_end (`frames: "1-99x2,150"`): see `frames`.
    frame_list: FrameList | None = None
    quote_for: QuoteFor | None = None  # a scout job (a dry run): the full job it quotes

    def __post_init__(self):
        _normalise_frame_list(self)

    @property
    def frames(self) -> FrameList:
        """What the job renders, in order: its frame list, or every frame from frame_start to frame_end."""
        return self.frame_list if self.frame_list is not None else FrameList.span(self.frame_start, self.frame_end)

    @property
    def frames_total(self) -> int:
        return len(self.frames)

    @property
    def progress(self) -> float:
        return round(self.frames_done / self.frames_total, 4)

    @property
    def chunks_total(self) -> int:
        return chunk_count(self.frames_total, self.chunk_size)

    @property
    def single_chunk(self) -> bool:
        """A job of one chunk is one task: its job item is the unit of work (no task items, no fan-out).

        Not a job with steps: its frames end at the assembly, where its steps start, so it has chunk items. Nor a
        scout job (a quote): its chunk is measured as a chunk of the job it quotes is, without the assembly's
        outputs (which a one-chunk job makes before its last write).
        """
        return self.chunks_total == 1 and not self.steps and self.quote_for is None

    @property
    def current_step(self) -> int | None:
        """The index of the first step not COMPLETED (the one to run), None when there is none."""
        return next((i for i, s in enumerate(self.steps) if s.status is not StepStatus.COMPLETED), None)

    def chunk_frames(self, index: int) -> FrameList:
        """Chunk `index`'s frames: the next `chunk_size` of the job's frames (of its list, not of its span)."""
        return self.frames[index * self.chunk_size : (index + 1) * self.chunk_size]

    def new_chunks(self) -> list[Chunk]:
        """The QUEUED chunk item of every chunk, in this attempt, as the fan-out creates missing ones."""
        return [
            Chunk(
                job_id=self.id,
                index=i,
                **frame_fields(self.chunk_frames(i)),
                status=JobStatus.QUEUED,
                attempt=self.attempt,
            )
            for i in range(self.chunks_total)
        ]

    def as_chunk(self) -> Chunk:
        """A one-chunk job is its own unit of work: the job item, seen as its only chunk (index None)."""
        return Chunk(
            job_id=self.id,
            index=None,
            frame_start=self.frame_start,
            frame_end=self.frame_end,
            frame_list=self.frame_list,
            status=self.status,
            attempt=self.attempt,
            frames_done=self.frames_done,
            render_failures=self.render_failures,
            crashes=self.crashes,
            render_seconds=self.render_seconds,
            worker_seconds=self.worker_seconds,
            first_frame_seconds=self.first_frame_seconds,
            worker=self.worker,
            lease_token=self.lease_token,
            lease_expires_at=self.lease_expires_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            error_code=self.error_code,
            results=self.results,
        )

    def eta_seconds(self, now: datetime) -> float | None:
        """Remaining time at the rate measured so far (frames done per second since the job started)."""
        if self.status is not JobStatus.PROCESSING or not self.started_at or self.frames_done == 0:
            return None
        rate = self.frames_done / max((now - self.started_at).total_seconds(), 1e-3)
        return round((self.frames_total - self.frames_done) / rate, 1)

    def replace(self, **changes) -> Job:
        return dataclasses.replace(self, **changes)


def chunk_count(frames: int, chunk_size: int) -> int:
    return -(-frames // chunk_size)


def frame_range_problem(start: int, end: int, chunk_size: int) -> tuple[str, str] | None:
    """(field, message) of what is wrong with a job's frames, or None: the limits of docs/using/api.md."""
    if not 0 <= start <= MAX_FRAME_NUMBER or not 0 <= end <= MAX_FRAME_NUMBER:
        return "frame_start", f"Frame numbers are 0 to {MAX_FRAME_NUMBER}."
    if end < start:
        return "frame_end", "Must be at least frame_start."
    count = end - start + 1
    if count > MAX_FRAMES_PER_JOB:
        return "frame_end", f"A job renders at most {MAX_FRAMES_PER_JOB} frames; this asks for {count}."
    return chunks_problem(count, chunk_size)


def chunks_problem(frames: int, chunk_size: int) -> tuple[str, str] | None:
    """("chunk_size", message) when that many frames make too many chunks, or None (a frame list's other
    limits are checked as it is parsed: `FrameList.parse`)."""
    chunks = chunk_count(frames, chunk_size)
    if chunks > MAX_CHUNKS_PER_JOB:
        return "chunk_size", (
            f"{frames} frames in chunks of {chunk_size} make {chunks} chunks; at most {MAX_CHUNKS_PER_JOB} are "
            "allowed, so raise chunk_size."
        )
    return None


def frame_fields(frames: FrameList) -> dict:
    """The frame fields of a Job or Chunk that renders `frames`: first, last and (unless it is every frame
    between them) the list."""
    return {"frame_start": frames.first, "frame_end": frames.last, "frame_list": frames}


def _normalise_frame_list(work: Job | Chunk) -> None:
    """A frame list must start at frame_start and end at frame_end; one of every frame between them is
    dropped, so the same frames are always held (and stored) the same way."""
    frames = work.frame_list
    if frames is None:
        return
    if not frames or (frames.first, frames.last) != (work.frame_start, work.frame_end):
        raise ValueError(f"frame list {frames} does not run from {work.frame_start} to {work.frame_end}")
    if frames.contiguous:
        object.__setattr__(work, "frame_list", None)


@dataclass(frozen=True)
class Chunk:
    """The unit of work: frames rendered by one worker under one lease, one Celery message.

    It is stored in one of two shapes: a job of one chunk is its own chunk (the job item; `index` None),
    a job of several chunks has a chunk item per chunk (`pk=JOB#<id>, sk=TASK#<index:05d>`).
    """

    job_id: str
    index: int | None
    frame_start: int
    frame_end: int
    status: JobStatus
    attempt: int
    frames_done: int = 0
    render_failures: int = 0
    crashes: int = 0  # claims whose holder died without releasing the chunk (poison work counts here)
    render_seconds: float = 0.0
    worker_seconds: float = 0.0  # wall time of its holders, claim to each write (start-up included)
    first_frame_seconds: float = 0.0  # the render seconds of each holder's first frame (Blender's start in it)
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    results: tuple[FrameResult, ...] = ()
    frame_list: FrameList | None = None  # its frames, when not every one from frame_start to frame_end
    # Set by the progress write that completed the chunk when its count brought the job's to every chunk: the
    # cue to assemble, with no read of the job (the count is only a cue: the assembly checks the chunks).
    completes_job: bool = False

    def __post_init__(self):
        _normalise_frame_list(self)

    @property
    def frames(self) -> FrameList:
        return self.frame_list if self.frame_list is not None else FrameList.span(self.frame_start, self.frame_end)

    @property
    def whole_job(self) -> bool:
        """True for the job item of a one-chunk job: finishing the chunk finishes the job."""
        return self.index is None

    @property
    def name(self) -> str:
        """`job <id>` or `job <id> chunk <n>`, as log lines name it."""
        return f"job {self.job_id}" if self.index is None else f"job {self.job_id} chunk {self.index}"

    @property
    def seconds_per_frame(self) -> float | None:
        return round(self.render_seconds / self.frames_done, 3) if self.frames_done else None

    def held_by_live_lease(self, now: datetime) -> bool:
        return (
            self.status is JobStatus.PROCESSING
            and self.lease_token is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def replace(self, **changes) -> Chunk:
        return dataclasses.replace(self, **changes)
