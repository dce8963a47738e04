"""Job states and their transitions, priorities, output formats, renderers and the documented limits."""

from __future__ import annotations

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
    EXR = "exr"  # OpenEXR (Blender jobs): RGBA half float; no previews (browsers and Pillow cannot show it)

    @property
    def extension(self) -> str:
        return {"png": "png", "jpeg": "jpg", "exr": "exr"}[self.value]

    @property
    def content_type(self) -> str:
        return {"png": "image/png", "jpeg": "image/jpeg", "exr": "image/x-exr"}[self.value]

    @property
    def viewable(self) -> bool:
        """Whether browsers (and the previews, made with Pillow) can show it."""
        return self is not OutputFormat.EXR


# Documented limits (docs/using/api.md, the fields of a job); the API answers 400 past them.
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
