"""Taking a chunk's lease: the common claim, and the takeover of a dead holder's chunk (a counted crash).

Used by DynamoChunkRepository.claim; see chunks.py for the two storage shapes of a chunk.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from jobs.adapters.aws import unavailable_as_503
from jobs.domain import Chunk, Job, JobStatus
from jobs.errors import JobNotFound, JobNotRunning, JobStateConflict, StaleWrite
from jobs.repository.dynamo import (
    TAKE_LEASE,
    conditional_update,
    lease_values,
    set_status,
)
from jobs.repository.items import (
    chunk_key,
    deserialize,
    iso,
    item_to_chunk,
    item_to_job,
    job_key,
)

log = logging.getLogger(__name__)

# The common claim: queued, or released by its last holder (a failed render, a shutdown).
CLAIMABLE = (
    "attempt = :attempt AND (#status = :st_queued OR (#status = :st_processing AND attribute_not_exists(lease_token)))"
)
# A takeover: the last holder's lease lapsed without a release, so it died (or hung) holding the chunk.
TAKEOVER = "attempt = :attempt AND #status = :st_processing AND lease_token = :old_token AND lease_expires_at < :epoch"


def claim(
    client,
    table: str,
    job_id: str,
    index: int | None,
    *,
    attempt: int,
    worker: str,
    token: str,
    now: datetime,
    lease_seconds: int,
) -> tuple[Job, Chunk]:
    """Take the chunk's lease: QUEUED or released work at once; a dead holder's chunk as a counted crash.

    Raises JobNotRunning when the job is not running in this attempt (cancelled, failed, finished),
    JobStateConflict when the chunk is not ours to take (held, finished, another attempt).
    """
    job = _start(client, table, job_id, attempt=attempt, now=now) if index is not None else None
    values = lease_values(worker=worker, token=token, now=now, lease_seconds=lease_seconds, attempt=attempt)
    expression = TAKE_LEASE
    try:
        item = conditional_update(
            client, table, chunk_key(job_id, index), expression, condition=CLAIMABLE, values=values
        )
    except StaleWrite as exc:
        current = exc.current
        if not _dead_holder(current, attempt, now):
            raise _not_claimed(exc, whole_job=index is None) from exc
        item = conditional_update(
            client,
            table,
            chunk_key(job_id, index),
            f"{expression}, crashes = crashes + :one",
            condition=TAKEOVER,
            values={**values, ":old_token": current["lease_token"], ":one": 1},
        )
        holder = current.get("worker")
        log.warning("job %s chunk %s: taken over from %s, whose lease lapsed", job_id, index, holder)
    if index is None:
        job = item_to_job(item)
        return job, job.as_chunk()
    return job, item_to_chunk(item)


def _start(client, table: str, job_id: str, *, attempt: int, now: datetime) -> Job:
    """A chunk of a job of several chunks starts: the job becomes PROCESSING (if it was QUEUED).

    Only the first chunk writes the job (the state and `started_at`; no index entry: the sweeper's audit of
    the job's chunks comes from the entry its put wrote, services/sweeper.py); the others find it PROCESSING
    with one read, so a chunk start costs no job write. A job stopped between that read and the chunk's
    claim is noticed at the chunk's first publish (repository/frames.py).
    """
    with unavailable_as_503("DynamoDB"):
        resp = client.get_item(TableName=table, Key=job_key(job_id), ConsistentRead=True)
    if "Item" not in resp:
        raise JobNotFound()
    current = deserialize(resp["Item"])
    if current.get("status") == JobStatus.PROCESSING and int(current.get("attempt", 0)) == attempt:
        return item_to_job(current)
    status, values = set_status(JobStatus.PROCESSING)
    try:
        return item_to_job(
            conditional_update(
                client,
                table,
                job_key(job_id),
                f"SET {status}, started_at = if_not_exists(started_at, :now), updated_at = :now",
                condition="attempt = :attempt AND #status IN (:st_queued, :st_processing)",
                values={**values, ":now": iso(now), ":attempt": attempt},
            )
        )
    except StaleWrite as exc:
        raise _not_claimed(exc, whole_job=True) from exc


def _dead_holder(current: dict[str, Any], attempt: int, now: datetime) -> bool:
    return (
        current.get("status") == JobStatus.PROCESSING
        and int(current.get("attempt", 0)) == attempt
        and bool(current.get("lease_token"))
        and float(current.get("lease_expires_at", 0)) < now.timestamp()
    )


def _not_claimed(exc: StaleWrite, *, whole_job: bool) -> JobStateConflict:
    """The job (or a one-chunk job's item) is not running: JobNotRunning; else the conflict as it is."""
    status = exc.status
    if whole_job and status in (JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
        return JobNotRunning(status)
    return exc
