"""Value types the repositories return or take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain import Chunk, Job, JobStatus


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: str | None


@dataclass(frozen=True)
class ChunkPage:
    chunks: list[Chunk]
    cursor: str | None


@dataclass(frozen=True)
class IdempotencyRecord:
    """`pk=IDEMPOTENCY#<owner>#<key>`: which job a key created, for which request body, until when."""

    pk: str
    job_id: str
    request_hash: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Overdue:
    """Work the sweeper should look at: a job (index None) or a chunk item in `status`, due before now.

    `marker` identifies the index entry as read, so a postpone applies only if nobody moved it since.
    """

    job_id: str
    index: int | None
    status: JobStatus
    attempt: int
    marker: tuple[str, str]

    @property
    def is_job(self) -> bool:
        return self.index is None
