"""The worker's use case: claim a chunk, render and upload its frames, record each one, finish or fail.

One loop for both storage shapes of a chunk (a one-chunk job's item, or a chunk item; see
repository/chunks.py). Every write is conditional on the lease and the job still running, so a duplicate
message, a lost lease, a cancel or a retry stops the work at the next frame without doubling anything.
The ladder after a failed frame: release with backoff while attempts remain, else the chunk and its job
fail. A chunk whose holders keep dying (counted at each takeover) fails as poison work.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import datetime
from enum import StrEnum

from jobs.domain import Chunk, Failure, FrameResult, Job, JobStatus, frame_key
from jobs.errors import (
    JobNotRunning,
    JobStateConflict,
    LeaseLost,
    RenderError,
    SceneRefused,
    ServiceUnavailable,
    StaleWrite,
)
from jobs.ports import JobControl, RenderContext, RenderedFrame
from jobs.services.assembly import job_assemble, make_outputs
from jobs.services.control import finish_cancel_if_idle, job_fail
from jobs.services.lease import LeaseKeeper
from jobs.services.progress import ChunkProgress
from jobs.services.render_log import ChunkLog

log = logging.getLogger(__name__)


SCENE_REFUSED = "scene_refused"  # the file itself is refused: failing again and again would change nothing
ENCODE_REFUSED = "encode_refused"  # a video too large or too long to make: trying again would change nothing
REFUSED = frozenset({SCENE_REFUSED, ENCODE_REFUSED})  # failures not tried again


class Outcome(StrEnum):
    DONE = "done"  # this chunk finished (and the job, if it was the last one)
    SKIPPED = "skipped"  # not ours to render: finished, held elsewhere, or the job stopped
    STOPPED = "stopped"  # stopped between frames (cancel, job failure, lost lease)
    RETRY = "retry"  # the render failed and will be retried: the caller schedules the retry
    FAILED = "failed"  # the render failed for the last time (or the chunk is poison)
    RELEASED = "released"  # handed back at worker shutdown: the caller sends its message again
    HELD = "held"  # another holder's lease is still live: the caller sends the message again once it lapses


class _ReleaseForShutdown(Exception):
    """The worker is shutting down and the rest of the chunk will not fit in the grace period."""


FARM_UNAVAILABLE = "farm_unavailable"  # one of the farm's own services failed: not the scene's fault


def describe(exc: BaseException) -> Failure:
    """What the customer sees of an error: a renderer's own message, which of the farm's services failed, or a
    generic one (details go to the log)."""
    if isinstance(exc, SceneRefused):
        return Failure(SCENE_REFUSED, str(exc))
    if isinstance(exc, RenderError):
        return Failure("render_failed", str(exc) or "The renderer failed.")
    if isinstance(exc, ServiceUnavailable):
        return Failure(FARM_UNAVAILABLE, exc.for_customers())
    return Failure(
        "worker_error", f"The worker hit an unexpected error ({type(exc).__name__}); the operators' log has details."
    )


def chunk_process(*, ctx: RenderContext, job_id: str, index: int | None, attempt: int) -> tuple[Outcome, int]:
    """Run one chunk message; returns the outcome and, for RETRY, how many failures the chunk has had."""
    token = secrets.token_hex(16)
    repo, now = ctx.repo, ctx.clock()
    try:
        job, chunk = repo.chunks.claim(
            job_id, index, attempt=attempt, worker=ctx.name, token=token, now=now, lease_seconds=ctx.lease_seconds
        )
    except JobNotRunning as exc:
        log.info("job %s chunk %s attempt %s not claimed: job is %s", job_id, index, attempt, exc.status)
        repo.chunks.drop(job_id, index, attempt=attempt, now=now)
        if exc.status == JobStatus.CANCELLING:
            finish_cancel_if_idle(jobs=ctx.jobs, job_id=job_id, attempt=attempt, now=now)
        return Outcome.SKIPPED, 0
    except JobStateConflict as exc:
        log.info("job %s chunk %s attempt %s not claimed: %s", job_id, index, attempt, exc.message)
        if index is not None and isinstance(exc, StaleWrite) and exc.status == JobStatus.COMPLETED:
            # Counted on the job after its completion; its assembler may have died: a redelivery runs the
            # assembly again (it is idempotent, and checks the chunk items first).
            _assemble_if_last(ctx, job_id, attempt)
        wait = _lease_left(exc, attempt, now)
        if wait:  # a dead holder's message can come back before its lease lapses: look again then, not drop it
            return Outcome.HELD, wait
        return Outcome.SKIPPED, 0
    first = attempt == 1 and chunk.frames_done == 0 and chunk.crashes == 0 and chunk.render_failures == 0
    ctx.metrics.chunk_claimed(
        job_id=job_id,
        frames_done=chunk.frames_done,
        queue_wait=(now - job.created_at).total_seconds() if first else None,  # submit to first claim
    )
    if chunk.crashes >= ctx.max_crashes:
        failure = Failure("poison", f"It crashed its worker {chunk.crashes} times (poison work); not tried again.")
        return _give_up(ctx, job, chunk, token, failure)
    return _render(ctx, job, chunk, token, claimed_at=now)


def _lease_left(exc: JobStateConflict, attempt: int, now: datetime) -> int:
    """Whole seconds (at least 1) until the live lease that refused this claim lapses; 0 if none does."""
    if not isinstance(exc, StaleWrite) or exc.status != JobStatus.PROCESSING or exc.attempt != attempt:
        return 0
    current = exc.current
    if not current.get("lease_token"):
        return 0
    left = float(current.get("lease_expires_at", 0)) - now.timestamp()
    return int(left) + 1 if left > 0 else 0


def _render(ctx: RenderContext, job: Job, chunk: Chunk, token: str, *, claimed_at: datetime) -> tuple[Outcome, int]:
    """Render the chunk; whatever the outcome, its render log (if the renderer wrote one) ends up in S3."""
    chunk_log = ChunkLog(store=ctx.store, job_id=job.id, chunk=chunk.index or 0)
    try:
        progress = ChunkProgress(ctx, chunk, token=token, claimed_at=claimed_at)
        return _render_frames(ctx, job, chunk, token, chunk_log, progress)
    finally:
        _save_log(chunk_log)


def _note_warnings(ctx: RenderContext, job: Job, chunk: Chunk, warnings: list[str]) -> None:
    """What the renderer warned of goes on the job. Every chunk of a job renders the same file, so the first
    chunk speaks for the job (one write, and only when there is something to say)."""
    if not warnings or chunk.index not in (None, 0) or set(warnings) <= set(job.warnings):
        return
    try:
        ctx.repo.note_warnings(job.id, warnings)
    except Exception:  # a warning that cannot be written must not fail the frames; the log has it too
        log.warning("%s: could not note the renderer's warnings on the job", chunk.name, exc_info=True)


def _save_log(chunk_log: ChunkLog, every: float = 0.0) -> None:
    try:
        chunk_log.flush(every=every)
    except Exception:  # a log that cannot be saved must not fail the frames
        log.warning("could not save a render log", exc_info=True)


def _render_frames(
    ctx: RenderContext, job: Job, chunk: Chunk, token: str, chunk_log: ChunkLog, progress: ChunkProgress
) -> tuple[Outcome, int]:
    frame_seconds: list[float] = []
    frames = chunk.frames
    try:
        renderer = ctx.renderer_for(job)
        with (
            LeaseKeeper(progress.keep_alive, every=ctx.heartbeat_seconds) as keeper,
            contextlib.closing(
                renderer.render_chunk(job, frames[chunk.frames_done :], should_stop=keeper.refused, log=chunk_log)
            ) as rendered,
        ):
            while (done := progress.frames_rendered) < len(frames):
                progress.raise_refusal()
                _check_shutdown(ctx, frames_left=len(frames) - done, seconds=frame_seconds)
                out = next(rendered, None)
                if out is None:
                    _renderer_ended_early(progress, done, len(frames))
                if not frame_seconds:  # the renderer's warnings come before its first frame: on the job before its end
                    _note_warnings(ctx, job, chunk, chunk_log.warnings)
                result = _store_frame(ctx, job, out)
                frame_seconds.append(out.seconds)
                has_preview = False
                if chunk.whole_job and done + 1 == len(frames):
                    # The last frame of a one-chunk job completes the job: its outputs go first.
                    has_preview = make_outputs(store=ctx.store, job=job, results=[*progress.results(), result])
                if progress.add(result, out.seconds, has_preview=has_preview):
                    keeper.touched()
                ctx.metrics.frame_rendered(seconds=out.seconds)
                _save_log(chunk_log, every=ctx.log_flush_seconds)
    except LeaseLost:
        log.warning("%s: lease lost; leaving it to its new holder", chunk.name)
        return Outcome.STOPPED, 0
    except _ReleaseForShutdown:
        return _release_at_shutdown(ctx, job, progress, token), 0
    except JobNotRunning as exc:
        return _stopped(ctx, job, progress.current, token, exc.status), 0
    except Exception as exc:
        log.exception("%s: render failed", chunk.name)
        try:
            progress.flush()  # the frames before the failed one are kept for the retry
        except LeaseLost:
            return Outcome.STOPPED, 0
        except JobNotRunning as stop:
            return _stopped(ctx, job, progress.current, token, stop.status), 0
        if progress.complete:  # the error was the last write's, and the retry above recorded it
            return _completed(ctx, job, chunk, progress.current), 0
        return _fail_or_retry(ctx, job, progress.current, token, describe(exc))
    return _completed(ctx, job, chunk, progress.current), 0


def _completed(ctx: RenderContext, job: Job, chunk: Chunk, recorded: Chunk) -> Outcome:
    log.info("%s COMPLETED", chunk.name)
    if chunk.whole_job:
        log.info("job_completed job=%s frames=%d", job.id, len(chunk.frames))
        ctx.notifier.job_ended(job, JobStatus.COMPLETED)
    elif recorded.completes_job:  # its count was the last: assemble (no read of the job first)
        _assemble(ctx, job.id, job.attempt)
    return Outcome.DONE


def _release_at_shutdown(ctx: RenderContext, job: Job, progress: ChunkProgress, token: str) -> Outcome:
    """Record the frames rendered so far (they are not rendered again), then hand the chunk back."""
    try:
        progress.flush()
    except JobNotRunning as exc:
        return _stopped(ctx, job, progress.current, token, exc.status)
    except LeaseLost:
        return Outcome.STOPPED
    except Exception:  # AWS unreachable: those frames are rendered again; the release is still worth a try
        log.warning("%s: frames not recorded before the release", progress.current.name, exc_info=True)
    try:
        ctx.repo.chunks.release(progress.current, token=token, now=ctx.clock())
    except JobNotRunning as exc:
        return _stopped(ctx, job, progress.current, token, exc.status)
    except LeaseLost:
        return Outcome.STOPPED
    log.info("%s released at shutdown after %d frames", progress.current.name, progress.current.frames_done)
    return Outcome.RELEASED


def _renderer_ended_early(progress: ChunkProgress, done: int, total: int) -> None:
    """The renderer stopped before the chunk's last frame: because it was told to (the refused write or
    renewal names why, LeaseLost or JobNotRunning), else it is a renderer fault."""
    progress.raise_refusal()
    raise RenderError(f"The renderer stopped after {done} of {total} frames.")


def _check_shutdown(ctx: RenderContext, *, frames_left: int, seconds: list[float]) -> None:
    left = ctx.grace_left()
    if left is None:
        return
    per_frame = sum(seconds) / len(seconds) if seconds else None
    if per_frame is None or frames_left * per_frame > left:
        raise _ReleaseForShutdown()


def _store_frame(ctx: RenderContext, job: Job, out: RenderedFrame) -> FrameResult:
    fmt = job.scene.output_format
    try:
        return ctx.store.put_frame(
            key=frame_key(job.id, out.frame, fmt), frame=out.frame, body=out.body, content_type=fmt.content_type
        )
    except ServiceUnavailable as exc:
        exc.doing = f"could not store frame {out.frame}"
        raise


def _stopped(ctx: RenderContext, job: Job, chunk: Chunk, token: str, job_status: str) -> Outcome:
    """The job left PROCESSING while this chunk rendered: the chunk ends CANCELLED (a one-chunk job with it)."""
    now = ctx.clock()
    log.info("%s stopped between frames: job is %s", chunk.name, job_status)
    try:
        ctx.repo.chunks.end(chunk, token=token, status=JobStatus.CANCELLED, now=now, expires_at=now + ctx.retention)
    except LeaseLost:
        if chunk.whole_job:
            return Outcome.STOPPED
        # Not ours any more: a new holder has it, or this very write completed the chunk item before its count
        # met the stop (repository/frames.py); then the cancel may be this worker's to finish, as below.
    if chunk.whole_job:  # a one-chunk job ended with its chunk: CANCELLED from CANCELLING
        if job_status == JobStatus.CANCELLING:
            ctx.notifier.job_ended(job, JobStatus.CANCELLED)
    elif job_status == JobStatus.CANCELLING:
        finish_cancel_if_idle(jobs=ctx.jobs, job_id=chunk.job_id, attempt=chunk.attempt, now=now)
    return Outcome.STOPPED


def attempts_for(failure: Failure, *, max_attempts: int, max_outage_attempts: int) -> int:
    """How many failed attempts end a chunk: an outage of the farm's own services gets the longer ladder, so a
    storage outage of minutes delays jobs instead of failing them; a refused scene file ends it at once (the
    file would be refused again). One count of failures serves them all."""
    if failure.code in REFUSED:
        return 1
    return max_outage_attempts if failure.code == FARM_UNAVAILABLE else max_attempts


def _fail_or_retry(ctx: RenderContext, job: Job, chunk: Chunk, token: str, failure: Failure) -> tuple[Outcome, int]:
    allowed = attempts_for(failure, max_attempts=ctx.max_attempts, max_outage_attempts=ctx.max_outage_attempts)
    if chunk.render_failures + 1 < allowed:
        try:
            after = ctx.repo.chunks.release(chunk, token=token, now=ctx.clock(), failure=failure)
        except LeaseLost:
            return Outcome.STOPPED, 0
        ctx.metrics.chunk_failed(reason=failure.code, retried=True)
        return Outcome.RETRY, after.render_failures
    return _give_up(ctx, job, chunk, token, failure)


def _give_up(ctx: RenderContext, job: Job, chunk: Chunk, token: str, failure: Failure) -> tuple[Outcome, int]:
    """The chunk fails for good; so does its job (policy: its other chunks stop at their next frame)."""
    now = ctx.clock()
    try:
        ctx.repo.chunks.end(
            chunk, token=token, status=JobStatus.FAILED, now=now, expires_at=now + ctx.retention, failure=failure
        )
    except LeaseLost:
        return Outcome.STOPPED, 0
    ctx.metrics.chunk_failed(reason=failure.code, retried=False)
    if chunk.whole_job:
        log.warning("job_failed job=%s code=%s", chunk.job_id, failure.code)
        ctx.notifier.job_ended(job, JobStatus.FAILED)
    else:
        job_fail(
            jobs=ctx.jobs,
            job_id=chunk.job_id,
            attempt=chunk.attempt,
            failure=Failure(failure.code, f"chunk {chunk.index}: {failure.message}"),
            now=now,
        )
    return Outcome.FAILED, chunk.render_failures + 1


def chunk_error(
    *,
    jobs: JobControl,
    job_id: str,
    index: int | None,
    attempt: int,
    error: BaseException,
    now: datetime,
    max_attempts: int,
    max_outage_attempts: int,
) -> tuple[Outcome, int]:
    """An error outside the render loop (a worker that cannot build its renderer, say) is a failed attempt.

    Counted on the chunk with its error, so it is retried with backoff and, past the attempts, fails the
    job: never a deleted message and an untouched job.
    """
    failure = describe(error)
    repo = jobs.repo
    try:
        chunk = repo.chunks.note_failure(job_id, index, attempt=attempt, failure=failure, now=now)
    except JobStateConflict:
        return Outcome.SKIPPED, 0  # finished, held by a live worker, or another attempt: not ours to count
    allowed = attempts_for(failure, max_attempts=max_attempts, max_outage_attempts=max_outage_attempts)
    if chunk.render_failures < allowed:
        return Outcome.RETRY, chunk.render_failures
    repo.chunks.fail(job_id, index, attempt=attempt, failure=failure, now=now)
    label = "" if index is None else f"chunk {index}: "
    job_fail(jobs=jobs, job_id=job_id, attempt=attempt, failure=Failure(failure.code, label + failure.message), now=now)
    return Outcome.FAILED, chunk.render_failures


def _assemble_if_last(ctx: RenderContext, job_id: str, attempt: int) -> None:
    """Assemble the job if every chunk is done: a read first (the other chunks' completions would fail the
    lease's conditional write, which is billed as a write), then the lease, which one worker takes."""
    job = ctx.repo.get(job_id)
    if job.attempt != attempt or job.chunks_done < job.chunks_total:
        return
    _assemble(ctx, job_id, attempt)


def _assemble(ctx: RenderContext, job_id: str, attempt: int) -> None:
    """Take the assembly lease (one worker does) and assemble the job."""
    token = secrets.token_hex(16)
    try:
        leased = ctx.repo.begin_assembly(
            job_id, attempt=attempt, worker=ctx.name, token=token, now=ctx.clock(), lease_seconds=ctx.lease_seconds
        )
    except JobStateConflict:
        return  # not the last chunk, or another worker assembles
    job_assemble(ctx=ctx, job=leased, token=token)
