"""A job's steps (an encode so far): each run as its own Celery task once the frames are assembled.

The assembly hands a job with steps to them instead of completing it (assembly.py: the first step QUEUED,
its message sent). A step's worker claims it with the job item's lease (a conditional write; a dead holder's
step is taken over as a counted crash), downloads the frames in the manifest's order, checking each one's
SHA-256, has the encoder make the video (ffmpeg in the render sandbox), stores it under the job's results
prefix, adds it to manifest.json, and completes the step: the last step completes the job, another queues
the next. Progress (frames encoded) is written with the lease's renewals, so a cancel reaches a running
encode at its next write (at most RENDER_PROGRESS_SECONDS later) and stops ffmpeg there. A failed attempt is
released and retried with backoff; past RENDER_MAX_ATTEMPTS the step and its job FAIL with the error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from jobs.domain import Failure, FrameResult, Job, JobStatus, StepArtifact, StepStatus, manifest_key, step_log_key
from jobs.domain import video_key as video_key_of
from jobs.errors import EncodeError, EncodeRefused, JobNotRunning, JobStateConflict, LeaseLost, RenderError
from jobs.ports import JobControl, RenderContext, ResultStore
from jobs.services.control import finish_cancel_if_idle, send_step
from jobs.services.lease import LeaseKeeper
from jobs.services.render_log import ChunkLog
from jobs.services.rendering import ENCODE_REFUSED, Outcome, attempts_for, describe

log = logging.getLogger(__name__)
ENCODE_FAILED = "encode_failed"  # the video could not be made (ffmpeg's own failure, a frame that changed)


def describe_step(exc: BaseException) -> Failure:
    """What the customer sees of a step's error: the encoder's own message, which of the farm's services
    failed, or a generic one (details go to the log)."""
    failure = describe(exc)
    if isinstance(exc, EncodeRefused):
        return Failure(ENCODE_REFUSED, failure.message)
    if isinstance(exc, RenderError):
        return Failure(ENCODE_FAILED, failure.message)
    return failure


def step_process(*, ctx: RenderContext, job_id: str, attempt: int, index: int) -> tuple[Outcome, int]:
    """Run one step message; returns the outcome and, for RETRY, the step's failures (HELD: seconds to wait)."""
    token = secrets.token_hex(16)
    repo, now = ctx.repo, ctx.clock()
    try:
        job = repo.steps.claim(
            job_id, index, attempt=attempt, worker=ctx.name, token=token, now=now, lease_seconds=ctx.lease_seconds
        )
    except JobNotRunning as exc:
        log.info("job %s step %s attempt %s not claimed: job is %s", job_id, index, attempt, exc.status)
        if exc.status == JobStatus.CANCELLING:
            finish_cancel_if_idle(jobs=ctx.jobs, job_id=job_id, attempt=attempt, now=now)
        return Outcome.SKIPPED, 0
    except JobStateConflict as exc:
        log.info("job %s step %s attempt %s not claimed: %s", job_id, index, attempt, exc.message)
        wait = _held_for(repo.get(job_id), index, attempt, now)
        return (Outcome.HELD, wait) if wait else (Outcome.SKIPPED, 0)
    step = job.steps[index]
    if step.crashes >= ctx.max_crashes:
        failure = Failure("poison", f"It crashed its worker {step.crashes} times (poison work); not tried again.")
        return _give_up(ctx, job, index, token, failure)
    return _run(ctx, job, index, token)


def _held_for(job: Job, index: int, attempt: int, now: datetime) -> int:
    """Whole seconds (at least 1) until a live holder's lease on the step lapses; 0 if none holds it."""
    running = job.status is JobStatus.PROCESSING and job.attempt == attempt and index < len(job.steps)
    if not running or job.steps[index].status is not StepStatus.PROCESSING or job.lease_expires_at is None:
        return 0
    left = (job.lease_expires_at - now).total_seconds() if job.lease_token else 0
    return int(left) + 1 if left > 0 else 0


class _ReleaseForShutdown(Exception):
    """The worker is shutting down and the rest of the step will not fit in the grace period."""


