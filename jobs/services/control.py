"""Job control: cancel (cooperative: workers check between frames) and retry (only unfinished chunks re-run)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..domain import Job, JobStatus
from ..errors import JobStateConflict
from ..repository import JobRepository
from .ports import TaskQueue

log = logging.getLogger(__name__)
RACE_ATTEMPTS = 3


def job_cancel(*, repo: JobRepository, job: Job, now: datetime, retention: timedelta) -> Job:
    """QUEUED -> CANCELLED at once; PROCESSING -> CANCELLING, and CANCELLED once no worker is on it."""
    for _ in range(RACE_ATTEMPTS):
        try:
            if job.status is JobStatus.QUEUED:
                return repo.transition(
                    job.id,
                    attempt=job.attempt,
                    source=JobStatus.QUEUED,
                    target=JobStatus.CANCELLED,
                    now=now,
                    expires_at=now + retention,
                )
            if job.status is JobStatus.PROCESSING:
                job = repo.transition(
                    job.id, attempt=job.attempt, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=now
                )
                return (
                    finish_cancel_if_idle(repo=repo, job_id=job.id, attempt=job.attempt, now=now, retention=retention)
                    or job
                )
            if job.status is JobStatus.CANCELLING:
                return job  # already on its way
            raise JobStateConflict(f"A {job.status} job cannot be cancelled.", details={"status": str(job.status)})
        except JobStateConflict as exc:
            if "attempt" not in exc.details:
                raise
            job = repo.get(job.id)  # it moved under us (a worker claimed it, say): decide again
    raise JobStateConflict("The job keeps changing; try again.")


def finish_cancel_if_idle(
    *, repo: JobRepository, job_id: str, attempt: int, now: datetime, retention: timedelta
) -> Job | None:
    """CANCELLING -> CANCELLED when no worker holds a live lease on the job or any of its chunks."""
    if not _no_live_chunk(repo, job_id, now):
        return None
    try:
        job = repo.transition(
            job_id,
            attempt=attempt,
            source=JobStatus.CANCELLING,
            target=JobStatus.CANCELLED,
            now=now,
            expires_at=now + retention,
            when_lease_free=True,
        )
    except JobStateConflict:
        return None
    log.info("job %s CANCELLED", job_id)
    return job


def _no_live_chunk(repo: JobRepository, job_id: str, now: datetime) -> bool:
    return not any(
        t.status is JobStatus.PROCESSING and t.lease_expires_at is not None and t.lease_expires_at > now
        for t in repo.tasks(job_id)
    )


def job_retry(*, repo: JobRepository, queue: TaskQueue, job: Job, now: datetime) -> Job:
    """FAILED | CANCELLED -> QUEUED as a new attempt; only chunks that did not complete are queued again."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobStateConflict(f"A {job.status} job cannot be retried.", details={"status": str(job.status)})
    job = repo.retry(job.id, attempt=job.attempt, now=now)
    if job.single_chunk:
        queue.enqueue_chunk(job_id=job.id, index=None, attempt=job.attempt, priority=job.priority)
    else:
        queue.enqueue_fanout(job_id=job.id, attempt=job.attempt, priority=job.priority)
    return job
