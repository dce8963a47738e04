"""In-memory fakes with the same interfaces as the AWS adapters, for unit tests of services.

The repository contract tests in tests/integration run against both this fake and DynamoDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from datetime import datetime, timedelta

from jobs.domain import (
    PRICE_GB_HOUR,
    PRICE_VCPU_HOUR,
    UNFINISHED_STATES,
    Chunk,
    Failure,
    FrameResult,
    Job,
    JobStatus,
    Prices,
    Priority,
    Step,
    StepArtifact,
    StepStatus,
    asset_key,
    can_transition,
    month_of,
    sources,
)
from jobs.errors import (
    IdempotencyTaken,
    InvalidCursor,
    JobAlreadyExists,
    JobNotFound,
    JobNotRunning,
    JobStateConflict,
    LeaseLost,
    OwnerLimitReached,
    RenderError,
    ServiceUnavailable,
    StaleWrite,
)
from jobs.ports import (
    INSPECTION_PENDING,
    AssetInspection,
    AssetRecord,
    ChunkPage,
    IdempotencyRecord,
    JobControl,
    JobPage,
    NoNotifier,
    Overdue,
    OwnerSpend,
    StoredAsset,
    StoredFile,
    UploadTicket,
    no_log_context,
)
from jobs.ports.values import WorkKind
from jobs.renderers import FrameRenderer

P, Q = JobStatus.PROCESSING, JobStatus.QUEUED
EPOCH0 = datetime.fromtimestamp(0).astimezone()
FINAL = (JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED)


def _conflict(status: JobStatus, attempt: int) -> StaleWrite:
    return StaleWrite(str(status), attempt)


def _lapsed(lease: datetime | None, now: datetime) -> bool:
    return lease is None or lease < now


class InMemoryJobRepository:
    """Same conditions as DynamoJobRepository, applied to dicts. `due` mirrors gsi2: key -> since (the entry is
    written with the item and kept through its end, as DynamoDB's), `swept` the sweeper's position per kind."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self.chunk_items: dict[tuple[str, int], Chunk] = {}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.due: dict[tuple[str, int | None], datetime] = {}
        self.swept: dict[str, str] = {}
        self.usage: dict[str, int] = {}  # frames of each owner's jobs waiting or rendering
        self.spend_seconds: dict[tuple[str, str], float] = {}  # (owner, month) -> worker-seconds, as budgets.py's items
        self.budgets: dict[str, float] = {}  # owner -> dollars a month
        self.charged: dict[str, float] = {}  # job id -> worker-seconds its earlier ends charged (a retry notes them)
        self.chunks = InMemoryChunkRepository(self)
        self.steps = InMemoryStepRepository(self)

    def reserve_frames(self, owner: str, frames: int, *, limit: int) -> None:
        active = self.usage.get(owner, 0)
        if limit and active > limit - frames:
            raise OwnerLimitReached(details={"frames_active": active, "frames_requested": frames, "limit": limit})
        self.usage[owner] = active + frames

    def release_frames(self, owner: str, frames: int) -> None:
        self.usage[owner] = self.usage.get(owner, 0) - frames

    # --- budgets (BudgetRepository: the same object serves both, as one table does) ----------------
    def set_budget(self, owner: str, dollars: float | None, *, now: datetime) -> None:
        if dollars is None:
            self.budgets.pop(owner, None)
        else:
            self.budgets[owner] = round(dollars, 2)

    def spend(self, owner: str, *, month: str) -> OwnerSpend:
        return OwnerSpend(
            owner=owner,
            month=month,
            worker_seconds=self.spend_seconds.get((owner, month), 0.0),
            budget=self.budgets.get(owner),
        )

    def budgeted_spend(self, owner: str, *, month: str) -> OwnerSpend | None:
        return self.spend(owner, month=month) if owner in self.budgets else None

    # --- jobs ---------------------------------------------------------------------------------
    def add(self, job: Job, *, idempotency: IdempotencyRecord | None = None) -> None:
        """As DynamoDB's: the record's put, then the job's (two writes, not one transaction)."""
        if idempotency is not None:
            held = self.idempotency.get(idempotency.name)
            if held and held.expires_at >= idempotency.created_at:
                raise IdempotencyTaken()
            self.idempotency[idempotency.name] = idempotency
        if job.id in self.jobs and self.jobs[job.id] != job:
            raise JobAlreadyExists()
        self.jobs[job.id] = job
        self.due[(job.id, None)] = job.created_at

    def idempotency_record(self, name: str) -> IdempotencyRecord | None:
        return self.idempotency.get(name)

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound() from None

    def recount(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        job = self.get(job_id)
        if job.status not in (Q, P) or job.attempt != attempt:
            raise JobNotRunning(str(job.status))
        chunks = self.chunks.list(job_id)
        totals = (sum(c.frames_done for c in chunks), sum(c.status is JobStatus.COMPLETED for c in chunks))
        return self._put(job.replace(frames_done=totals[0], chunks_done=totals[1], updated_at=now))

    def note_warnings(self, job_id: str, warnings: list[str]) -> None:
        job = self.get(job_id)
        self.jobs[job_id] = job.replace(warnings=tuple(sorted({*job.warnings, *warnings})))

    def withdraw(self, job_id: str) -> None:
        self._job_if(job_id, lambda j: j.status is Q)
        del self.jobs[job_id]
        self.due.pop((job_id, None), None)

    def list_for_owner(self, owner, *, status, cursor, limit) -> JobPage:
        if cursor:
            try:
                _start, listed_status, listed_limit = cursor.split(":")
            except ValueError:
                raise InvalidCursor() from None
            if status is not None and listed_status not in ("", str(status)):
                raise InvalidCursor("This cursor continues a listing with another status filter.")
            status = JobStatus(listed_status) if listed_status else status
            limit = limit or int(listed_limit)
        limit = limit or 20
        mine = sorted(
            (j for j in self.jobs.values() if j.owner == owner and (status is None or j.status is status)),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        first = int(cursor.split(":")[0]) if cursor else 0
        more = first + limit < len(mine)
        following = f"{first + limit}:{status or ''}:{limit}" if more else None
        return JobPage(jobs=mine[first : first + limit], cursor=following)

    def begin_assembly(self, job_id, *, attempt, worker, token, now, lease_seconds) -> Job:
        job = self._job_if(
            job_id,
            lambda j: (
                j.attempt == attempt
                and j.status is P
                and j.chunks_done >= j.chunks_total
                and _lapsed(j.lease_expires_at, now)
                and j.steps_attempt < attempt
            ),
        )
        until = now + timedelta(seconds=lease_seconds)
        return self._put(job.replace(worker=worker, lease_token=token, lease_expires_at=until, updated_at=now))

    def release_assembly(self, job_id, *, token, now) -> None:
        job = self._job_if(job_id, lambda j: j.status is P and j.lease_token == token)
        self._put(job.replace(lease_token=None, lease_expires_at=None, updated_at=now))

    def complete_assembly(self, job_id, *, token, has_preview, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: j.status is P and j.lease_token == token)
        return self._end(job.replace(has_preview=has_preview, error=None, error_code=None), JobStatus.COMPLETED, now)

    def fail(self, job_id, *, attempt, failure: Failure, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: j.status in sources(JobStatus.FAILED) and j.attempt == attempt)
        return self._end(job.replace(error=failure.message, error_code=failure.code), JobStatus.FAILED, now)

    def transition(self, job_id, *, attempt, source, target, now, expires_at=None, when_lease_free=False) -> Job:
        if not can_transition(source, target):
            raise ValueError(f"{source} -> {target} is not a transition of the job state machine")
        job = self._job_if(
            job_id,
            lambda j: (
                j.status is source
                and j.attempt == attempt
                and (not when_lease_free or _lapsed(j.lease_expires_at, now))
            ),
        )
        if target in (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
            return self._end(job, target, now)
        self.due[(job_id, None)] = now
        return self._put(job.replace(status=target, updated_at=now))

    def retry(self, job_id, *, attempt, now) -> Job:
        job = self._job_if(job_id, lambda j: j.status in sources(Q) and j.attempt == attempt)
        self.due[(job_id, None)] = now
        self.reserve_frames(job.owner, job.frames_total, limit=0)
        self.charged[job_id] = job.worker_seconds  # as DynamoDB's charged_seconds
        return self._put(
            job.replace(
                status=Q,
                attempt=attempt + 1,
                updated_at=now,
                fanout_sent=-1,
                render_failures=0,
                crashes=0,
                error=None,
                error_code=None,
                finished_at=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )

    def advance_fanout(self, job_id, *, attempt, sent_before, sent_now) -> None:
        job = self._job_if(
            job_id, lambda j: j.attempt == attempt and j.fanout_sent == sent_before and j.status in (Q, P)
        )
        self._put(job.replace(fanout_sent=sent_now))

    def overdue(self, kind, *, before, limit) -> list[Overdue]:
        """As DynamoDB's: the entries of `kind` whose grace started before `before` and that the sweeper has not
        passed, oldest first, each with its item's state now (None when the item is gone)."""
        out = []
        for (job_id, index), since in self.due.items():
            position = f"{since.isoformat()}#{job_id}#{index}"
            if (kind == WorkKind.JOB) != (index is None) or since >= before or position <= self.swept.get(kind, ""):
                continue
            item = self.jobs.get(job_id) if index is None else self.chunk_items.get((job_id, index))
            status, attempt = (item.status, item.attempt) if item else (None, 0)
            out.append(Overdue(job_id, index, status, attempt, marker=(str(kind), position)))
        return sorted(out, key=lambda w: w.marker[1])[:limit]

    def advance(self, passed: list[Overdue]) -> None:
        for work in passed:
            kind, position = work.marker
            self.swept[kind] = max(self.swept.get(kind, ""), position)

    def postpone(self, work: Overdue, *, until) -> bool:
        since = self.due.get((work.job_id, work.index))
        if since is None or f"{since.isoformat()}#{work.job_id}#{work.index}" != work.marker[1]:
            return False
        self.due[(work.job_id, work.index)] = until
        return True

    # --- helpers ------------------------------------------------------------------------------
    def _job_if(self, job_id: str, condition) -> Job:
        job = self.get(job_id)
        if not condition(job):
            raise _conflict(job.status, job.attempt)
        return job

    def _end(self, job: Job, status: JobStatus, now: datetime) -> Job:
        self.release_frames(job.owner, job.frames_total)
        month = (job.owner, month_of(now))  # as DynamoDB: the job's worker-seconds charged by the write ending it
        charge = job.worker_seconds - self.charged.get(job.id, 0.0)
        self.spend_seconds[month] = self.spend_seconds.get(month, 0.0) + charge
        return self._put(
            job.replace(status=status, finished_at=now, updated_at=now, lease_token=None, lease_expires_at=None)
        )

    def _put(self, job: Job) -> Job:
        self.jobs[job.id] = job
        return job


class InMemoryChunkRepository:
    """The two storage shapes of a chunk, as DynamoChunkRepository has them, on the fake's dicts."""

    def __init__(self, jobs: InMemoryJobRepository):
        self._jobs = jobs
        self._writes: dict[str, Chunk] = {}  # record_frames by write id, as DynamoDB's `last_write` stamp
        self.lost_responses = 0  # the next progress writes apply, then raise as if their response was lost
        self.failing_writes = 0  # the next progress writes raise without applying (AWS unreachable)

    def put(self, job: Job, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            if (chunk.job_id, chunk.index) not in self._jobs.chunk_items:
                self._jobs.chunk_items[(chunk.job_id, chunk.index)] = chunk  # no index entry, as DynamoDB

    def get(self, job_id: str, index: int | None) -> Chunk:
        if index is None:
            return self._jobs.get(job_id).as_chunk()
        chunk = self._jobs.chunk_items.get((job_id, index))
        if chunk is None:
            raise JobNotFound()
        return chunk

    def list(self, job_id: str) -> list[Chunk]:
        items = self._jobs.chunk_items
        return sorted((c for (j, _), c in items.items() if j == job_id), key=lambda c: c.index)

    def page(self, job_id, *, cursor, limit) -> ChunkPage:
        everything = self.list(job_id)
        start = int(cursor or 0)
        more = start + limit < len(everything)
        return ChunkPage(chunks=everything[start : start + limit], cursor=str(start + limit) if more else None)

    def claim(self, job_id, index, *, attempt, worker, token, now, lease_seconds) -> tuple[Job, Chunk]:
        job = self._jobs.get(job_id)
        if index is not None:
            if job.attempt != attempt or job.status not in (Q, P):
                raise self._not_claimed(job.status, job.attempt)
            if job.status is Q:  # as DynamoDB: only the first chunk writes the job (the others read it)
                job = self._jobs._put(job.replace(status=P, started_at=job.started_at or now, updated_at=now))
        current = self._get(job_id, index)
        claimable = current.attempt == attempt and (
            current.status is Q or (current.status is P and not current.lease_token)
        )
        takeover = (
            current.attempt == attempt
            and current.status is P
            and current.lease_token
            and _lapsed(current.lease_expires_at, now)
        )
        if not (claimable or takeover):
            if index is None:  # a one-chunk job's item is the job: a stopped job is "not running"
                raise self._not_claimed(current.status, current.attempt)
            raise _conflict(current.status, current.attempt)
        until = now + timedelta(seconds=lease_seconds)
        chunk = current.replace(
            status=P,
            worker=worker,
            lease_token=token,
            lease_expires_at=until,
            started_at=current.started_at or now,
            crashes=current.crashes + (0 if claimable else 1),
        )
        chunk = self._store(chunk, due="keep", now=now)
        return (self._jobs.get(job_id), chunk)

    @staticmethod
    def _not_claimed(status: JobStatus, attempt: int) -> JobStateConflict:
        return JobNotRunning(str(status)) if status in FINAL else _conflict(status, attempt)

    def record_frames(
        self,
        chunk,
        *,
        token,
        results,
        render_seconds,
        now,
        lease_until,
        worker_seconds=0.0,
        first_frame_seconds=0.0,
        has_preview=False,
        expires_at=None,
        write_id=None,
    ) -> Chunk:
        if write_id is not None and write_id in self._writes:  # as DynamoDB's last_write: this write applied
            return self._writes[write_id]
        if self.failing_writes > 0:
            self.failing_writes -= 1
            raise ServiceUnavailable("DynamoDB is unreachable.")
        worked = (worker_seconds, first_frame_seconds)
        after = self._record_frames(chunk, token, results, render_seconds, now, lease_until, has_preview, worked)
        if write_id is not None:
            self._writes[write_id] = after
        if self.lost_responses > 0:
            self.lost_responses -= 1
            raise ServiceUnavailable("DynamoDB timed out.")
        return after

    def _record_frames(self, chunk, token, results, render_seconds, now, lease_until, has_preview, worked) -> Chunk:
        current = self._held(chunk, token, extra=lambda c: c.frames_done == chunk.frames_done)
        last = current.frames_done + len(results) == len(current.frames)
        updated = current.replace(
            frames_done=current.frames_done + len(results),
            results=(*current.results, *results),
            render_seconds=current.render_seconds + render_seconds,
            worker_seconds=current.worker_seconds + worked[0],
            first_frame_seconds=current.first_frame_seconds + worked[1],
            lease_expires_at=lease_until,
        )
        if chunk.whole_job and last:
            job = self._jobs.get(chunk.job_id)
            self._jobs._put(
                job.replace(
                    frames_done=updated.frames_done,
                    results=updated.results,
                    render_seconds=updated.render_seconds,
                    worker_seconds=updated.worker_seconds,
                    first_frame_seconds=updated.first_frame_seconds,
                    chunks_done=job.chunks_total,
                    has_preview=has_preview,
                    error=None,
                    error_code=None,
                )
            )
            self._jobs._end(self._jobs.get(chunk.job_id), JobStatus.COMPLETED, now)
            return updated.replace(status=JobStatus.COMPLETED, lease_token=None, lease_expires_at=None)
        if last:
            updated = updated.replace(
                status=JobStatus.COMPLETED, finished_at=now, lease_token=None, lease_expires_at=None
            )
            self._store(updated, due="keep", now=now)
        else:
            self._store(updated, due="keep", now=now)  # as DynamoDB: the sweeper's marker stays put
        if not chunk.whole_job:  # as DynamoDB: counted on the job item after the chunk item's write
            job = self._check_running(chunk)
            job = self._jobs._put(
                job.replace(
                    frames_done=job.frames_done + len(results),
                    chunks_done=job.chunks_done + (1 if last else 0),
                    worker_seconds=job.worker_seconds + worked[0],
                    render_seconds=job.render_seconds + render_seconds,
                    first_frame_seconds=job.first_frame_seconds + worked[1],
                    updated_at=now,
                )
            )
            if last and job.chunks_done >= job.chunks_total:
                updated = updated.replace(completes_job=True)
        return updated

    def _check_running(self, chunk) -> Job:
        job = self._jobs.get(chunk.job_id)
        if job.status not in (Q, P) or job.attempt != chunk.attempt:
            raise JobNotRunning(str(job.status))
        return job

    def renew(self, chunk, *, token, until) -> None:
        current = self._held(chunk, token)
        self._store(current.replace(lease_expires_at=until), due="keep", now=None)

    def release(self, chunk, *, token, now, failure=None) -> Chunk:
        current = self._held(chunk, token)
        counted = (
            {}
            if failure is None
            else {
                "render_failures": current.render_failures + 1,
                "error": failure.message,
                "error_code": failure.code,
            }
        )
        return self._store(current.replace(lease_token=None, lease_expires_at=EPOCH0, **counted), due=now, now=now)

    def end(self, chunk, *, token, status, now, expires_at, failure=None) -> Chunk:
        if chunk.whole_job and status is JobStatus.CANCELLED:
            current = self._get(chunk.job_id, None)
            if not (current.status is JobStatus.CANCELLING and current.lease_token == token):
                raise LeaseLost()
        else:
            current = self._held(chunk, token)
        changes = {"render_failures": current.render_failures + int(bool(failure) and status is JobStatus.FAILED)}
        if failure:
            changes.update(error=failure.message, error_code=failure.code)
        ended = current.replace(status=status, finished_at=now, lease_token=None, lease_expires_at=None, **changes)
        return self._store(ended, due="keep", now=now)

    def drop(self, job_id, index, *, attempt, now) -> bool:
        if index is None:
            return False
        current = self._jobs.chunk_items.get((job_id, index))
        if current is None or current.attempt != attempt or not self._not_held(current, now):
            return False
        self._store(current.replace(status=JobStatus.CANCELLED, finished_at=now, lease_token=None), due="keep", now=now)
        return True

    def fail(self, job_id, index, *, attempt, failure, now) -> bool:
        if index is None:
            return False
        current = self._jobs.chunk_items.get((job_id, index))
        if current is None or current.attempt != attempt or current.status not in UNFINISHED_STATES:
            return False
        failed = current.replace(
            status=JobStatus.FAILED,
            finished_at=now,
            error=failure.message,
            error_code=failure.code,
            lease_token=None,
            lease_expires_at=None,
        )
        self._store(failed, due="keep", now=now)
        return True

    def note_failure(self, job_id, index, *, attempt, failure, now) -> Chunk:
        current = self._get(job_id, index)
        if current.attempt != attempt or not self._not_held(current, now):
            raise _conflict(current.status, current.attempt)
        noted = current.replace(
            render_failures=current.render_failures + 1,
            error=failure.message,
            error_code=failure.code,
            lease_token=None,
        )
        return self._store(noted, due="keep", now=now)

    def requeue(self, chunk, *, attempt, now) -> bool:
        current = self._jobs.chunk_items[(chunk.job_id, chunk.index)]
        if current.status is JobStatus.COMPLETED or current.attempt >= attempt:
            return False
        requeued = current.replace(
            status=Q,
            attempt=attempt,
            render_failures=0,
            crashes=0,
            lease_token=None,
            lease_expires_at=None,
            error=None,
            error_code=None,
            finished_at=None,
        )
        self._store(requeued, due=now, now=now)
        return True

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _not_held(chunk: Chunk, now: datetime) -> bool:
        # As DynamoDB's NOT_HELD condition, to the boundary: a lease lapses strictly before `now`.
        return chunk.status is Q or (
            chunk.status is P and (not chunk.lease_token or _lapsed(chunk.lease_expires_at, now))
        )

    def _get(self, job_id: str, index: int | None) -> Chunk:
        if index is None:
            return self._jobs.get(job_id).as_chunk()
        current = self._jobs.chunk_items.get((job_id, index))
        if current is None:
            raise JobNotFound()
        return current

    def _held(self, chunk: Chunk, token: str, extra=lambda c: True) -> Chunk:
        try:
            current = self._get(chunk.job_id, chunk.index)
        except JobNotFound:
            raise LeaseLost() from None
        if current.status is P and current.lease_token == token and current.attempt == chunk.attempt and extra(current):
            return current
        if chunk.whole_job and current.status is not P:
            raise JobNotRunning(str(current.status))
        raise LeaseLost()

    def _store(self, chunk: Chunk, *, due, now) -> Chunk:
        """Write the chunk back in its shape; `due` is the gsi2 entry: since when, or "keep" (chunk items have
        none: only a one-chunk job's item, the job's own entry)."""
        key = (chunk.job_id, chunk.index)
        if due != "keep" and chunk.index is None:
            self._jobs.due[key] = due
        if chunk.index is None:
            job = self._jobs.get(chunk.job_id)
            final = chunk.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPLETED)
            if final and job.status not in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPLETED):
                self._jobs.release_frames(job.owner, job.frames_total)
            self._jobs._put(
                job.replace(
                    status=chunk.status,
                    frames_done=chunk.frames_done,
                    results=chunk.results,
                    render_failures=chunk.render_failures,
                    crashes=chunk.crashes,
                    render_seconds=chunk.render_seconds,
                    worker_seconds=chunk.worker_seconds,
                    first_frame_seconds=chunk.first_frame_seconds,
                    worker=chunk.worker,
                    lease_token=chunk.lease_token,
                    lease_expires_at=chunk.lease_expires_at,
                    started_at=chunk.started_at,
                    finished_at=chunk.finished_at if final else job.finished_at,
                    error=chunk.error,
                    error_code=chunk.error_code,
                    updated_at=now or job.updated_at,
                )
            )
            return chunk
        self._jobs.chunk_items[key] = chunk
        return chunk


class InMemoryStepRepository:
    """A job's steps on the fake's job, with the conditions of jobs/repository/steps.py."""

    def __init__(self, jobs: InMemoryJobRepository):
        self._jobs = jobs

    def begin(self, job, *, token, has_preview, now) -> Job:
        current = self._holder(job.id, job.attempt, token)
        first = current.current_step
        steps = tuple(
            s
            if s.status is StepStatus.COMPLETED
            else Step(spec=s.spec, status=StepStatus.QUEUED if i == first else StepStatus.WAITING, attempt=job.attempt)
            for i, s in enumerate(current.steps)
        )
        self._jobs.due[(job.id, None)] = now
        return self._jobs._put(
            current.replace(
                steps=steps,
                steps_attempt=job.attempt,
                has_preview=has_preview,
                lease_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )

    def claim(self, job_id, index, *, attempt, worker, token, now, lease_seconds) -> Job:
        job = self._jobs.get(job_id)
        running = job.status is P and job.attempt == attempt and job.steps_attempt == attempt
        step = job.steps[index] if running and index < len(job.steps) else None
        claimable = step is not None and (
            step.status is StepStatus.QUEUED or (step.status is StepStatus.PROCESSING and not job.lease_token)
        )
        takeover = (
            step is not None
            and step.status is StepStatus.PROCESSING
            and job.lease_token is not None
            and _lapsed(job.lease_expires_at, now)
        )
        if not (claimable or takeover):
            if job.attempt == attempt and job.status is not P:
                raise JobNotRunning(str(job.status))
            raise _conflict(job.status, job.attempt)
        until = now + timedelta(seconds=lease_seconds)
        claimed = step.replace(
            status=StepStatus.PROCESSING,
            started_at=step.started_at or now,
            frames_done=0,
            crashes=step.crashes + (0 if claimable else 1),
        )
        return self._jobs._put(
            self._with(job, index, claimed).replace(
                worker=worker, lease_token=token, lease_expires_at=until, updated_at=now
            )
        )

    def record_progress(self, job_id, index, *, attempt, token, frames_done, lease_until) -> None:
        job = self._holder(job_id, attempt, token)
        step = job.steps[index].replace(frames_done=frames_done)
        self._jobs._put(self._with(job, index, step).replace(lease_expires_at=lease_until))

    def release(self, job_id, index, *, attempt, token, now, failure=None) -> Job:
        job = self._holder(job_id, attempt, token)
        step = job.steps[index]
        if failure is not None:
            step = step.replace(failures=step.failures + 1, error=failure.message, error_code=failure.code)
        self._jobs.due[(job_id, None)] = now
        return self._jobs._put(self._with(job, index, step).replace(lease_token=None, lease_expires_at=EPOCH0))

    def complete(self, job, index, *, token, artifact: StepArtifact, now, expires_at) -> Job:
        current = self._holder(job.id, job.attempt, token)
        done = current.steps[index].replace(
            status=StepStatus.COMPLETED, frames_done=artifact.frames, artifact=artifact, finished_at=now
        )
        current = self._with(current, index, done)
        if index + 1 < len(current.steps):
            current = self._with(current, index + 1, current.steps[index + 1].replace(status=StepStatus.QUEUED))
            self._jobs.due[(job.id, None)] = now
            return self._jobs._put(current.replace(lease_token=None, lease_expires_at=EPOCH0, updated_at=now))
        return self._jobs._end(current.replace(error=None, error_code=None), JobStatus.COMPLETED, now)

    def end(self, job_id, index, *, attempt, token, status, now, expires_at, failure=None) -> Job:
        job = self._jobs.get(job_id)
        if status is JobStatus.CANCELLED:
            if not (job.status is JobStatus.CANCELLING and job.lease_token == token and job.attempt == attempt):
                raise self._lost(job)
            step = job.steps[index].replace(status=StepStatus.CANCELLED, finished_at=now)
            return self._jobs._end(self._with(job, index, step), JobStatus.CANCELLED, now)
        job = self._holder(job_id, attempt, token)
        step = job.steps[index]
        step = step.replace(
            status=StepStatus.FAILED,
            failures=step.failures + 1,
            error=failure.message,
            error_code=failure.code,
            finished_at=now,
        )
        failed = self._with(job, index, step).replace(error=failure.message, error_code=failure.code)
        return self._jobs._end(failed, JobStatus.FAILED, now)

    def note_failure(self, job_id, index, *, attempt, failure, now) -> Job:
        job = self._jobs.get(job_id)
        step = job.steps[index] if index < len(job.steps) else None
        ours = job.status is P and job.attempt == attempt and job.steps_attempt == attempt
        if not ours or step is None or step.status not in (StepStatus.QUEUED, StepStatus.PROCESSING):
            raise _conflict(job.status, job.attempt)
        if job.lease_token and not _lapsed(job.lease_expires_at, now):
            raise _conflict(job.status, job.attempt)
        step = step.replace(failures=step.failures + 1, error=failure.message, error_code=failure.code)
        return self._jobs._put(self._with(job, index, step).replace(lease_token=None, updated_at=now))

    def fail(self, job_id, index, *, attempt, failure, now, expires_at) -> Job:
        job = self._jobs.get(job_id)
        if job.status is not P or job.attempt != attempt:
            raise _conflict(job.status, job.attempt)
        step = job.steps[index].replace(
            status=StepStatus.FAILED, error=failure.message, error_code=failure.code, finished_at=now
        )
        failed = self._with(job, index, step).replace(error=failure.message, error_code=failure.code)
        return self._jobs._end(failed, JobStatus.FAILED, now)

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _with(job: Job, index: int, step: Step) -> Job:
        return job.replace(steps=(*job.steps[:index], step, *job.steps[index + 1 :]))

    def _holder(self, job_id: str, attempt: int, token: str) -> Job:
        job = self._jobs.get(job_id)
        if job.status is P and job.lease_token == token and job.attempt == attempt:
            return job
        raise self._lost(job)

    @staticmethod
    def _lost(job: Job) -> JobStateConflict:
        return JobNotRunning(str(job.status)) if job.status is not P else LeaseLost()


class FakeTaskQueue:
    """Records messages; `down=True` makes every send fail like an unreachable SQS."""

    def __init__(self, *, down: bool = False):
        self.chunks: list[tuple[str, int | None, int, Priority]] = []
        self.fanouts: list[tuple[str, int, Priority]] = []
        self.steps: list[tuple[str, int, int, Priority]] = []
        self.webhooks: list[tuple[str, int, str]] = []
        self.inspections: list[tuple[str, str, Priority]] = []
        self.down = down

    def enqueue_chunk(self, *, job_id, index, attempt, priority) -> None:
        self._check()
        self.chunks.append((job_id, index, attempt, priority))

    def enqueue_fanout(self, *, job_id, attempt, priority) -> None:
        self._check()
        self.fanouts.append((job_id, attempt, priority))

    def enqueue_step(self, *, job_id, attempt, index, priority) -> None:
        self._check()
        self.steps.append((job_id, attempt, index, priority))

    def enqueue_webhook(self, *, job_id, attempt, event) -> None:
        self._check()
        self.webhooks.append((job_id, attempt, event))

    def enqueue_inspection(self, *, owner, sha256, priority=Priority.HIGH) -> None:
        self._check()
        self.inspections.append((owner, sha256, priority))

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailable("queue down")


class FakeResultStore:
    """S3ResultStore in memory; once `down_after` more puts have succeeded it is unavailable, as S3 in an outage."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.down_after: int | None = None

    def put_frame(self, *, key, frame, body, content_type) -> FrameResult:
        if self.down_after is not None:
            if self.down_after <= 0:
                raise ServiceUnavailable("S3 is unreachable; try again shortly.", component="result storage")
            self.down_after -= 1
        self.put_bytes(key=key, body=body, content_type=content_type)
        return FrameResult(
            frame=frame, key=key, size=len(body), sha256=hashlib.sha256(body).hexdigest(), content_type=content_type
        )

    def put_bytes(self, *, key, body, content_type) -> None:
        self.objects[key] = body
        self.puts += 1

    def put_file(self, *, key, file, content_type) -> StoredFile:
        file.seek(0)
        body = file.read()
        self.put_bytes(key=key, body=body, content_type=content_type)
        return StoredFile(size=len(body), sha256=hashlib.sha256(body).hexdigest())

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def get_optional(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def presigned_url(self, key: str) -> str:
        return f"https://example.invalid/{key}?signed"


class RecordingNotifier:
    """A JobNotifier that records (job id, final status) for every job it is told ended."""

    def __init__(self):
        self.ended: list[tuple[str, JobStatus]] = []

    def job_ended(self, job: Job, status: JobStatus) -> None:
        self.ended.append((job.id, status))


class ScriptedRenderer(FrameRenderer):
    """Paints a tiny real PNG; fails the first `fail_times` calls; calls `on_render` before each frame."""

    def __init__(self, *, fail_times: int = 0, on_render=None):
        self.fail_times = fail_times
        self.calls: list[int] = []
        self.on_render = on_render

    def render(self, job: Job, frame: int) -> bytes:
        import io

        from PIL import Image

        self.calls.append(frame)
        if self.on_render:
            self.on_render(job, frame)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RenderError(f"boom on frame {frame}")
        out = io.BytesIO()
        Image.new("RGB", (8, 8), (frame % 255, 0, 0)).save(out, format="PNG")
        return out.getvalue()


class FakeEncoder:
    """A VideoEncoder without ffmpeg: takes every frame (in the order given), reports each as encoded, and yields
    a small "video" made of their hashes; fails the first `fail_times` encodes; refuses frames of more than
    `max_input_bytes` together; calls `on_frame(n)` before reporting frame n (a test cancels or kills there)."""

    def __init__(self, *, fail_times: int = 0, on_frame=None, max_input_bytes: int = 1 << 30):
        self.fail_times = fail_times
        self.on_frame = on_frame
        self.max_input_bytes = max_input_bytes
        self.calls: list[dict] = []

    @contextlib.contextmanager
    def encode(self, *, frames, count, size, extension, video_format, fps, should_stop, on_progress, log):
        from jobs.errors import EncodeError, EncodeRefused
        from jobs.ports import EncodedVideo

        if size > self.max_input_bytes:
            raise EncodeRefused(f"The job's {count} frames are {size} bytes together, more than a video takes.")
        bodies = list(frames)
        self.calls.append(
            {"frames": bodies, "count": count, "size": size, "extension": extension, "format": video_format, "fps": fps}
        )
        log.write(f"fake ffmpeg: {len(bodies)} frames at {fps} fps\n")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise EncodeError("ffmpeg failed (exit 1): [libx264] boom")
        for n in range(1, len(bodies) + 1):
            if self.on_frame:
                self.on_frame(n)
            if should_stop():
                raise EncodeError("The encode was stopped.")
            on_progress(n)
        data = b"VIDEO" + b"".join(hashlib.sha256(b).digest() for b in bodies)
        yield EncodedVideo(file=io.BytesIO(data), size=len(data), frames=len(bodies))


class FakeAssetRepository:
    """Asset records by (owner, sha256), like DynamoAssetRepository."""

    def __init__(self):
        self.records: dict[tuple[str, str], AssetRecord] = {}

    def declare(self, record: AssetRecord) -> None:
        self.records[(record.owner, record.sha256)] = record

    def get(self, owner: str, sha256: str) -> AssetRecord | None:
        return self.records.get((owner, sha256))

    def extend(self, owner: str, sha256: str, *, until: datetime) -> None:
        record = self.records.get((owner, sha256))
        if record is not None and record.expires_at < until:
            self.records[(owner, sha256)] = dataclasses.replace(record, expires_at=until)

    def request_inspection(self, owner: str, sha256: str, *, now: datetime, stale_before: datetime) -> bool:
        record = self.records.get((owner, sha256))
        current = None if record is None else record.inspection
        if record is None or (
            current is not None and (current.state != INSPECTION_PENDING or current.requested_at >= stale_before)
        ):
            return False
        pending = AssetInspection(state=INSPECTION_PENDING, requested_at=now)
        self.records[(owner, sha256)] = dataclasses.replace(record, inspection=pending)
        return True

    def record_inspection(self, owner: str, sha256: str, inspection: AssetInspection) -> None:
        record = self.records.get((owner, sha256))
        if record is not None:
            self.records[(owner, sha256)] = dataclasses.replace(record, inspection=inspection)


class FakeAssetStore:
    """Stored scene files by (owner, sha256); `put` is what a client's presigned PUT would do."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.refreshed: list[tuple[str, str]] = []
        self.tickets = 0

    def put(self, owner: str, sha256: str, body: bytes) -> None:
        self.objects[(owner, sha256)] = body

    def upload_ticket(self, *, owner: str, sha256: str, size: int) -> UploadTicket:
        self.tickets += 1
        return UploadTicket(
            url=f"https://example.invalid/{asset_key(owner, sha256)}?signed",
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
            expires_in=3600,
        )

    def head(self, *, owner: str, sha256: str) -> StoredAsset | None:
        body = self.objects.get((owner, sha256))
        if body is None:
            return None
        return StoredAsset(size=len(body), sha256=hashlib.sha256(body).hexdigest(), last_modified=EPOCH0)

    def refresh(self, *, owner: str, sha256: str) -> None:
        self.refreshed.append((owner, sha256))


class FakeDeliverySlots:
    """In-memory jobs.ports.DeliverySlots: the same conditions as jobs/repository/webhook_slots.py (a slot is
    free when nobody took it or its lease lapsed; only its token releases it)."""

    def __init__(self):
        self.held: dict[str, dict[int, tuple[datetime, str]]] = {}  # owner -> slot -> (lease until, token)

    def take(self, owner, *, limit, token, now, until):
        slots = self.held.setdefault(owner, {})
        for index in range(limit):
            lease = slots.get(index)
            if lease is None or lease[0] < now:
                slots[index] = (until, token)
                return index
        return None

    def release(self, owner, slot, *, token):
        slots = self.held.get(owner, {})
        if slot in slots and slots[slot][1] == token:
            del slots[slot]

    def in_flight(self, owner, now) -> int:
        return sum(1 for until, _ in self.held.get(owner, {}).values() if until >= now)


class FakeWebhooks:
    """In-memory jobs.ports.WebhookRepository: the same conditions as jobs/repository/webhooks.py."""

    def __init__(self):
        import dataclasses

        self._replace = dataclasses.replace
        self.deliveries: dict[tuple, object] = {}
        self.due: dict[tuple, object] = {}
        self.secrets: dict[str, str] = {}

    def open(self, delivery, *, due, expires_at) -> bool:
        key = (delivery.job_id, delivery.job_attempt, str(delivery.event))
        if key in self.deliveries:
            return False
        self.deliveries[key] = self._replace(delivery, marker=("HOOK#PENDING", due.isoformat()))
        self.due[key] = due
        return True

    def get(self, job_id, job_attempt, event):
        return self.deliveries.get((job_id, job_attempt, str(event)))

    def latest(self, job_id):
        mine = [d for (j, _, _), d in self.deliveries.items() if j == job_id]
        return max(mine, key=lambda d: d.job_attempt) if mine else None

    def begin(self, delivery, *, token, now, until):
        from jobs.errors import StaleWrite

        key = (delivery.job_id, delivery.job_attempt, str(delivery.event))
        d = self.deliveries[key]
        if d.state != "pending" or (d.lease_until is not None and d.lease_until >= now):
            raise StaleWrite(d.state, d.job_attempt)
        self.deliveries[key] = d = self._replace(d, lease_token=token, lease_until=until)
        return d

    def record(self, delivery, *, token, entry, state, due):
        from jobs.errors import StaleWrite

        key = (delivery.job_id, delivery.job_attempt, str(delivery.event))
        d = self.deliveries[key]
        if d.lease_token != token:
            raise StaleWrite(d.state, d.job_attempt)
        marker = ("HOOK#PENDING", due.isoformat()) if due is not None else None
        self.deliveries[key] = d = self._replace(
            d,
            state=state,
            tries=entry.attempt,
            deliveries=(*d.deliveries, entry)[-10:],
            lease_token=None,
            lease_until=None,
            marker=marker,
        )
        if due is None:
            self.due.pop(key, None)
        else:
            self.due[key] = due
        return d

    def overdue(self, *, now, limit):
        return [self.deliveries[k] for k, due in self.due.items() if due < now][:limit]

    def postpone(self, delivery, *, until) -> bool:
        key = (delivery.job_id, delivery.job_attempt, str(delivery.event))
        if self.deliveries[key].marker != delivery.marker:
            return False
        self.deliveries[key] = self._replace(self.deliveries[key], marker=("HOOK#PENDING", until.isoformat()))
        self.due[key] = until
        return True

    def secret(self, owner):
        return self.secrets.get(owner)

    def put_secret(self, owner, secret, *, now):
        self.secrets[owner] = secret


def control(repo, queue=None, *, notifier=None, retention: timedelta = timedelta(days=1)) -> JobControl:
    """The `JobControl` bundle on fakes: the repository given, a recording queue, a notifier that says nothing
    unless one is given."""
    return JobControl(
        repo=repo,
        queue=queue if queue is not None else FakeTaskQueue(),
        notifier=notifier or NoNotifier(),
        retention=retention,
    )


def scene_files(queue=None):
    """Scene files on fakes (for jobs with none, never asked)."""
    from jobs.services.assets import SceneFiles

    return SceneFiles(
        repo=FakeAssetRepository(),
        store=FakeAssetStore(),
        queue=queue if queue is not None else FakeTaskQueue(),
        retention=timedelta(days=30),
    )


def swept(repo, queue, *, now: datetime, grace: timedelta) -> dict[str, int]:
    """One sweeper run over fakes (or a real repository): its counts, by what it did."""
    from jobs.services import sweep

    return sweep(
        jobs=control(repo, queue), now=now, queued_grace=grace, hooks=FakeWebhooks(), log_context=no_log_context
    )


PRICES = Prices(vcpu=4, memory_gb=8, vcpu_hour=PRICE_VCPU_HOUR, gb_hour=PRICE_GB_HOUR)  # the defaults' worker


def spending(repo: InMemoryJobRepository, prices: Prices = PRICES):
    """The `Spending` bundle on fakes: the in-memory repository keeps budgets and spend too."""
    from jobs.services.budgets import Spending

    return Spending(budgets=repo, prices=prices)