class StepProgress:
    """A running step's frames encoded, on its job item with the lease's renewal: one write per
    RENDER_PROGRESS_SECONDS at most as frames come, one whenever the lease keeper asks during a long wait (a
    download, an upload, a slow frame), and one before each thing it stores (`fence`). A refused write
    (LeaseLost, JobNotRunning) is kept and raised again by every later call, whichever thread meets it first."""

    def __init__(self, ctx: RenderContext, job: Job, index: int, *, token: str):
        self._ctx, self._job_id, self._attempt, self._index, self._token = ctx, job.id, job.attempt, index, token
        self._lock = threading.Lock()
        self._done = 0
        self._written_at = ctx.clock()  # the claim wrote last
        self._refused: JobStateConflict | None = None
        self._began = time.monotonic()

    def wont_fit(self, *, total: int, left: float) -> bool:
        """Whether the frames left, at the rate since the step began (downloads included), take more than `left`
        seconds; true before any frame is encoded (nothing to measure)."""
        with self._lock:
            done = self._done
        if done == 0:
            return True
        return (total - done) * (time.monotonic() - self._began) / done > left

    def frames_encoded(self, count: int) -> None:
        with self._lock:
            self._raise_refusal()
            self._done = count
            if (self._ctx.clock() - self._written_at).total_seconds() >= self._ctx.progress_seconds:
                self._write()

    def keep_alive(self) -> None:
        """The lease keeper's call: renew (with the count so far) unless a write just did."""
        with self._lock:
            self._raise_refusal()
            if (self._ctx.clock() - self._written_at).total_seconds() >= self._ctx.heartbeat_seconds / 2:
                self._write()

    def fence(self) -> None:
        """A write now: raises LeaseLost or JobNotRunning unless the step is still ours to finish."""
        with self._lock:
            self._raise_refusal()
            self._write()

    def raise_refusal(self) -> None:
        with self._lock:
            self._raise_refusal()

    def _raise_refusal(self) -> None:
        if self._refused is not None:
            raise self._refused

    def _write(self) -> None:
        now = self._ctx.clock()
        try:
            self._ctx.repo.steps.record_progress(
                self._job_id,
                self._index,
                attempt=self._attempt,
                token=self._token,
                frames_done=self._done,
                lease_until=self._ctx.lease_until(),
            )
        except JobStateConflict as exc:
            self._refused = exc
            raise
        self._written_at = now


class _Stop:
    """An encode's should_stop(): a refused write (the lease keeper's), or a shutdown that the rest of the encode
    will not fit in (RENDER_SHUTDOWN_GRACE_SECONDS, as chunks): then the step is released, not failed."""

    def __init__(self, ctx: RenderContext, keeper: LeaseKeeper, progress: StepProgress, total: int):
        self._ctx, self._keeper, self._progress, self._total = ctx, keeper, progress, total
        self.for_shutdown = False

    def __call__(self) -> bool:
        if self._keeper.refused():
            return True
        left = self._ctx.grace_left()
        if left is not None and self._progress.wont_fit(total=self._total, left=left):
            self.for_shutdown = True
        return self.for_shutdown


def _run(ctx: RenderContext, job: Job, index: int, token: str) -> tuple[Outcome, int]:
    step_log = ChunkLog(store=ctx.store, job_id=job.id, chunk=0, key=step_log_key(job.id, index))
    progress = StepProgress(ctx, job, index, token=token)
    try:
        with LeaseKeeper(progress.keep_alive, every=ctx.heartbeat_seconds) as keeper:
            artifact = _encode(ctx, job, index, progress, keeper, step_log)
            progress.fence()  # still ours: only then does the manifest name the video
            _add_to_manifest(ctx.store, job, index, artifact)
        now = ctx.clock()
        done = ctx.repo.steps.complete(
            job, index, token=token, artifact=artifact, now=now, expires_at=now + ctx.retention
        )
    except LeaseLost:
        log.warning("job %s step %s: lease lost; leaving it to its new holder", job.id, index)
        return Outcome.STOPPED, 0
    except JobNotRunning as exc:
        return _stopped(ctx, job, index, token, exc.status), 0
    except _ReleaseForShutdown:
        return _release_at_shutdown(ctx, job, index, token), 0
    except Exception as exc:
        log.exception("job %s step %s: failed", job.id, index)
        try:
            progress.raise_refusal()  # an encode stopped for a refused write ends for that reason
        except LeaseLost:
            return Outcome.STOPPED, 0
        except JobNotRunning as stop:
            return _stopped(ctx, job, index, token, stop.status), 0
        return _fail_or_retry(ctx, job, index, token, describe_step(exc))
    finally:
        _save_log(step_log)
    return _completed(ctx, done, index), 0


