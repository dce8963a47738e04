"""Value types the repositories return or take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain import Job, Task


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: str | None


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    cursor: str | None


@dataclass(frozen=True)
class IdempotencyRecord:
    """`pk=IDEMPOTENCY#<owner>#<key>`: which job a key created, for which request body, until when."""

    pk: str
    job_id: str
    request_hash: str
    created_at: datetime
    expires_at: datetime
