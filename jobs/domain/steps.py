"""Steps: work a job does after its frames, as data. A short list of typed steps (one type so far, `encode`:
the frames as a video), each with its own state, progress, failures and output, run one after another once
every frame is assembled. The job is COMPLETED only when its last step is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobs.domain.states import OutputFormat

MAX_STEPS = 4  # a short list: steps run one after another, each a message and a lease of its own
MIN_FPS, MAX_FPS = 1, 120
MIN_ENCODE_FRAMES = 2  # a video of one frame is a still: the frame itself is that


class StepType(StrEnum):
    ENCODE = "encode"  # the frames, in the manifest's order, as one video (ffmpeg)


class VideoFormat(StrEnum):
    MP4 = "mp4"  # H.264 (libx264), yuv420p: plays in every browser
    WEBM = "webm"  # VP9 (libvpx-vp9), yuv420p

    @property
    def extension(self) -> str:
        return self.value

    @property
    def content_type(self) -> str:
        return {"mp4": "video/mp4", "webm": "video/webm"}[self.value]

    @property
    def codec(self) -> str:
        return {"mp4": "H.264", "webm": "VP9"}[self.value]


class StepStatus(StrEnum):
    WAITING = "WAITING"  # the frames are not all done (or assembled) yet
    QUEUED = "QUEUED"  # its message is sent (or due from the sweeper): the next worker claims it
    PROCESSING = "PROCESSING"  # a worker holds it (the job item's lease), or released it to retry
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.WAITING: frozenset({StepStatus.QUEUED}),  # the assembly, or the step before it, completed
    StepStatus.QUEUED: frozenset({StepStatus.PROCESSING}),
    # PROCESSING -> PROCESSING: a release after a failed attempt (retried) or a takeover of a dead holder's step
    StepStatus.PROCESSING: frozenset(
        {StepStatus.PROCESSING, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED}
    ),
    # A retry of the job makes every step that did not complete wait again (a new attempt of the job)
    StepStatus.FAILED: frozenset({StepStatus.WAITING}),
    StepStatus.CANCELLED: frozenset({StepStatus.WAITING}),
    StepStatus.COMPLETED: frozenset(),
}
UNFINISHED_STEP_STATES = frozenset({StepStatus.WAITING, StepStatus.QUEUED, StepStatus.PROCESSING})


@dataclass(frozen=True)
class Encode:
    """An encode step: the job's frames, in the manifest's order, as one `format` video at `fps` frames a second."""

    format: VideoFormat
    fps: int
    type: StepType = StepType.ENCODE

    def as_dict(self) -> dict[str, Any]:
        return {"type": str(self.type), "format": str(self.format), "fps": self.fps}

    @property
    def name(self) -> str:
        """How errors and logs name it: `encode (mp4, 24 fps)`."""
        return f"encode ({self.format}, {self.fps} fps)"


StepSpec = Encode  # the union of the step types (one so far): what a client asks for


def spec_from_dict(data: dict[str, Any]) -> StepSpec:
    """A stored or validated step's spec (numbers may come back from DynamoDB as Decimals)."""
    if data.get("type") != StepType.ENCODE:
        raise ValueError(f"unknown step type {data.get('type')!r}")
    return Encode(format=VideoFormat(data["format"]), fps=int(data["fps"]))


@dataclass(frozen=True)
class StepArtifact:
    """What a completed step stored: one object under the job's results prefix, as manifest.json lists it."""

    key: str
    size: int
    sha256: str
    content_type: str
    frames: int
    fps: int

    @property
    def duration(self) -> float:
        """Seconds of video: frames / fps (what ffmpeg was asked for and reported)."""
        return round(self.frames / self.fps, 6)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "duration": self.duration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepArtifact:
        return cls(
            key=data["key"],
            size=int(data["size"]),
            sha256=data["sha256"],
            content_type=data["content_type"],
            frames=int(data["frames"]),
            fps=int(data["fps"]),
        )


@dataclass(frozen=True)
class Step:
    """One step of a job: what it does (`spec`) and how far it got in the job's attempt `attempt`.

    Its lease is the job item's (`lease_token`, `lease_expires_at`): while a step runs, every chunk is done
    and the assembly is over, so the job item is free to be the step's unit of work.
    """

    spec: StepSpec
    status: StepStatus = StepStatus.WAITING
    attempt: int = 1  # the job's attempt this state belongs to: a retry makes an unfinished step wait again
    frames_done: int = 0  # frames encoded so far (ffmpeg's `frame=`)
    failures: int = 0  # failed attempts of this step (retried with backoff until RENDER_MAX_ATTEMPTS)
    crashes: int = 0  # claims whose holder died without releasing it (poison work counts here)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    artifact: StepArtifact | None = None

    def replace(self, **changes) -> Step:
        return dataclasses.replace(self, **changes)

    def shown_status(self, *, job_status: str, job_attempt: int, final: bool) -> StepStatus:
        """The state clients see: a step of an earlier attempt that did not complete waits (a retry runs it
        again); one left unfinished by a job that ended (cancelled, or failed elsewhere) is CANCELLED."""
        if self.status is StepStatus.COMPLETED:
            return self.status
        if self.attempt < job_attempt:
            return StepStatus.WAITING
        if final and self.status in UNFINISHED_STEP_STATES:
            return StepStatus.CANCELLED
        return self.status


def new_steps(specs: tuple[StepSpec, ...] | list[StepSpec]) -> tuple[Step, ...]:
    return tuple(Step(spec=spec) for spec in specs)


def steps_problem(
    specs: list[StepSpec] | tuple[StepSpec, ...], *, output_format: OutputFormat, frames: int | None
) -> str | None:
    """What is wrong with a job's steps, as one sentence for the `steps` field, or None. `frames` is None while
    the job's frame range is still the scene file's (checked again once known)."""
    if len(specs) > MAX_STEPS:
        return f"A job has at most {MAX_STEPS} steps; this asks for {len(specs)}."
    encodes = [s for s in specs if s.type is StepType.ENCODE]
    if not encodes:
        return None
    if output_format is OutputFormat.EXR:
        return (
            "An encode needs frames a video can hold: OpenEXR frames are linear, high-dynamic-range light, and "
            "the farm does not guess a tone mapping for them. Render png or jpeg frames to encode them."
        )
    formats = [str(s.format) for s in encodes]
    if len(set(formats)) < len(formats):
        return "One encode per format: each format's video has one name (video.mp4, video.webm)."
    if frames is not None and frames < MIN_ENCODE_FRAMES:
        return f"An encode needs at least {MIN_ENCODE_FRAMES} frames; this job renders {frames}."
    return None
