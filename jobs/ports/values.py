"""Value types that cross the ports: pages and records of the repositories, the message contract, dead letters."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from jobs.domain import Chunk, Job, JobStatus
from jobs.ports.webhooks import DELIVER_WEBHOOK


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: str | None


@dataclass(frozen=True)
class ChunkPage:
    chunks: list[Chunk]
    cursor: str | None


@dataclass(frozen=True)
class OwnerSpend:
    """An owner's month: the worker-seconds its chunks took, and its budget in dollars (None: no budget)."""

    owner: str
    month: str  # YYYY-MM, UTC
    worker_seconds: float
    budget: float | None


@dataclass(frozen=True)
class IdempotencyRecord:
    """Which job an owner's Idempotency-Key created, for which request body, until when. `name` is
    `<owner>#<key>` (the repository keeps it under its own prefix)."""

    name: str
    job_id: str
    request_hash: str
    created_at: datetime
    expires_at: datetime


class WorkKind(enum.StrEnum):
    """The two kinds of work that could get stuck (the sweeper looks for each): named as the table names them."""

    JOB = "JOB"  # a job item (a one-chunk job's work, or a job of several chunks as a whole)
    CHUNK = "TASK"  # a chunk item of a job of several chunks


@dataclass(frozen=True)
class Overdue:
    """An entry of the sweeper's index whose grace period has passed: a job (index None) or a chunk item, in
    `status` as its item was read (None when the item is gone).

    `marker` identifies the index entry as read, so a postpone applies only if nobody moved it since, and
    the sweeper's position in the entry's shard moves past it (`advance`).
    """

    job_id: str
    index: int | None
    status: JobStatus | None
    attempt: int
    marker: tuple[str, str]

    @property
    def is_job(self) -> bool:
        return self.index is None


# The message contract: task names and positional arguments (ids only) of the kinds of work message.
RENDER_CHUNK = "jobs.render_chunk"  # (job id, chunk index or None, attempt)
FANOUT_JOB = "jobs.fanout_job"  # (job id, attempt)
INSPECT_ASSET = "jobs.inspect_asset"  # (scene file's SHA-256, owner)
RUN_STEP = "jobs.run_step"  # (job id, attempt, step index): a job's step once its frames are assembled


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    task: str | None
    args: list
    receive_count: int
    sent_at: datetime | None

    @property
    def job_id(self) -> str | None:
        return self.args[0] if self.args and isinstance(self.args[0], str) else None

    def target(self) -> tuple[str, int | None, int] | None:
        """(job id, chunk index or None, attempt) of a render, fan-out or step message; None for anything else."""
        args = self.args
        if self.task == RENDER_CHUNK and len(args) == 3:
            return args[0], args[1], int(args[2])
        if self.task == FANOUT_JOB and len(args) == 2:
            return args[0], None, int(args[1])
        if self.task == RUN_STEP and len(args) == 3:  # a step is the job item's work, as a one-chunk job's is
            return args[0], None, int(args[1])
        return None

    def webhook(self) -> tuple[str, int, str] | None:
        """(job id, job attempt, event) of a webhook delivery's message; None for anything else. A dead delivery
        message never fails its job: the delivery is what it is about."""
        args = self.args
        if self.task == DELIVER_WEBHOOK and len(args) == 3 and isinstance(args[0], str) and isinstance(args[1], int):
            return args[0], args[1], str(args[2])
        return None


# API keys: the public key id is a prefix of the key's SHA-256 hash.
KEY_ID_LENGTH = 16


def key_id_of(key_hash: str) -> str:
    return key_hash[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class ApiKeyRecord:
    """What is known of a key: never the key, only its hash and what it grants."""

    key_hash: str
    owner: str
    key_id: str
    scopes: frozenset[str]
    created_at: datetime | None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Revocation(enum.Enum):
    REVOKED = "revoked"
    ALREADY_REVOKED = "already revoked"
    NOT_FOUND = "not found"


@dataclass(frozen=True)
class WorkerBeat:
    """A worker process's heartbeat: who it is and what it renders now (jobs/repository/farm.py stores it)."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    beat_at: datetime
    expires_at: datetime
    job_id: str | None = None
    chunk: int | None = None
    attempt: int | None = None
    frames_done: int = 0
    frames_total: int = 0


@dataclass(frozen=True)
class QueueDepth:
    """One SQS queue as the farm status shows it (oldest_age: CloudWatch's figure, None where it has none)."""

    name: str
    visible: int
    in_flight: int
    delayed: int
    oldest_age: float | None = None


# The states of a scene file's inspection (what Blender reads of its settings, once, on a worker).
INSPECTION_PENDING, INSPECTION_DONE, INSPECTION_FAILED = "pending", "done", "failed"


@dataclass(frozen=True)
class AssetInspection:
    """What a worker's Blender read of a scene file (jobs/renderers/blender_setup.py, inspect mode): `report`
    has `settings` (engine, frame range, resolution, samples, ...), `refused`, `missing_files` and
    `substitutions`; `error` is why it could not be read."""

    state: str
    requested_at: datetime
    report: dict | None = None
    error: str | None = None

    @property
    def settings(self) -> dict:
        return (self.report or {}).get("settings") or {}


@dataclass(frozen=True)
class AssetRecord:
    """`pk=ASSET#<owner slug>#<sha256>`: an owner declared a scene file of this size; kept until `expires_at`."""

    owner: str
    sha256: str
    size: int
    created_at: datetime
    expires_at: datetime
    inspection: AssetInspection | None = None


@dataclass(frozen=True)
class StoredAsset:
    """What S3 holds under an asset's key (HeadObject): its size, S3's own SHA-256 checksum when it kept one
    (hex; None when the store reports none, as the emulator does), and when it was last written."""

    size: int
    sha256: str | None
    last_modified: datetime


@dataclass(frozen=True)
class UploadTicket:
    """A presigned PUT: the client sends the raw bytes to `url` with exactly `headers`."""

    url: str
    method: str
    headers: dict[str, str]
    expires_in: int
