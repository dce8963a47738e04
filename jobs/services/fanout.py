"""Fan-out of a multi-chunk job, off the request path: chunk items, then one message per chunk.

Idempotent: whatever chunk items of this attempt do not exist yet are created (a retry of a job cancelled
before its first fan-out creates them all), unfinished chunks of earlier attempts join this one, and a
cursor on the job (`fanout_sent`, advanced conditionally after every batch) says which chunk messages are
out, so a fan-out that dies halfway resends at most one batch, whose duplicates lose their claims.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from jobs.domain import Job, JobStatus
from jobs.errors import JobStateConflict
from jobs.ports import JobControl, JobRepository

log = logging.getLogger(__name__)
BATCH = 10


def job_fanout(*, jobs: JobControl, job_id: str, attempt: int, now: datetime) -> int:
    """Create (or requeue) the chunks of this attempt and send their messages; returns how many were sent."""
    repo, queue = jobs.repo, jobs.queue
    job = repo.get(job_id)
    if job.attempt != attempt or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
        log.info(
            "job %s: fan-out of attempt %s skipped (job is %s, attempt %s)", job_id, attempt, job.status, job.attempt
        )
        return 0
    indexes = _chunks_of_attempt(repo, job, now)
    if not indexes:
        # Every chunk completed in an earlier attempt (a retry after the assembly or a step failed): one chunk
        # message starts the job, finds its chunk done and runs the assembly (and the steps) again.
        queue.enqueue_chunk(job_id=job.id, index=job.chunks_total - 1, attempt=attempt, priority=job.priority)
        return 1
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


def _chunks_of_attempt(repo: JobRepository, job: Job, now: datetime) -> list[int]:
    """The indexes of the chunks this attempt renders, after making sure each has its item in the attempt."""
    existing = {c.index: c for c in repo.chunks.list(job.id)}
    repo.chunks.put(job, [c for c in job.new_chunks() if c.index not in existing])
    indexes = []
    for index in range(job.chunks_total):
        chunk = existing.get(index)
        if chunk is not None and chunk.attempt < job.attempt:
            if chunk.status is JobStatus.COMPLETED:
                continue  # finished in an earlier attempt: its frames are kept, and counted below
            repo.chunks.requeue(chunk, attempt=job.attempt, now=now)
        indexes.append(index)
    if job.attempt > 1 and job.fanout_sent < 0:  # before this attempt's first message: no chunk writes yet
        with contextlib.suppress(JobStateConflict):  # a job stopped meanwhile has nothing to count
            repo.recount(job.id, attempt=job.attempt, now=now)
    return indexes
