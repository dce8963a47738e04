"""The sweeper: finds work that could be stuck through gsi2 (no scans) and gets it moving.

Every job item has an entry in gsi2 from its put, written once: a claim, a frame or an end writes none
(repository/items.py `due_index`); chunk items have none, their job's entry stands for them. The sweeper
reads the entries whose grace period has passed since their time (creation, or the last time someone
looked at or reopened the work), from its position in each shard on, reads their items, and passes the
finished ones for good (its position moves past them, `advance`). Each unfinished one is postponed (its
time set to now, so it is looked at again a grace period later) and looked at:

- QUEUED jobs (the API wrote DynamoDB but the message was lost, or a fan-out died): their message is sent
  again; a duplicate of a message that does exist loses its claim, so this is safe.
- PROCESSING one-chunk jobs whose lease lapsed: the worker died and its message is gone (e.g. deleted
  after a redelivery lost its claim); a new message lets a worker take over. One whose lease is still
  renewed is rendering: just postponed.
- CANCELLING jobs: CANCELLED once no live lease remains (a worker died mid-cancel).
- Jobs of several chunks, QUEUED or PROCESSING (looked at every grace period while they run): an audit of
  their chunks checks that the job has a live path to an end. Missing chunk items mean the fan-out must run
  (again); unfinished chunks keep it alive, and those waiting (their messages went out at least a grace
  period ago) or held by a lapsed lease get their message again; a failed chunk fails the job; chunks
  stopped while the job runs fail it with a clear error; all chunks done means the assembly runs again; a
  job handed to its steps has its current step's message sent again unless a live lease holds it (a lost
  message, a dead holder: the next claim takes it over).
- Jobs of several chunks that FAILED or were CANCELLED: chunks a dead holder left unfinished are CANCELLED
  (the entry comes back while one still runs under a live lease).
- Webhook deliveries still pending well after they were due (`HOOK#PENDING`) get their message again.
Every item it acts on is first postponed by a conditional write, so two sweepers running at once never
both act on it; everything else it does is idempotent anyway.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from datetime import datetime, timedelta

from jobs.domain import ACTIVE_STATES, UNFINISHED_STATES, Chunk, Failure, Job, JobStatus
from jobs.errors import JobNotFound, JobStateConflict
from jobs.ports import JobControl, LogContext, Overdue, WebhookRepository
from jobs.ports.values import WorkKind
from jobs.services.control import enqueue_work, finish_cancel_if_idle, job_fail
from jobs.services.sweep_counts import Swept
from jobs.services.webhooks import webhooks_sweep

log = logging.getLogger(__name__)
SWEPT = (WorkKind.JOB, WorkKind.CHUNK)


def sweep(
    *,
    jobs: JobControl,
    hooks: WebhookRepository,
    now: datetime,
    queued_grace: timedelta,
    log_context: LogContext,
    limit: int = 500,
) -> Counter:
    """One pass over the work whose grace period has passed (jobs, chunks, webhook deliveries); returns what it
    did, by kind. Each item's log lines carry its job, chunk and attempt (`log_context`)."""
    done: Counter = Counter()
    repo = jobs.repo
    for kind in SWEPT:
        due = repo.overdue(kind, before=now - queued_grace, limit=limit)
        for work in due:
            if work.is_job and work.status in STOPPED:
                with log_context(job_id=work.job_id, chunk=None, attempt=work.attempt):
                    _stopped(jobs, work, now, done, log_context)
                continue
            if work.status not in ACTIVE_STATES:
                continue  # finished (or gone): passed for good
            with log_context(job_id=work.job_id, chunk=work.index, attempt=work.attempt):
                if not repo.postpone(work, until=now):
                    continue  # another sweeper has it
                try:
                    outcome = _act(jobs, work, now, done, log_context)
                except JobNotFound:
                    outcome = Swept.GONE
                done[outcome] += 1
                log.info("sweep: overdue %s %s: %s", work.status, "job" if work.is_job else "chunk", outcome)
        repo.advance(due)
    done.update(webhooks_sweep(hooks=hooks, queue=jobs.queue, now=now, grace=queued_grace, limit=limit))
    if done:
        log.info("sweep: %s", dict(done))
    return done


# A job that stopped: its entry is looked at once more, for chunks a dead holder left unfinished.
STOPPED = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def _act(jobs: JobControl, work: Overdue, now: datetime, done: Counter, log_context: LogContext) -> Swept:
    repo, queue = jobs.repo, jobs.queue
    job = repo.get(work.job_id)
    chunks = _ChunkSweep(jobs, job, now, done, log_context)
    if work.is_job and work.status is JobStatus.CANCELLING:
        finished = finish_cancel_if_idle(jobs=jobs, job_id=job.id, attempt=job.attempt, now=now)
        if finished is not None:
            chunks.drop_leftovers()  # what still runs is looked at again with the entry (postponed above)
        return Swept.CANCEL_FINISHED if finished else Swept.CANCEL_WAITING
    if job.status not in UNFINISHED_STATES or work.attempt != job.attempt:
        if not work.is_job and repo.chunks.drop(job.id, work.index, attempt=work.attempt, now=now):
            return Swept.CHUNK_DROPPED  # a leftover of a job that stopped (an entry of an earlier version)
        return Swept.SKIPPED
    if work.status is JobStatus.PROCESSING and (not work.is_job or job.single_chunk):
        held = job.as_chunk() if work.is_job else repo.chunks.get(job.id, work.index)
        if held.held_by_live_lease(now):
            return Swept.LEASE_ALIVE  # rendering, and renewing its lease: postponed above, looked at again later
    if not work.is_job:
        queue.enqueue_chunk(job_id=job.id, index=work.index, attempt=job.attempt, priority=job.priority)
        return Swept.CHUNK_REQUEUED
    if job.single_chunk:
        enqueue_work(queue=queue, job=job)
        return Swept.JOB_REQUEUED
    return audit(jobs=jobs, job=job, now=now, chunks=chunks)


