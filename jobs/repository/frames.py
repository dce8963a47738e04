"""Recording one rendered frame: the lease holder's per-frame write, in either storage shape of a chunk.

A one-chunk job's item takes one conditional update; a chunk item and its job's counters move in one
transaction that also requires the job to be PROCESSING in this attempt. Used by
DynamoChunkRepository.record_frame.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import Chunk, FrameResult, JobStatus
from jobs.errors import JobNotRunning, LeaseLost, StaleWrite
from jobs.repository.dynamo import (
    FINISHED,
    HOLDS_LEASE,
    cancellation_reasons,
    conditional_update,
    set_status,
    settle_usage,
    update_params,
)
from jobs.repository.items import (
    chunk_key,
    decimal,
    deserialize,
    epoch,
    iso,
    job_key,
    result_to_map,
    seconds,
)

log = logging.getLogger(__name__)


def record_frame(
    client,
    table: str,
    chunk: Chunk,
    *,
    token: str,
    result: FrameResult,
    render_seconds: float,
    now: datetime,
    lease_until: datetime,
    has_preview: bool = False,
    expires_at: datetime | None = None,
) -> Chunk:
    """Store one frame's result (renewing the lease); the chunk's last frame completes it.

    For a one-chunk job the last frame completes the job (`has_preview`, `expires_at` apply); for a
    chunk item the job's counters move in the same transaction, which also requires the job to be
    PROCESSING in this attempt. JobNotRunning when the job stopped, LeaseLost when the lease is gone.
    """
    last = chunk.frames_done + 1 == len(chunk.frames)
    values: dict[str, Any] = {
        ":next": chunk.frames_done + 1,
        ":done": chunk.frames_done,
        ":result": [result_to_map(result)],
        ":secs": decimal(render_seconds),
        ":token": token,
        ":attempt": chunk.attempt,
        ":now": iso(now),
    }
    expression = (
        "SET frames_done = :next, #results = list_append(#results, :result), render_seconds = render_seconds + :secs"
    )
    if not last:
        # The lease moves on with the frame; the sweeper's marker (gsi2) stays where the claim put it, so a
        # frame costs no index write (an overdue marker of a live lease is postponed, see services/sweeper.py).
        expression += ", updated_at = :now, lease_expires_at = :lease"
        values[":lease"] = seconds(lease_until)
    elif chunk.whole_job:
        status, listed = set_status(JobStatus.COMPLETED, chunk.job_id)
        expression += f", {status}, has_preview = :preview, chunks_done = chunks_total, {FINISHED}, #error, error_code"
        values.update({**listed, ":preview": has_preview, ":ttl": epoch(expires_at or now)})
    else:
        expression += (
            ", #status = :st_completed, finished_at = :now, updated_at = :now"
            " REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk"
        )
    key, condition = chunk_key(chunk.job_id, chunk.index), f"{HOLDS_LEASE} AND frames_done = :done"
    if chunk.whole_job:
        _whole_job_write(client, table, key, expression, condition, values, finishes=last)
    else:
        update = update_params(table, key, expression, condition, values)
        _chunk_item_write(client, table, chunk, update, last=last, now=now)
    return chunk.replace(
        frames_done=chunk.frames_done + 1,
        results=(*chunk.results, result),
        render_seconds=chunk.render_seconds + render_seconds,
        status=JobStatus.COMPLETED if last else chunk.status,
    )


def _whole_job_write(
    client, table: str, key: dict, expression: str, condition: str, values: dict, *, finishes: bool
) -> None:
    """One conditional update of a one-chunk job's item (safe under botocore's retries, like every other)."""
    try:
        item = conditional_update(client, table, key, expression, condition=condition, values=values)
    except StaleWrite as exc:
        if exc.status == JobStatus.PROCESSING:
            raise LeaseLost() from exc
        raise JobNotRunning(exc.status) from exc
    if finishes:
        settle_usage(client, table, item)


def _chunk_item_write(client, table: str, chunk: Chunk, update: dict[str, Any], *, last: bool, now: datetime) -> None:
    job_update = update_params(
        table,
        job_key(chunk.job_id),
        "SET updated_at = :now ADD frames_done :one, chunks_done :chunks",
        "#status = :st_processing AND attempt = :attempt",
        {":one": 1, ":chunks": 1 if last else 0, ":now": iso(now), ":attempt": chunk.attempt},
    )
    try:
        with unavailable_as_503("DynamoDB"):
            client.transact_write_items(TransactItems=[{"Update": update}, {"Update": job_update}])
    except ClientError as exc:
        if error_code(exc) != "TransactionCanceledException":
            raise
        chunk_reason, job_reason = ([*cancellation_reasons(exc), {}, {}])[:2]
        if chunk_reason.get("Code") == "ConditionalCheckFailed":
            raise LeaseLost() from exc
        if job_reason.get("Code") == "ConditionalCheckFailed":
            status = deserialize(job_reason.get("Item", {})).get("status", "gone")
            raise JobNotRunning(status) from exc
        raise