def _encode(
    ctx: RenderContext, job: Job, index: int, progress: StepProgress, keeper: LeaseKeeper, step_log: ChunkLog
) -> StepArtifact:
    """The step's video, stored: the frames in the manifest's order, each checked, through the encoder."""
    spec = job.steps[index].spec
    fmt = job.scene.output_format
    if not fmt.viewable:
        raise EncodeError(f"{fmt} frames cannot be encoded as a video.")
    frames = manifest_frames(ctx.store, job)

    def bodies() -> Iterator[bytes]:
        for result in frames:
            progress.raise_refusal()
            yield checked_frame(ctx.store, result)

    def on_progress(count: int) -> None:
        progress.frames_encoded(count)
        _save_log(step_log, every=ctx.log_flush_seconds)

    key = video_key_of(job.id, spec.format.extension)
    stop = _Stop(ctx, keeper, progress, len(frames))
    try:
        with ctx.video_encoder().encode(
            frames=bodies(),
            count=len(frames),
            size=sum(result.size for result in frames),
            extension=fmt.extension,
            video_format=spec.format,
            fps=spec.fps,
            should_stop=stop,
            on_progress=on_progress,
            log=step_log,
        ) as video:
            progress.fence()  # still ours: only then is the video stored
            stored = ctx.store.put_file(key=key, file=video.file, content_type=spec.format.content_type)
    except EncodeError:
        if stop.for_shutdown:
            raise _ReleaseForShutdown() from None
        raise
    log.info("job %s step %s: %s of %d frames stored (%d bytes)", job.id, index, spec.name, video.frames, stored.size)
    return StepArtifact(
        key=key,
        size=stored.size,
        sha256=stored.sha256,
        content_type=spec.format.content_type,
        frames=video.frames,
        fps=spec.fps,
    )


def manifest_frames(store: ResultStore, job: Job) -> list[FrameResult]:
    """The job's frames as manifest.json lists them, in its order (the video's)."""
    body = store.get_optional(manifest_key(job.id))
    if body is None:
        raise EncodeError("The job's manifest.json is missing; retry the job to assemble it again.")
    fields = ("frame", "key", "size", "sha256", "content_type")
    return [FrameResult(**{k: entry[k] for k in fields}) for entry in json.loads(body)["frames"]]


def checked_frame(store: ResultStore, result: FrameResult) -> bytes:
    """A frame's bytes, only if they are the ones the manifest lists."""
    body = store.get_bytes(result.key)
    if hashlib.sha256(body).hexdigest() != result.sha256:
        raise EncodeError(f"Frame {result.frame} differs from the one rendered (its SHA-256 is not the manifest's).")
    return body


def _add_to_manifest(store: ResultStore, job: Job, index: int, artifact: StepArtifact) -> None:
    """manifest.json lists each completed step's output under `steps`, by step index."""
    manifest = json.loads(store.get_bytes(manifest_key(job.id)))
    entries = [e for e in manifest.get("steps", []) if e.get("step") != index]
    entry = {"step": index, "type": str(job.steps[index].spec.type), **artifact.as_dict()}
    manifest["steps"] = sorted([*entries, entry], key=lambda e: e["step"])
    store.put_bytes(
        key=manifest_key(job.id), body=json.dumps(manifest, indent=2).encode(), content_type="application/json"
    )


def _save_log(step_log: ChunkLog, every: float = 0.0) -> None:
    try:
        step_log.flush(every=every)
    except Exception:  # a log that cannot be saved must not fail the step
        log.warning("could not save a step log", exc_info=True)


def _completed(ctx: RenderContext, done: Job, index: int) -> Outcome:
    if done.status is JobStatus.COMPLETED:
        log.info("job_completed job=%s frames=%d steps=%d", done.id, done.frames_total, len(done.steps))
        ctx.notifier.job_ended(done, JobStatus.COMPLETED)
    else:
        log.info("job %s step %s COMPLETED; step %s queued", done.id, index, index + 1)
        send_step(queue=ctx.jobs.queue, job=done, index=index + 1)
    return Outcome.DONE


def _release_at_shutdown(ctx: RenderContext, job: Job, index: int, token: str) -> Outcome:
    """Hand the step back (no failure counted): the caller sends its message again for another worker."""
    try:
        ctx.repo.steps.release(job.id, index, attempt=job.attempt, token=token, now=ctx.clock())
    except LeaseLost:
        return Outcome.STOPPED
    except JobNotRunning as exc:
        return _stopped(ctx, job, index, token, exc.status)
    log.info("job %s step %s released at shutdown", job.id, index)
    return Outcome.RELEASED


