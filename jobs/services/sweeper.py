"""The sweeper: finds work that could be stuck through the sparse gsi2 (no scans) and gets it moving.

- QUEUED jobs and chunks overdue by the grace period (the API wrote DynamoDB but the message was lost,
  or a fan-out died): their message is sent again; a duplicate of a message that does exist loses its
  claim, so this is safe.
- PROCESSING chunks (and one-chunk jobs, and assemblies) whose lease lapsed: the worker died and its
  message is gone (e.g. deleted after a redelivery lost its claim); a new message lets a worker take over.
- CANCELLING jobs: CANCELLED once no live lease remains (a worker died mid-cancel).
Every item it acts on is first postponed by a conditional write, so two sweepers running at once never
both act on it; everything else it does is idempotent anyway.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from ..domain import JobStatus
from ..errors import JobNotFound
from ..repository import JobRepository
from .control import finish_cancel_if_idle
from .ports import TaskQueue

log = logging.getLogger(__name__)
INDEXES = ("JOB#QUEUED", "JOB#PROCESSING", "JOB#CANCELLING", "TASK#QUEUED", "TASK#PROCESSING")


def sweep(
    *,
    repo: JobRepository,
    queue: TaskQueue,
    now: datetime,
    queued_grace: timedelta,
    retention: timedelta,
    limit: int = 500,
) -> Counter:
    """One pass over the overdue items; returns what it did, by kind."""
    done: Counter = Counter()
    for index in INDEXES:
        # QUEUED work is overdue only after the grace period; a lease is overdue as soon as it lapses.
        cutoff = now - queued_grace if index.endswith("QUEUED") else now
        for item in repo.overdue(index, now=cutoff, limit=limit):
            if not repo.postpone(item, until=now + queued_grace):
                continue  # another sweeper has it
            try:
                done[_act(repo, queue, index, item, now, retention)] += 1
            except JobNotFound:
                done["gone"] += 1
    if done:
        log.info("sweep: %s", dict(done))
    return done


def _act(repo: JobRepository, queue: TaskQueue, index: str, item: dict, now: datetime, retention: timedelta) -> str:
    kind, _, status = index.partition("#")
    job = repo.get(item["job_id"] if kind == "TASK" else item["id"])
    if kind == "JOB" and status == JobStatus.CANCELLING:
        finished = finish_cancel_if_idle(repo=repo, job_id=job.id, attempt=job.attempt, now=now, retention=retention)
        return "cancel_finished" if finished else "cancel_waiting"
    if job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
        return "skipped"
    if kind == "TASK":
        if int(item["attempt"]) != job.attempt:
            return "skipped"
        queue.enqueue_chunk(job_id=job.id, index=int(item["index"]), attempt=job.attempt, priority=job.priority)
        return "chunk_requeued"
    if job.single_chunk:
        queue.enqueue_chunk(job_id=job.id, index=None, attempt=job.attempt, priority=job.priority)
        return "job_requeued"
    if job.status is JobStatus.QUEUED:
        queue.enqueue_fanout(job_id=job.id, attempt=job.attempt, priority=job.priority)
        return "fanout_requeued"
    # A multi-chunk job is indexed while PROCESSING only by its assembly lease: the assembler died.
    # Any chunk message finds its chunk done and runs the assembly again.
    queue.enqueue_chunk(job_id=job.id, index=job.chunks_total - 1, attempt=job.attempt, priority=job.priority)
    return "assembly_requeued"
