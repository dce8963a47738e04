"""Render jobs as plain Python: states, allowed transitions, limits, and the job record itself."""

from __future__ import annotations

import dataclasses
import uuid
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
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLING}),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
    JobStatus.COMPLETED: frozenset(),
}

# States in which work could get stuck; only these are indexed by the sparse gsi2.
ACTIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.CANCELLING})


def can_transition(src: JobStatus, dst: JobStatus) -> bool:
    """True when DESIGN.md's state machine allows moving from `src` to `dst`."""
    return dst in TRANSITIONS[src]


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
MAX_FRAMES_PER_JOB = 100
MAX_SCENE_NAME = 200


@dataclass(frozen=True)
class Scene:
    name: str
    width: int
    height: int
    output_format: OutputFormat
    samples: int


@dataclass(frozen=True)
class FrameResult:
    """One rendered frame as stored in S3."""

    frame: int
    key: str
    size: int
    sha256: str
    content_type: str


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


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
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    frames_done: int = 0
    render_failures: int = 0
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    # A one-frame job keeps its result on the item; a longer one has manifest.json (keys are derivable).
    result: FrameResult | None = None

    @property
    def frames_total(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def frames(self) -> range:
        return range(self.frame_start, self.frame_end + 1)

    @property
    def progress(self) -> float:
        return round(self.frames_done / self.frames_total, 4)

    def replace(self, **changes) -> Job:
        return dataclasses.replace(self, **changes)


def frame_key(job_id: str, frame: int, output_format: OutputFormat) -> str:
    return f"jobs/{job_id}/frames/{frame:05d}.{output_format.extension}"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"