def _stopped(jobs: JobControl, work: Overdue, now: datetime, done: Counter, log_context: LogContext) -> None:
    """A job that FAILED or was CANCELLED: its chunks that a dead holder left unfinished are CANCELLED; while one
    still runs under a live lease (it stops at its next frame), the entry is postponed, else passed for good.
    No write at all for a job of one chunk, or one whose chunks all stopped."""
    try:
        job = jobs.repo.get(work.job_id)
    except JobNotFound:
        return
    if job.single_chunk or job.attempt != work.attempt:
        return
    if _ChunkSweep(jobs, job, now, done, log_context).drop_leftovers():
        jobs.repo.postpone(work, until=now)


class _ChunkSweep:
    """The sweeper's look at one job's chunk items (they have no index entry of their own): each one it acts
    on is counted and logged within its chunk's context, as an overdue item of its own would be."""

    def __init__(self, jobs: JobControl, job: Job, now: datetime, done: Counter, log_context: LogContext):
        self.jobs, self.job, self.now, self.done, self.log_context = jobs, job, now, done, log_context

    def _note(self, chunk: Chunk, outcome: Swept) -> None:
        self.done[outcome] += 1
        with self.log_context(job_id=chunk.job_id, chunk=chunk.index, attempt=chunk.attempt):
            log.info("sweep: overdue %s chunk: %s", chunk.status, outcome)

    def resend_stuck(self, current: list[Chunk]) -> None:
        """Chunks of this attempt waiting past their grace period (the job's entry came due: its chunks' messages
        went out at least that long ago) or held by a lapsed lease get their message again; a duplicate of a
        message that does exist loses its claim."""
        for chunk in current:
            if chunk.status not in UNFINISHED_STATES or chunk.held_by_live_lease(self.now):
                continue
            self.jobs.queue.enqueue_chunk(
                job_id=self.job.id, index=chunk.index, attempt=self.job.attempt, priority=self.job.priority
            )
            self._note(chunk, Swept.CHUNK_REQUEUED)

    def drop_leftovers(self) -> bool:
        """A stopped job's unfinished chunks that no live lease holds are CANCELLED; True while one still runs
        under a live lease (it stops itself at its next frame)."""
        if self.job.single_chunk:
            return False
        running = False
        for chunk in self.jobs.repo.chunks.list(self.job.id):
            if chunk.status not in UNFINISHED_STATES:
                continue
            if self.jobs.repo.chunks.drop(self.job.id, chunk.index, attempt=chunk.attempt, now=self.now):
                self._note(chunk, Swept.CHUNK_DROPPED)
            else:
                running = True
        return running


def audit(*, jobs: JobControl, job: Job, now: datetime, chunks: _ChunkSweep) -> Swept:
    """Check that a running job of several chunks has a way to an end; repair it, or fail it with a reason."""
    repo, queue = jobs.repo, jobs.queue
    items = repo.chunks.list(job.id)
    current = [c for c in items if c.attempt == job.attempt]
    kept = [c for c in items if c.attempt < job.attempt and c.status is JobStatus.COMPLETED]
    if len(current) + len(kept) < job.chunks_total:
        enqueue_work(queue=queue, job=job)  # the fan-out creates or requeues what this attempt lacks
        return Swept.FANOUT_REQUEUED
    if any(c.status in UNFINISHED_STATES for c in current):
        chunks.resend_stuck(current)  # lost messages and dead holders
        return Swept.RUNNING
    failed = [c for c in current if c.status is JobStatus.FAILED]
    stopped = [c for c in current if c.status is JobStatus.CANCELLED]
    if failed or stopped:
        first = (failed or stopped)[0]
        failure = (
            Failure(first.error_code or "chunk_failed", f"chunk {first.index}: {first.error or 'failed'}")
            if failed
            else Failure("stalled", f"chunks {', '.join(str(c.index) for c in stopped)} stopped while the job ran.")
        )
        job_fail(jobs=jobs, job_id=job.id, attempt=job.attempt, failure=failure, now=now)
        log.warning("job %s had no way to finish: %s", job.id, failure.message)
        return Swept.JOB_FAILED
    if job.steps and job.steps_attempt == job.attempt:
        return _audit_steps(jobs, job, now)
    if job.lease_token and job.lease_expires_at and job.lease_expires_at > now:
        return Swept.ASSEMBLING
    # Every chunk is done: the assembly did not run or its worker died. Its counts are set again from the chunks
    # (they should already be right: each chunk counted itself with its completion), then any chunk message
    # finds its chunk done and runs the assembly again.
    with contextlib.suppress(JobStateConflict):
        repo.recount(job.id, attempt=job.attempt, now=now)
    queue.enqueue_chunk(job_id=job.id, index=job.chunks_total - 1, attempt=job.attempt, priority=job.priority)
    return Swept.ASSEMBLY_REQUEUED


def _audit_steps(jobs: JobControl, job: Job, now: datetime) -> Swept:
    """A job whose frames are assembled runs its steps: the current one is held by a live lease (running), or
    its message is sent again (it was lost, or its holder died: the claim takes it over)."""
    if job.lease_token and job.lease_expires_at and job.lease_expires_at > now:
        return Swept.STEP_RUNNING
    index = job.current_step
    if index is None:
        return Swept.SKIPPED  # completing: the last step's write ends the job
    jobs.queue.enqueue_step(job_id=job.id, attempt=job.attempt, index=index, priority=job.priority)
    return Swept.STEP_REQUEUED
