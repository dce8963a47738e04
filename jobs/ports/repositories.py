"""What services need from storage: the job and chunk repositories and the API-key store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from jobs.domain import Chunk, Failure, FrameResult, Job, JobStatus, StepArtifact
from jobs.ports.values import (
    ApiKeyRecord,
    ChunkPage,
    IdempotencyRecord,
    JobPage,
    Overdue,
    OwnerSpend,
    QueueDepth,
    Revocation,
    WorkerBeat,
)


class ChunkRepository(Protocol):
    """The unit of work in either storage shape (see chunks.py)."""

    def put(self, job: Job, chunks: list[Chunk]) -> None: ...
    def get(self, job_id: str, index: int | None) -> Chunk: ...
    def list(self, job_id: str) -> list[Chunk]: ...
    def page(self, job_id: str, *, cursor: str | None, limit: int) -> ChunkPage: ...
    def claim(
        self,
        job_id: str,
        index: int | None,
        *,
        attempt: int,
        worker: str,
        token: str,
        now: datetime,
        lease_seconds: int,
    ) -> tuple[Job, Chunk]: ...
    def record_frames(
        self,
        chunk: Chunk,
        *,
        token: str,
        results: Sequence[FrameResult],
        render_seconds: float,
        now: datetime,
        lease_until: datetime,
        worker_seconds: float = 0.0,
        first_frame_seconds: float = 0.0,
        has_preview: bool = False,
        expires_at: datetime | None = None,
        write_id: str | None = None,
    ) -> Chunk: ...
    def renew(self, chunk: Chunk, *, token: str, until: datetime) -> None: ...
    def release(self, chunk: Chunk, *, token: str, now: datetime, failure: Failure | None = None) -> Chunk: ...
    def end(
        self,
        chunk: Chunk,
        *,
        token: str,
        status: JobStatus,
        now: datetime,
        expires_at: datetime,
        failure: Failure | None = None,
    ) -> Chunk: ...
    def drop(self, job_id: str, index: int | None, *, attempt: int, now: datetime) -> bool: ...
    def fail(self, job_id: str, index: int | None, *, attempt: int, failure: Failure, now: datetime) -> bool: ...
    def note_failure(
        self, job_id: str, index: int | None, *, attempt: int, failure: Failure, now: datetime
    ) -> Chunk: ...
    def requeue(self, chunk: Chunk, *, attempt: int, now: datetime) -> bool: ...


class StepRepository(Protocol):
    """A job's steps, on its job item (jobs/repository/steps.py); the job item's lease is the running step's.

    Every write is conditional on the job's attempt and, once claimed, on the lease token: LeaseLost when the
    lease is another's, JobNotRunning when the job left PROCESSING (a cancel, a failure elsewhere).
    """

    def begin(self, job: Job, *, token: str, has_preview: bool, now: datetime) -> Job:
        """The assembler (holding the job's lease, `token`) hands the job to its steps: each step not COMPLETED
        waits again in this attempt, the first of them QUEUED; the lease is released."""
        ...

    def claim(
        self, job_id: str, index: int, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job:
        """Take step `index` (QUEUED, released, or a dead holder's: a counted crash) and the job's lease."""
        ...

    def record_progress(
        self, job_id: str, index: int, *, attempt: int, token: str, frames_done: int, lease_until: datetime
    ) -> None: ...

    def release(
        self, job_id: str, index: int, *, attempt: int, token: str, now: datetime, failure: Failure | None = None
    ) -> Job:
        """The lease lapses so the next message claims the step at once: after a failed attempt (counted with its
        error), or at a worker's shutdown (`failure` None: nothing counted)."""
        ...

    def complete(
        self,
        job: Job,
        index: int,
        *,
        token: str,
        artifact: StepArtifact,
        now: datetime,
        expires_at: datetime,
    ) -> Job:
        """The step COMPLETED with what it stored; the last step completes the job, another queues the next."""
        ...

    def end(
        self,
        job_id: str,
        index: int,
        *,
        attempt: int,
        token: str,
        status: JobStatus,
        now: datetime,
        expires_at: datetime,
        failure: Failure | None = None,
    ) -> Job:
        """The holder ends the step and its job: FAILED (from PROCESSING) or CANCELLED (from CANCELLING)."""
        ...

    def note_failure(self, job_id: str, index: int, *, attempt: int, failure: Failure, now: datetime) -> Job:
        """An error outside the step's run counts as a failed attempt of a step no live lease holds."""
        ...

    def fail(
        self, job_id: str, index: int, *, attempt: int, failure: Failure, now: datetime, expires_at: datetime
    ) -> Job:
        """The step and its job FAIL in this attempt, whoever holds them."""
        ...


class JobRepository(Protocol):
    """What services need from job storage; `chunks` holds the units of work, `steps` a job's steps."""

    chunks: ChunkRepository
    steps: StepRepository

    def add(self, job: Job, *, idempotency: IdempotencyRecord | None = None) -> None: ...
    def idempotency_record(self, name: str) -> IdempotencyRecord | None: ...
    def get(self, job_id: str) -> Job: ...
    def reserve_frames(self, owner: str, frames: int, *, limit: int) -> None: ...
    def release_frames(self, owner: str, frames: int) -> None: ...
    def withdraw(self, job_id: str) -> None: ...  # a QUEUED job never sent; its idempotency record stays
    def note_warnings(self, job_id: str, warnings: list[str]) -> None: ...  # a set: the same ones twice add nothing
    def recount(self, job_id: str, *, attempt: int, now: datetime) -> Job: ...  # counts set from the chunk items
    def list_for_owner(
        self, owner: str, *, status: JobStatus | None, cursor: str | None, limit: int | None
    ) -> JobPage: ...
    def begin_assembly(
        self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job: ...
    def complete_assembly(
        self, job_id: str, *, token: str, has_preview: bool, now: datetime, expires_at: datetime
    ) -> Job: ...
    def fail(self, job_id: str, *, attempt: int, failure: Failure, now: datetime, expires_at: datetime) -> Job: ...
    def transition(
        self,
        job_id: str,
        *,
        attempt: int,
        source: JobStatus,
        target: JobStatus,
        now: datetime,
        expires_at: datetime | None = None,
        when_lease_free: bool = False,
    ) -> Job: ...
    def retry(self, job_id: str, *, attempt: int, now: datetime) -> Job: ...
    def release_assembly(self, job_id: str, *, token: str, now: datetime) -> None: ...
    def advance_fanout(self, job_id: str, *, attempt: int, sent_before: int, sent_now: int) -> None: ...
    def overdue(self, kind: str, *, before: datetime, limit: int) -> list[Overdue]: ...
    def advance(self, passed: list[Overdue]) -> None: ...
    def postpone(self, work: Overdue, *, until: datetime) -> bool: ...


class ApiKeyRepository(Protocol):
    """Keys by the SHA-256 of the key (never the key itself)."""

    def add(
        self, *, key_hash: str, owner: str, now: datetime, scopes: frozenset[str] = frozenset()
    ) -> ApiKeyRecord: ...
    def record_for(self, key_hash: str) -> ApiKeyRecord | None: ...
    def revoke(self, key_hash: str, *, now: datetime) -> Revocation: ...
    def list_keys(self, *, owner: str | None = None) -> list[ApiKeyRecord]: ...
    def with_key_id(self, key_id: str) -> list[ApiKeyRecord]: ...


class BudgetRepository(Protocol):
    """Owners' monthly budgets and spend (jobs/repository/budgets.py); spend is charged by the write that ends
    each job (with the usage it gives back), never here."""

    def set_budget(self, owner: str, dollars: float | None, *, now: datetime) -> None: ...
    def spend(self, owner: str, *, month: str) -> OwnerSpend: ...
    def budgeted_spend(self, owner: str, *, month: str) -> OwnerSpend | None: ...


class FarmRegistry(Protocol):
    """Workers' heartbeat items and cheap counts of jobs by state (jobs/repository/farm.py)."""

    def beat(self, beat: WorkerBeat) -> None: ...
    def workers(self, *, now: datetime) -> list[WorkerBeat]: ...
    def jobs_by_state(self) -> tuple[dict[str, int], bool]: ...


class QueueStats(Protocol):
    """Depths of the render queues (by priority) and of the DLQ (jobs/adapters/queue_stats.py)."""

    def queues(self) -> dict[str, QueueDepth]: ...
    def dead_letters(self) -> QueueDepth: ...
