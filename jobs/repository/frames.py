"""Recording rendered frames: the lease holder's progress write, in either storage shape of a chunk.

A one-chunk job's item takes one conditional update; a chunk item's update and the publish of its progress
on its job item (which requires the job to be running in this attempt) are one transaction. One write
records every frame rendered since the last one (services/progress.py decides when). Used by
DynamoChunkRepository.record_frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobs.domain import Chunk, FrameResult, JobStatus
from jobs.errors import JobNotRunning, LeaseLost, StaleWrite
from jobs.repository.dynamo import (
    FINISHED,
    HOLDS_LEASE,
    conditional_transaction,
    conditional_update,
    set_status,
    settle_usage,
)
from jobs.repository.items import (
    chunk_key,
    decimal,
    epoch,
    iso,
    job_key,
    result_to_map,
    seconds,
)

log = logging.getLogger(__name__)


def record_frames(
    client,
    table: str,
    chunk: Chunk,
    *,
    token: str,
    results: Sequence[FrameResult],
    render_seconds: float,
    now: datetime,
    lease_until: datetime,
    has_preview: bool = False,
    expires_at: datetime | None = None,
    write_id: str | None = None,
) -> Chunk:
    """Store the results of the frames rendered since the last write (renewing the lease); the write that
    holds the chunk's last frame completes it.

    For a one-chunk job the last write completes the job (`has_preview`, `expires_at` apply). A chunk item's
    write and the publish of its progress on the job item (`publish_progress`, which requires the job to be
    running in this attempt) are one transaction: one request per write, whatever it carries.
    JobNotRunning when the job stopped, LeaseLost when the lease is gone. A caller that tries the same
    write again after an error passes the same `write_id`: if the first try applied, the retry counts as done.
    """
    done = chunk.frames_done + len(results)
    last = done == len(chunk.frames)
    values: dict[str, Any] = {
        ":next": done,
        ":done": chunk.frames_done,
        ":result": [result_to_map(r) for r in results],
        ":secs": decimal(render_seconds),
        ":token": token,
        ":attempt": chunk.attempt,
        ":now": iso(now),
    }
    expression = (
        "SET frames_done = :next, #results = list_append(#results, :result), render_seconds = render_seconds + :secs"
    )
    if not last:
        # The lease moves on with the frames; the sweeper's marker (gsi2) stays where the claim put it, so a
        # write costs no index write (an overdue marker of a live lease is postponed, see services/sweeper.py).
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
    after = chunk.replace(
        frames_done=done,
        results=(*chunk.results, *results),
        render_seconds=chunk.render_seconds + render_seconds,
        status=JobStatus.COMPLETED if last else chunk.status,
    )
    if chunk.whole_job:
        _whole_job_write(client, table, key, expression, condition, values, finishes=last, write_id=write_id)
        return after
    lost = conditional_transaction(
        client,
        [(table, key, expression, condition, values), (table, job_key(chunk.job_id), *_publish(after, now))],
        write_id=write_id,
    )
    if lost is not None:
        position, conflict = lost
        if position == 0:
            raise LeaseLost() from conflict
        raise JobNotRunning(conflict.status if isinstance(conflict, StaleWrite) else "gone") from conflict
    return after


def publish_progress(client, table: str, chunk: Chunk, *, now: datetime) -> None:
    """Put a chunk item's progress on its job item: `c<index>` = its frames done, and a completed chunk's
    index into the set `done_chunks`. Both are idempotent (absolute values, a set), so a retried or
    repeated publish counts nothing twice; the job's frames_done and chunks_done are read from them.

    JobNotRunning when the job is not running in the chunk's attempt (cancelled, failed, retried). A job
    still QUEUED in that attempt takes it too: a retry's fan-out counts the chunks kept from earlier attempts.
    """
    expression, condition, values = _publish(chunk, now)
    try:
        conditional_update(
            client, table, job_key(chunk.job_id), expression, condition=condition, values=values, returns=False
        )
    except StaleWrite as exc:
        raise JobNotRunning(exc.status) from exc


def _publish(chunk: Chunk, now: datetime) -> tuple[str, str, dict[str, Any]]:
    """The job item's update that publishes a chunk's progress: expression, condition, values."""
    expression = f"SET c{chunk.index} = :n, updated_at = :now"
    values: dict[str, Any] = {":n": chunk.frames_done, ":now": iso(now), ":attempt": chunk.attempt}
    if chunk.status is JobStatus.COMPLETED:
        expression += " ADD done_chunks :index"
        values[":index"] = {chunk.index}
    return expression, "#status IN (:st_queued, :st_processing) AND attempt = :attempt", values


def _whole_job_write(
    client,
    table: str,
    key: dict,
    expression: str,
    condition: str,
    values: dict,
    *,
    finishes: bool,
    write_id: str | None,
) -> None:
    """One conditional update of a one-chunk job's item (safe under retries, like every other)."""
    try:
        item = conditional_update(
            client, table, key, expression, condition=condition, values=values, returns=finishes, write_id=write_id
        )
    except StaleWrite as exc:
        if exc.status == JobStatus.PROCESSING:
            raise LeaseLost() from exc
        raise JobNotRunning(exc.status) from exc
    if finishes:
        settle_usage(client, table, item)
