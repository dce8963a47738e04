"""Fan-out of a multi-chunk job, off the request path: task items, then one message per chunk.

Idempotent: task items are created in conditional transactions (a re-run finds them and moves on), and
a cursor on the job (`fanout_sent`, advanced conditionally after every batch) says which chunk messages
are out, so a fan-out that dies halfway resends at most one batch, whose duplicates lose their claims.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..domain import Job, JobStatus
from ..errors import JobStateConflict
from ..repository import JobRepository
from .ports import TaskQueue

log = logging.getLogger(__name__)
BATCH = 10


def job_fanout(*, repo: JobRepository, queue: TaskQueue, job_id: str, attempt: int, now: datetime) -> int:
    """Create (or requeue) the chunks of this attempt and send their messages; returns how many were sent."""
    job = repo.get(job_id)
    if job.attempt != attempt or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
        log.info(
            "job %s: fan-out of attempt %s skipped (job is %s, attempt %s)", job_id, attempt, job.status, job.attempt
        )
        return 0
    indexes = _first_attempt(repo, job) if attempt == 1 else _requeue(repo, job, now)
    pending = [i for i in indexes if i > job.fanout_sent]
    sent, cursor = 0, job.fanout_sent
    for start in range(0, len(pending), BATCH):
        batch = pending[start : start + BATCH]
        for index in batch:
            queue.enqueue_chunk(job_id=job.id, index=index, attempt=attempt, priority=job.priority)
        sent += len(batch)
        try:
            repo.advance_fanout(job.id, attempt=attempt, sent_before=cursor, sent_now=batch[-1])
        except JobStateConflict:
            log.info("job %s: fan-out overtaken (another run, a cancel or a retry); stopping", job.id)
            break
        cursor = batch[-1]
    return sent


def _first_attempt(repo: JobRepository, job: Job) -> list[int]:
    tasks = job.first_tasks()
    repo.put_tasks(job, tasks)
    return [t.index for t in tasks]


def _requeue(repo: JobRepository, job: Job, now: datetime) -> list[int]:
    indexes = []
    for task in repo.tasks(job.id):
        if task.attempt < job.attempt and task.status is not JobStatus.COMPLETED:
            repo.requeue_task(task, attempt=job.attempt, now=now)
            indexes.append(task.index)
        elif task.attempt == job.attempt:
            indexes.append(task.index)  # requeued by an earlier run of this fan-out
    return indexes
