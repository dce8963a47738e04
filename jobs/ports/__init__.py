"""The ports: every interface the services need (repositories, result store, queue, renderer) and the values
that cross them. Adapters (jobs.repository, jobs.adapters, jobs.renderers) implement these; services import
only these and the domain."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

from jobs.domain import FrameResult, Job, Priority, RendererName, VideoFormat
from jobs.errors import RenderError
from jobs.ports.repositories import (
    ApiKeyRepository,
    BudgetRepository,
    ChunkRepository,
    FarmRegistry,
    JobRepository,
    QueueStats,
    StepRepository,
)
from jobs.ports.values import (
    FANOUT_JOB,
    INSPECT_ASSET,
    INSPECTION_DONE,
    INSPECTION_FAILED,
    INSPECTION_PENDING,
    RENDER_CHUNK,
    RUN_STEP,
    AssetInspection,
    AssetRecord,
    ChunkPage,
    DeadLetter,
    IdempotencyRecord,
    JobPage,
    Overdue,
    OwnerSpend,
    QueueDepth,
    StoredAsset,
    UploadTicket,
    WorkerBeat,
)
from jobs.ports.webhooks import (
    DELIVER_WEBHOOK,
    DeliverySlots,
    DeliveryTry,
    JobNotifier,
    NoNotifier,
    SendResult,
    WebhookDelivery,
    WebhookRepository,
    WebhookSender,
)

__all__ = [
    "DELIVER_WEBHOOK",
    "FANOUT_JOB",
    "INSPECTION_DONE",
    "INSPECTION_FAILED",
    "INSPECTION_PENDING",
    "INSPECT_ASSET",
    "RENDER_CHUNK",
    "RUN_STEP",
    "ApiKeyRepository",
    "AssetInspection",
    "AssetRecord",
    "AssetRepository",
    "AssetStore",
    "BudgetRepository",
    "ChunkPage",
    "ChunkRepository",
    "Clock",
    "DeadLetter",
    "DeliverySlots",
    "DeliveryTry",
    "EncodedVideo",
    "FarmRegistry",
    "IdempotencyRecord",
    "JobControl",
    "JobNotifier",
    "JobPage",
    "JobRepository",
    "LogContext",
    "Metrics",
    "NoMetrics",
    "NoNotifier",
    "Overdue",
    "OwnerSpend",
    "QueueDepth",
    "QueueStats",
    "RenderContext",
    "RenderLog",
    "RenderedFrame",
    "Renderer",
    "ResultStore",
    "SendResult",
    "StepRepository",
    "StoredAsset",
    "StoredFile",
    "TaskQueue",
    "UploadTicket",
    "VideoEncoder",
    "WebhookDelivery",
    "WebhookRepository",
    "WebhookSender",
    "WorkerBeat",
    "no_log_context",
]

Clock = Callable[[], datetime]


class LogContext(Protocol):
    """Adds fields (job_id, chunk, attempt, ...) to every log line written inside it (jobs/adapters/logs.py)."""

    def __call__(self, **fields: object) -> AbstractContextManager[None]: ...


def no_log_context(**fields: object) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True)
class StoredFile:
    """An object stored from a file: its size and SHA-256 (hex), computed on the way."""

    size: int
    sha256: str


class ResultStore(Protocol):
    def put_frame(self, *, key: str, frame: int, body: bytes, content_type: str) -> FrameResult: ...
    def put_bytes(self, *, key: str, body: bytes, content_type: str) -> None: ...
    def put_file(self, *, key: str, file: BinaryIO, content_type: str) -> StoredFile:
        """Store an open file from its start (a video: too large to hold in memory)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...
    def get_optional(self, key: str) -> bytes | None: ...  # None when there is no such object
    def presigned_url(self, key: str) -> str: ...


