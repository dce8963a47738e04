"""Job control: cancel (cooperative: workers check between frames) and retry (only unfinished chunks re-run)."""

from __future__ import annotations

import logging
from datetime import datetime

from jobs.domain import UNFINISHED_STATES, Failure, Job, JobStatus
from jobs.errors import JobNotFound, JobStateConflict, ServiceUnavailable, StaleWrite
from jobs.ports import JobControl, JobRepository, TaskQueue
from jobs.services.assets import SceneFiles

log = logging.getLogger(__name__)
RACE_ATTEMPTS = 3


def job_cancel(*, jobs: JobControl, job: Job, now: datetime) -> Job:
    """QUEUED -> CANCELLED at once; PROCESSING -> CANCELLING, and CANCELLED once no worker is on it."""
    repo, retention, notifier = jobs.repo, jobs.retention, jobs.notifier
    for _ in range(RACE_ATTEMPTS):
        try:
            if job.status is JobStatus.QUEUED:
                cancelled = repo.transition(
                    job.id,
                    attempt=job.attempt,
                    source=JobStatus.QUEUED,
                    target=JobStatus.CANCELLED,
                    now=now,
                    expires_at=now + retention,
                )
                notifier.job_ended(cancelled, JobStatus.CANCELLED)
                return cancelled
            if job.status is JobStatus.PROCESSING:
                job = repo.transition(
                    job.id, attempt=job.attempt, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=now
                )
                return finish_cancel_if_idle(jobs=jobs, job_id=job.id, attempt=job.attempt, now=now) or job
            if job.status is JobStatus.CANCELLING:
                return job  # already on its way
            raise JobStateConflict(f"A {job.status} job cannot be cancelled.", details={"status": str(job.status)})
        except StaleWrite:
            job = repo.get(job.id)  # it moved under us (a worker claimed it, say): decide again
    raise JobStateConflict("The job keeps changing; try again.")


def finish_cancel_if_idle(*, jobs: JobControl, job_id: str, attempt: int, now: datetime) -> Job | None:
    """CANCELLING -> CANCELLED when no worker holds a live lease on the job or any of its chunks."""
    if not _no_live_chunk(jobs.repo, job_id, now):
        return None
    try:
        job = jobs.repo.transition(
            job_id,
            attempt=attempt,
            source=JobStatus.CANCELLING,
            target=JobStatus.CANCELLED,
            now=now,
            expires_at=now + jobs.retention,
            when_lease_free=True,
        )
    except JobStateConflict:
        return None
    log.info("job %s CANCELLED", job_id)
    jobs.notifier.job_ended(job, JobStatus.CANCELLED)
    return job


def _no_live_chunk(repo: JobRepository, job_id: str, now: datetime) -> bool:
    return not any(c.held_by_live_lease(now) for c in repo.chunks.list(job_id))


def job_fail(*, jobs: JobControl, job_id: str, attempt: int, failure: Failure, now: datetime) -> Job | None:
    """The job FAILS in this attempt (whoever holds it), and its chunks that no live lease holds are CANCELLED
    at once; held ones stop at their next frame. None if the job had already stopped."""
    try:
        job = jobs.repo.fail(job_id, attempt=attempt, failure=failure, now=now, expires_at=now + jobs.retention)
    except (JobStateConflict, JobNotFound):
        return None
    log.warning("job_failed job=%s code=%s", job_id, failure.code)  # a metric filter counts these
    jobs.notifier.job_ended(job, JobStatus.FAILED)
    stop_idle_chunks(repo=jobs.repo, job_id=job_id, attempt=attempt, now=now)
    return job


def stop_idle_chunks(*, repo: JobRepository, job_id: str, attempt: int, now: datetime) -> int:
    """CANCEL the unfinished chunk items of a stopped job that no live lease holds; returns how many."""
    return sum(
        repo.chunks.drop(job_id, c.index, attempt=attempt, now=now)
        for c in repo.chunks.list(job_id)
        if c.attempt == attempt and c.status in UNFINISHED_STATES and not c.held_by_live_lease(now)
    )


def send_step(*, queue: TaskQueue, job: Job, index: int) -> None:
    """The message of a step just QUEUED; one that cannot be sent now is sent by the sweeper's audit of the job."""
    try:
        queue.enqueue_step(job_id=job.id, attempt=job.attempt, index=index, priority=job.priority)
    except ServiceUnavailable:
        log.warning("job %s: step %s queued but its message not sent; the sweeper sends it", job.id, index)


def enqueue_work(*, queue: TaskQueue, job: Job) -> None:
    """A job's first message in an attempt: its only chunk, or the fan-out that creates and sends its chunks."""
    if job.single_chunk:
        queue.enqueue_chunk(job_id=job.id, index=None, attempt=job.attempt, priority=job.priority)
    else:
        queue.enqueue_fanout(job_id=job.id, attempt=job.attempt, priority=job.priority)


def job_retry(*, jobs: JobControl, job: Job, now: datetime, scene_files: SceneFiles) -> Job:
    """FAILED | CANCELLED -> QUEUED as a new attempt; only chunks that did not complete are queued again.

    A job with a scene file needs it still stored (422 scene_file_missing otherwise); the retry keeps it.
    """
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobStateConflict(f"A {job.status} job cannot be retried.", details={"status": str(job.status)})
    if job.scene_file:
        scene_files.keep(owner=job.owner, sha256=job.scene_file, now=now, waited_for=False)
    job = jobs.repo.retry(job.id, attempt=job.attempt, now=now)
    enqueue_work(queue=jobs.queue, job=job)
    return job