def _stopped(ctx: RenderContext, job: Job, index: int, token: str, job_status: str) -> Outcome:
    """The job left PROCESSING while the step ran: a cancel ends the step and the job CANCELLED (the holder's
    write); a job failed elsewhere is left as it is."""
    log.info("job %s step %s stopped: job is %s", job.id, index, job_status)
    if job_status != JobStatus.CANCELLING:
        return Outcome.STOPPED
    try:
        ended = _end(ctx, job, index, token, JobStatus.CANCELLED)
    except JobStateConflict:  # the lease lapsed and the sweeper (or another) finished the cancel
        return Outcome.STOPPED
    log.info("job %s CANCELLED", job.id)
    ctx.notifier.job_ended(ended, JobStatus.CANCELLED)
    return Outcome.STOPPED


def _end(ctx: RenderContext, job: Job, index: int, token: str, status: JobStatus, failure: Failure | None = None):
    """The holder's write that ends the step and its job (CANCELLED or FAILED), kept for the retention time."""
    now = ctx.clock()
    return ctx.repo.steps.end(
        job.id,
        index,
        attempt=job.attempt,
        token=token,
        status=status,
        now=now,
        expires_at=now + ctx.retention,
        failure=failure,
    )


def _fail_or_retry(ctx: RenderContext, job: Job, index: int, token: str, failure: Failure) -> tuple[Outcome, int]:
    allowed = attempts_for(failure, max_attempts=ctx.max_attempts, max_outage_attempts=ctx.max_outage_attempts)
    if job.steps[index].failures + 1 < allowed:
        try:
            after = ctx.repo.steps.release(
                job.id, index, attempt=job.attempt, token=token, now=ctx.clock(), failure=failure
            )
        except LeaseLost:
            return Outcome.STOPPED, 0
        except JobNotRunning as exc:
            return _stopped(ctx, job, index, token, exc.status), 0
        ctx.metrics.chunk_failed(reason=failure.code, retried=True)
        return Outcome.RETRY, after.steps[index].failures
    return _give_up(ctx, job, index, token, failure)


def _named(job: Job, index: int, failure: Failure) -> Failure:
    """The job's error names its step: `step 0, encode (mp4, 24 fps): ffmpeg failed ...`."""
    return Failure(failure.code, f"step {index}, {job.steps[index].spec.name}: {failure.message}")


def _give_up(ctx: RenderContext, job: Job, index: int, token: str, failure: Failure) -> tuple[Outcome, int]:
    """The step fails for good, and its job with it."""
    try:
        ended = _end(ctx, job, index, token, JobStatus.FAILED, failure=_named(job, index, failure))
    except LeaseLost:
        return Outcome.STOPPED, 0
    except JobNotRunning as exc:
        return _stopped(ctx, job, index, token, exc.status), 0
    ctx.metrics.chunk_failed(reason=failure.code, retried=False)
    log.warning("job_failed job=%s code=%s", job.id, failure.code)
    ctx.notifier.job_ended(ended, JobStatus.FAILED)
    return Outcome.FAILED, job.steps[index].failures + 1


def step_error(
    *,
    jobs: JobControl,
    job_id: str,
    attempt: int,
    index: int,
    error: BaseException,
    now: datetime,
    max_attempts: int,
    max_outage_attempts: int,
) -> tuple[Outcome, int]:
    """An error outside the step's run (a worker that cannot build its encoder, say) is a failed attempt of a
    step no live lease holds: retried with backoff, then the step and its job FAIL (never a deleted message
    and an untouched job)."""
    failure = describe_step(error)
    try:
        job = jobs.repo.steps.note_failure(job_id, index, attempt=attempt, failure=failure, now=now)
    except JobStateConflict:
        return Outcome.SKIPPED, 0  # finished, held by a live worker, or another attempt: not ours to count
    failures = job.steps[index].failures
    if failures < attempts_for(failure, max_attempts=max_attempts, max_outage_attempts=max_outage_attempts):
        return Outcome.RETRY, failures
    try:
        failed = jobs.repo.steps.fail(
            job_id,
            index,
            attempt=attempt,
            failure=_named(job, index, failure),
            now=now,
            expires_at=now + jobs.retention,
        )
    except JobStateConflict:
        return Outcome.SKIPPED, 0
    log.warning("job_failed job=%s code=%s", job_id, failure.code)
    jobs.notifier.job_ended(failed, JobStatus.FAILED)
    return Outcome.FAILED, failures