class AssetRepository(Protocol):
    """Declared scene files (`ASSET#...` items, expired by TTL on `expires_at`)."""

    def declare(self, record: AssetRecord) -> None: ...
    def get(self, owner: str, sha256: str) -> AssetRecord | None: ...
    def extend(self, owner: str, sha256: str, *, until: datetime) -> None: ...  # never shortens

    def request_inspection(self, owner: str, sha256: str, *, now: datetime, stale_before: datetime) -> bool:
        """Mark the inspection pending unless it is done, failed, or pending since `stale_before` or later; True
        when this call asked for it (so exactly one caller sends its message)."""
        ...

    def record_inspection(self, owner: str, sha256: str, inspection: AssetInspection) -> None: ...


class AssetStore(Protocol):
    """Scene files in S3 under `assets/<owner slug>/<sha256>` (jobs.domain.asset_key)."""

    def upload_ticket(self, *, owner: str, sha256: str, size: int) -> UploadTicket: ...
    def head(self, *, owner: str, sha256: str) -> StoredAsset | None: ...
    def refresh(self, *, owner: str, sha256: str) -> None: ...  # restart the lifecycle clock (copy in place)


class RenderLog(Protocol):
    """Where a renderer writes its program's output for the chunk's log (the loop keeps the last part)."""

    def write(self, text: str) -> None: ...

    def warn(self, message: str) -> None:
        """Something the job's owner should know (a setting of their file the farm changed, a file it could not
        read): kept on the job and shown with it, besides the log."""
        ...


@dataclass(frozen=True)
class RenderedFrame:
    frame: int
    body: bytes  # the image, in the job's output format
    seconds: float  # how long this frame took to render


class Renderer(Protocol):
    """Renders the frames of one chunk, in order, yielding each one as soon as it exists.

    - `job` says what to render (`job.scene`: size, samples, format; `job.scene_file`: the owner's asset).
    - `frames` are the chunk's frames not yet recorded (after a takeover, the rest of the chunk).
    - `log.write(text)` adds to the chunk's render log (kept in S3, last 64 KiB, shown by the API).
    - Raise `jobs.errors.RenderError` for a frame that cannot be made; its message is shown to the customer
      (keep internals out of it). Any other exception is a worker error. Both go through the retry ladder.
    - `should_stop()` turns true when the chunk must stop (cancel, lost lease): check it while waiting and
      return early. The render loop also closes the iterator whenever it stops early (cancel, lost lease,
      shutdown, an error), so a renderer that runs a process stops it in a `finally`.
    """

    def render_chunk(
        self, job: Job, frames: Sequence[int], *, should_stop: Callable[[], bool], log: RenderLog
    ) -> Iterator[RenderedFrame]: ...


@dataclass(frozen=True)
class EncodedVideo:
    """A video the encoder made: open for reading until its context ends, `frames` as the encoder reported."""

    file: BinaryIO
    size: int
    frames: int


class VideoEncoder(Protocol):
    """Makes one video of a job's frames (jobs/renderers/ffmpeg.py: ffmpeg in the render sandbox).

    - `frames` yields each frame's bytes in the video's order (the caller downloads and checks them, lazily);
      `count` is how many it yields, `extension` their file type (png, jpg).
    - `on_progress(n)` is called as frames are encoded (n so far); it may raise to stop the encode.
    - `should_stop()` turns true when the step must stop (cancel, lost lease): the encode is killed and
      raises. `log.write(text)` adds to the step's log (the encoder's output, last 64 KiB kept).
    - Raises `jobs.errors.EncodeError` (shown to the customer) when the video cannot be made.
    """

    def encode(
        self,
        *,
        frames: Iterable[bytes],
        count: int,
        extension: str,
        video_format: VideoFormat,
        fps: int,
        should_stop: Callable[[], bool],
        on_progress: Callable[[int], None],
        log: RenderLog,
    ) -> AbstractContextManager[EncodedVideo]: ...


class TaskQueue(Protocol):
    """Sends messages that carry ids only: render work on the queue of the job's priority, deliveries on the
    webhook queue."""

    def enqueue_chunk(self, *, job_id: str, index: int | None, attempt: int, priority: Priority) -> None: ...
    def enqueue_fanout(self, *, job_id: str, attempt: int, priority: Priority) -> None: ...
    def enqueue_step(self, *, job_id: str, attempt: int, index: int, priority: Priority) -> None:
        """A job's step, on the render queue of the job's priority (render workers run it)."""
        ...

    def enqueue_webhook(self, *, job_id: str, attempt: int, event: str) -> None:
        """A delivery's message, on the webhook queue (whatever the job's priority: webhook workers take it)."""
        ...

    def enqueue_inspection(self, *, owner: str, sha256: str, priority: Priority = Priority.HIGH) -> None: ...


