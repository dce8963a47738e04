"""Render jobs as plain Python: states, allowed transitions, limits, and the job record itself."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # QUEUED -> FAILED: work that failed before any frame started (a dead-lettered fan-out, an
    # unexpected error before the claim, poison work).
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLING}),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
    JobStatus.COMPLETED: frozenset(),
}

# States in which work could get stuck; only these are indexed by the sparse gsi2.
ACTIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.CANCELLING})


FINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# A chunk (of a running job) still has work to do in these states.
UNFINISHED_STATES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})


def can_transition(src: JobStatus, dst: JobStatus) -> bool:
    """True when the job state machine (docs/ARCHITECTURE.md) allows moving from `src` to `dst`."""
    return dst in TRANSITIONS[src]


def sources(target: JobStatus) -> frozenset[JobStatus]:
    """Every state from which the state machine allows moving to `target`."""
    return frozenset(src for src, dsts in TRANSITIONS.items() if target in dsts)


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class OutputFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"

    @property
    def extension(self) -> str:
        return "png" if self is OutputFormat.PNG else "jpg"

    @property
    def content_type(self) -> str:
        return "image/png" if self is OutputFormat.PNG else "image/jpeg"


# Documented limits (README "Limits"); the API answers 400 past them.
MAX_DIMENSION = 4096
MIN_DIMENSION = 16
MAX_SAMPLES = 4096
MAX_FRAME_NUMBER = 99_999  # frame keys are five digits
MAX_FRAMES_PER_JOB = 10_000
MAX_CHUNKS_PER_JOB = 1_000
MAX_CHUNK_SIZE = 100
DEFAULT_CHUNK_SIZE = 5
MAX_SCENE_NAME = 200
PREVIEW_MAX_FRAMES = 16  # the contact sheet samples at most this many frames


class RendererName(StrEnum):
    SIMULATED = "simulated"  # the default: a test pattern per frame (jobs/renderers/simulated.py)
    BLENDER = "blender"  # the customer's own .blend (jobs/renderers/blender.py), named by `Job.scene_file`


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

    Listings by status sort on the id alone (gsi3: `<status>#<id>`), so newest-first needs no date.
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
    render_seconds: float = 0.0
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
    callback_url: str | None = None  # POSTed the job when it ends (webhooks: jobs/services/webhooks.py)

    @property
    def frames_total(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def frames(self) -> range:
        return range(self.frame_start, self.frame_end + 1)

    @property
    def progress(self) -> float:
        return round(self.frames_done / self.frames_total, 4)

    @property
    def chunks_total(self) -> int:
        return chunk_count(self.frames_total, self.chunk_size)

    @property
    def single_chunk(self) -> bool:
        """A job of one chunk is one task: its job item is the unit of work (no task items, no fan-out)."""
        return self.chunks_total == 1

    def chunk_frames(self, index: int) -> range:
        first = self.frame_start + index * self.chunk_size
        return range(first, min(first + self.chunk_size, self.frame_end + 1))

    def new_chunks(self) -> list[Chunk]:
        """The QUEUED chunk item of every chunk, in this attempt, as the fan-out creates missing ones."""
        return [
            Chunk(
                job_id=self.id,
                index=i,
                frame_start=frames.start,
                frame_end=frames.stop - 1,
                status=JobStatus.QUEUED,
                attempt=self.attempt,
            )
            for i, frames in ((i, self.chunk_frames(i)) for i in range(self.chunks_total))
        ]

    def as_chunk(self) -> Chunk:
        """A one-chunk job is its own unit of work: the job item, seen as its only chunk (index None)."""
        return Chunk(
            job_id=self.id,
            index=None,
            frame_start=self.frame_start,
            frame_end=self.frame_end,
            status=self.status,
            attempt=self.attempt,
            frames_done=self.frames_done,
            render_failures=self.render_failures,
            crashes=self.crashes,
            render_seconds=self.render_seconds,
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
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    results: tuple[FrameResult, ...] = ()

    @property
    def frames(self) -> range:
        return range(self.frame_start, self.frame_end + 1)

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


def frame_key(job_id: str, frame: int, output_format: OutputFormat) -> str:
    return f"jobs/{job_id}/frames/{frame:05d}.{output_format.extension}"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


def preview_key(job_id: str) -> str:
    return f"jobs/{job_id}/preview.png"


def animation_key(job_id: str) -> str:
    """The animated preview (WebP) of a finished job, made with the contact sheet from the same frames."""
    return f"jobs/{job_id}/preview.webp"


def log_key(job_id: str, chunk: int) -> str:
    """A chunk's render log (one-chunk jobs: chunk 0), as JSON `{"log", "truncated"}`."""
    return f"jobs/{job_id}/logs/{chunk:05d}.json"


def owner_slug(owner: str) -> str:
    """An owner's name as a safe, fixed-length key segment (owner names may hold any character)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def asset_key(owner: str, sha256: str) -> str:
    """Where an owner's scene file lives: content-addressed, and under the owner, so one owner's hash never
    names another's file."""
    return f"assets/{owner_slug(owner)}/{sha256}"
