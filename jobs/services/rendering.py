"""The worker's use case: claim a chunk, render and upload its frames, record each one, finish or fail.

A one-chunk job is its own unit of work (the job item holds the lease and the frame results); a job of
several chunks has a task item per chunk, and the last chunk to finish triggers the assembly. Either way
every write is conditional on the lease (and the job still PROCESSING), so a duplicate message, a lost
lease, a cancel or a retry stops the work at the next frame without doubling anything.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from enum import StrEnum

from ..domain import FrameResult, Job, JobStatus, Task, frame_key
from ..errors import JobNotRunning, JobStateConflict, LeaseLost
from .assembly import job_assemble, make_outputs
from .control import finish_cancel_if_idle
from .lease import LeaseKeeper
from .ports import Worker

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DONE = "done"  # this chunk finished (and the job, if it was the last one)
    SKIPPED = "skipped"  # not ours to render: finished, held elsewhere, or the job stopped
    STOPPED = "stopped"  # stopped between frames (cancel, job failure, lost lease)
    RETRY = "retry"  # the render failed and will be retried: the caller schedules the retry
    FAILED = "failed"  # the render failed for the last time
    RELEASED = "released"  # handed back at worker shutdown: the caller sends its message again


class _ReleaseForShutdown(Exception):
    """The worker is shutting down and the rest of the chunk will not fit in the grace period."""


def _check_shutdown(worker: Worker, *, frames_left: int, frame_seconds: list[float]) -> None:
    left = worker.grace_left()
    if left is None:
        return
    per_frame = sum(frame_seconds) / len(frame_seconds) if frame_seconds else None
    if per_frame is None or frames_left * per_frame > left:
        raise _ReleaseForShutdown()


def chunk_process(*, worker: Worker, job_id: str, index: int | None, attempt: int) -> tuple[Outcome, int]:
    """Run one chunk message; returns the outcome and, for RETRY, how many failures the unit has had."""
    if index is None:
        return _single(worker, job_id, attempt)
    return _multi(worker, job_id, index, attempt)


def _render_frame(worker: Worker, job: Job, frame: int) -> tuple[FrameResult, float]:
    started = time.monotonic()
    body = worker.renderer.render(job, frame)
    elapsed = time.monotonic() - started
    fmt = job.scene.output_format
    result = worker.store.put_frame(
        key=frame_key(job.id, frame, fmt), frame=frame, body=body, content_type=fmt.content_type
    )
    return result, elapsed


def _single(worker: Worker, job_id: str, attempt: int) -> tuple[Outcome, int]:
    token = secrets.token_hex(16)
    repo, now = worker.repo, worker.clock()
    try:
        job = repo.claim(
            job_id, attempt=attempt, worker=worker.name, token=token, now=now, lease_seconds=worker.lease_seconds
        )
    except JobStateConflict as exc:
        log.info("job %s attempt %s not claimed: %s", job_id, attempt, exc.message)
        return Outcome.SKIPPED, 0
    results = list(job.results)  # frames a previous holder finished are kept (resume, not redo)
    renew = lambda: repo.renew_lease(job.id, token=token, until=worker.lease_until())  # noqa: E731
    frame_seconds: list[float] = []
    try:
        with LeaseKeeper(renew, every=worker.heartbeat_seconds) as keeper:
            for frame in list(job.frames)[len(results) :]:
                _check_shutdown(worker, frames_left=job.frames_total - len(results), frame_seconds=frame_seconds)
                result, elapsed = _render_frame(worker, job, frame)
                frame_seconds.append(elapsed)
                if len(results) + 1 < job.frames_total:
                    repo.record_frame(
                        job.id,
                        token=token,
                        frames_done=len(results),
                        result=result,
                        now=worker.clock(),
                        lease_until=worker.lease_until(),
                    )
                    keeper.touched()
                results.append(result)
            has_preview = make_outputs(store=worker.store, job=job, results=results)
        now = worker.clock()
        repo.complete(
            job.id,
            token=token,
            results=tuple(results),
            has_preview=has_preview,
            now=now,
            expires_at=now + worker.retention,
        )
        log.info("job_completed job=%s frames=%d", job_id, len(results))  # a metric filter counts these
        return Outcome.DONE, 0
    except JobStateConflict as exc:
        return _single_stopped(worker, job, token, exc), 0
    except _ReleaseForShutdown:
        with contextlib.suppress(JobStateConflict):
            repo.release(job.id, token=token, now=worker.clock())
        log.info("job %s released at shutdown after %d frames", job_id, len(results))
        return Outcome.RELEASED, 0
    except Exception as exc:
        log.exception("job %s: render failed", job_id)
        now = worker.clock()
        error = f"{type(exc).__name__}: {exc}"
        if job.render_failures + 1 >= worker.max_attempts:
            repo.fail(job.id, token=token, error=error, now=now, expires_at=now + worker.retention)
            log.warning("job_failed job=%s error=%s", job.id, error)  # a metric filter counts these
            return Outcome.FAILED, job.render_failures + 1
        after = repo.release(job.id, token=token, error=error, now=now)
        return Outcome.RETRY, after.render_failures


def _single_stopped(worker: Worker, job: Job, token: str, exc: JobStateConflict) -> Outcome:
    if exc.details.get("status") == JobStatus.CANCELLING:
        now = worker.clock()
        try:
            worker.repo.stop(job.id, token=token, now=now, expires_at=now + worker.retention)
            log.info("job %s CANCELLED between frames", job.id)
        except JobStateConflict:
            pass
    else:
        log.warning("job %s: lease lost while rendering (%s); leaving it to its new holder", job.id, exc.message)
    return Outcome.STOPPED


def _multi(worker: Worker, job_id: str, index: int, attempt: int) -> tuple[Outcome, int]:
    repo, now = worker.repo, worker.clock()
    try:
        job = repo.start(job_id, attempt=attempt, now=now)
    except JobStateConflict as exc:
        status = exc.details.get("status")
        log.info("job %s chunk %s attempt %s dropped: %s", job_id, index, attempt, exc.message)
        if status in (JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED):
            repo.drop_task(job_id, index, attempt=attempt, now=now)
        if status == JobStatus.CANCELLING:
            finish_cancel_if_idle(repo=repo, job_id=job_id, attempt=attempt, now=now, retention=worker.retention)
        return Outcome.SKIPPED, 0
    token = secrets.token_hex(16)
    try:
        task = repo.claim_task(
            job_id, index, attempt=attempt, worker=worker.name, token=token, now=now, lease_seconds=worker.lease_seconds
        )
    except JobStateConflict as exc:
        log.info("job %s chunk %s not claimed: %s", job_id, index, exc.message)
        if exc.details.get("status") == JobStatus.COMPLETED:
            _assemble_if_last(worker, job)  # the assembler may have died: a redelivery finishes its work
        return Outcome.SKIPPED, 0
    try:
        frames = list(task.frames)
        held = task
        renew = lambda: repo.renew_task_lease(held, token=token, until=worker.lease_until())  # noqa: E731
        frame_seconds: list[float] = []
        with LeaseKeeper(renew, every=worker.heartbeat_seconds) as keeper:
            while task.frames_done < len(frames):
                _check_shutdown(worker, frames_left=len(frames) - task.frames_done, frame_seconds=frame_seconds)
                result, elapsed = _render_frame(worker, job, frames[task.frames_done])
                frame_seconds.append(elapsed)
                repo.record_task_frame(
                    task,
                    token=token,
                    result=result,
                    render_seconds=elapsed,
                    now=worker.clock(),
                    lease_until=worker.lease_until(),
                )
                keeper.touched()
                task = task.replace(frames_done=task.frames_done + 1)
        log.info("job %s chunk %s COMPLETED", job_id, index)
        _assemble_if_last(worker, job)
        return Outcome.DONE, 0
    except LeaseLost:
        log.warning("job %s chunk %s: lease lost; leaving it to its new holder", job_id, index)
        return Outcome.STOPPED, 0
    except _ReleaseForShutdown:
        with contextlib.suppress(LeaseLost):
            repo.release_task(task, token=token, now=worker.clock())
        log.info("job %s chunk %s released at shutdown after %d frames", job_id, index, task.frames_done)
        return Outcome.RELEASED, 0
    except JobNotRunning as exc:
        return _multi_stopped(worker, task, token, exc.status), 0
    except Exception as exc:
        log.exception("job %s chunk %s: render failed", job_id, index)
        return _multi_failed(worker, task, token, f"{type(exc).__name__}: {exc}")


def _multi_stopped(worker: Worker, task: Task, token: str, job_status: str) -> Outcome:
    now = worker.clock()
    log.info("job %s chunk %s stopped between frames: job is %s", task.job_id, task.index, job_status)
    try:
        worker.repo.end_task(task, token=token, status=JobStatus.CANCELLED, now=now)
    except LeaseLost:
        return Outcome.STOPPED
    if job_status == JobStatus.CANCELLING:
        finish_cancel_if_idle(
            repo=worker.repo, job_id=task.job_id, attempt=task.attempt, now=now, retention=worker.retention
        )
    return Outcome.STOPPED


def _multi_failed(worker: Worker, task: Task, token: str, error: str) -> tuple[Outcome, int]:
    repo, now = worker.repo, worker.clock()
    try:
        if task.render_failures + 1 < worker.max_attempts:
            after = repo.release_task(task, token=token, error=error, now=now)
            return Outcome.RETRY, after.render_failures
        repo.end_task(task, token=token, status=JobStatus.FAILED, now=now, error=error)
    except LeaseLost:
        return Outcome.STOPPED, 0
    # Policy: a chunk out of attempts fails the job at once; its other chunks stop at their next frame.
    with contextlib.suppress(JobStateConflict):  # already stopped (cancelled, or failed by another chunk)
        repo.fail_unfinished(
            task.job_id,
            attempt=task.attempt,
            error=f"chunk {task.index}: {error}",
            now=now,
            expires_at=now + worker.retention,
        )
    return Outcome.FAILED, task.render_failures + 1


def _assemble_if_last(worker: Worker, job: Job) -> None:
    token = secrets.token_hex(16)
    now = worker.clock()
    try:
        leased = worker.repo.begin_assembly(
            job.id, attempt=job.attempt, worker=worker.name, token=token, now=now, lease_seconds=worker.lease_seconds
        )
    except JobStateConflict:
        return  # not the last chunk, or another worker assembles
    job_assemble(worker=worker, job=leased, token=token)