class Metrics(Protocol):
    """What the render loop reports for the operators' metrics (the worker writes them as CloudWatch
    embedded-metric log lines: jobs/adapters/metrics.py). Reporting never fails the work."""

    def chunk_claimed(self, *, job_id: str, frames_done: int, queue_wait: float | None) -> None: ...
    def frame_rendered(self, *, seconds: float) -> None: ...
    def job_finished(self, *, outcome: str, seconds: float | None) -> None: ...
    def chunk_failed(self, *, reason: str, retried: bool) -> None: ...


class NoMetrics:
    """Metrics that go nowhere (unit tests, commands)."""

    def chunk_claimed(self, *, job_id: str, frames_done: int, queue_wait: float | None) -> None:
        pass

    def frame_rendered(self, *, seconds: float) -> None:
        pass

    def job_finished(self, *, outcome: str, seconds: float | None) -> None:
        pass

    def chunk_failed(self, *, reason: str, retried: bool) -> None:
        pass


@dataclass(frozen=True)
class JobControl:
    """What every role changes jobs with, bound once per process (jobs/wiring.py: `job_control`): the jobs'
    store, the queue of their messages, who hears when a job ends, and how long an ended job is kept."""

    repo: JobRepository
    queue: TaskQueue
    notifier: JobNotifier
    retention: timedelta


@dataclass(frozen=True)
class RenderContext:
    """What a render runs with in a worker process: the jobs (`JobControl`), the other adapters, the process's
    identity, clock and limits (jobs/wiring.py: `render_context`)."""

    jobs: JobControl
    store: ResultStore
    renderer: Renderer  # the renderer of `simulated` jobs (RENDER_RENDERER: the simulated one by default)
    clock: Clock
    name: str
    lease_seconds: int
    max_attempts: int
    heartbeat_seconds: float = 20.0
    # A rendering chunk records its frames in one write at most this often (and at its last frame); a chunk
    # of a multi-chunk job publishes its progress on the job item with each (services/progress.py).
    progress_seconds: float = 8.0
    max_crashes: int = 5  # claims whose holder died (poison work) before the chunk fails
    max_outage_attempts: int = 8  # failed attempts before a chunk fails when the farm's own services failed
    # Seconds left before a requested shutdown must be done; None while the worker is not shutting down.
    grace_left: Callable[[], float | None] = lambda: None
    metrics: Metrics = field(default_factory=NoMetrics)
    # The other renderers this worker offers, by job.renderer (RENDER_RENDERERS); built on first use.
    renderers: Mapping[str, Callable[[], Renderer]] = field(default_factory=dict)
    log_flush_seconds: float = 10.0  # how often a running chunk's render log is written to S3
    # The video encoder of this worker (steps of type encode), built on first use; None: this worker has none.
    encoder: Callable[[], VideoEncoder] | None = None

    @property
    def repo(self) -> JobRepository:
        return self.jobs.repo

    @property
    def notifier(self) -> JobNotifier:
        return self.jobs.notifier

    @property
    def retention(self) -> timedelta:
        return self.jobs.retention

    def lease_until(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease_seconds)

    def renderer_for(self, job: Job) -> Renderer:
        """The job's renderer on this worker; a RenderError (retried, then failing the job) if it has none."""
        if job.renderer is RendererName.SIMULATED:
            return self.renderer
        make = self.renderers.get(str(job.renderer))
        if make is None:
            raise RenderError(f"The {job.renderer} renderer is not available on this worker.")
        return make()

    def video_encoder(self) -> VideoEncoder:
        """This worker's encoder; a RenderError (retried, then failing the job) if it has none."""
        if self.encoder is None:
            raise RenderError("No video encoder (ffmpeg) is available on this worker.")
        return self.encoder()
