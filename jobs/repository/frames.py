"""Recording rendered frames: the lease holder's progress write, in either storage shape of a chunk.

A one-chunk job's item takes one conditional update; a chunk item's update is followed by the count of its
progress on its job item (which requires the job to be running in this attempt): two writes, not one
transaction (which bills each item twice). One write records every frame rendered since the last one
(services/progress.py decides when). Used by DynamoChunkRepository.record_frames.

The job item counts with two numbers, `frames_done` and `chunks_done`, added to by each count (`ADD` the
frames it records, and one when it completes its chunk): the job item keeps its size whatever the job's
(a job of 1,000 chunks once carried a progress attribute per chunk: 9.6 KB, ten write units per write).
The chunk's write is conditional on the frames it found (`frames_done = :done`) and both are retried as
the same write (`write_id`): a retry finds the chunk's write applied and counts once, unless the count
itself applied unseen and another chunk wrote the job item before the retry (then it runs one write
ahead). A worker that dies between the two leaves the count behind. Neither decides anything: the
assembly starts when the count reaches the total and first checks the chunk items themselves
(services/assembly.py), and `recount` sets both from the chunk items: for the chunks kept from earlier
attempts (a retry's fan-out), the sweeper's audit of a job whose chunks are all done, and an assembly that
found a chunk unfinished. A completed job's counts are its totals.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobs.domain import Chunk, FrameResult, JobStatus
from jobs.errors import JobNotFound, JobNotRunning, LeaseLost, StaleWrite
from jobs.repository.dynamo import (
    FINISHED,
    HOLDS_LEASE,
    conditional_update,
    set_status,
)
from jobs.repository.items import (
    chunk_key,
    decimal,
    epoch,
    iso,
    job_key,
    result_to_stored,
    seconds,
)
from jobs.repository.usage import settle_usage

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
    worker_seconds: float = 0.0,
    first_frame_seconds: float = 0.0,
    has_preview: bool = False,
    expires_at: datetime | None = None,
    write_id: str | None = None,
) -> Chunk:
    """Store the results of the frames rendered since the last write (renewing the lease); the write that
    holds the chunk's last frame completes it.

    For a one-chunk job the last write completes the job (`has_preview`, `expires_at` apply). A chunk item's
    write is followed by the count of its frames on the job item (`_count`, which requires the job to be
    running in this attempt); the completing count says whether it was the job's last (`completes_job`).
    `worker_seconds` (the holder's wall time since its claim or its last write) is added to the chunk and to the
    job by those writes, so a retried write adds it once; the job's total is charged to its owner's month when
    the job ends (usage.py `settle_usage`).
    JobNotRunning when the job stopped, LeaseLost when the lease is gone. A caller that tries the same
    write again after an error passes the same `write_id`: if the first try applied, the retry counts as done.
    """
    done = chunk.frames_done + len(results)
    last = done == len(chunk.frames)
    values: dict[str, Any] = {
        ":next": done,
        ":done": chunk.frames_done,
        ":result": [result_to_stored(chunk.job_id, r) for r in results],
        ":secs": decimal(render_seconds),
        ":worked": decimal(worker_seconds),
        ":first": decimal(first_frame_seconds),
        ":zero": 0,
        ":token": token,
        ":attempt": chunk.attempt,
        ":now": iso(now),
    }
    expression = (
        "SET frames_done = :next, #results = list_append(#results, :result), render_seconds = render_seconds + :secs,"
        " worker_seconds = if_not_exists(worker_seconds, :zero) + :worked,"
        " first_frame_seconds = if_not_exists(first_frame_seconds, :zero) + :first"
    )
    if not last:
        # The lease moves on with the frames; the sweeper's marker (gsi2) stays where the put wrote it, so a
        # write costs no index write (an overdue marker of a live lease is postponed, see services/sweeper.py).
        expression += ", updated_at = :now, lease_expires_at = :lease"
        values[":lease"] = seconds(lease_until)
    elif chunk.whole_job:
        status, listed = set_status(JobStatus.COMPLETED)
        expression += f", {status}, has_preview = :preview, chunks_done = chunks_total, {FINISHED}, #error, error_code"
        values.update({**listed, ":preview": has_preview, ":ttl": epoch(expires_at or now)})
    else:
        expression += (
            ", #status = :st_completed, finished_at = :now, updated_at = :now REMOVE lease_token, lease_expires_at"
        )
    key, condition = chunk_key(chunk.job_id, chunk.index), f"{HOLDS_LEASE} AND frames_done = :done"
    after = chunk.replace(
        frames_done=done,
        results=(*chunk.results, *results),
        render_seconds=chunk.render_seconds + render_seconds,
        worker_seconds=chunk.worker_seconds + worker_seconds,
        first_frame_seconds=chunk.first_frame_seconds + first_frame_seconds,
        status=JobStatus.COMPLETED if last else chunk.status,
    )
    if chunk.whole_job:
        _whole_job_write(client, table, key, expression, condition, values, finishes=last, write_id=write_id)
        return after
    # The chunk item first, then its count on the job item: two writes of one unit each (as one transaction
    # they cost twice their sizes). A count that fails to follow (the worker died between them) is set again
    # by the sweeper's audit (recount); one that repeats (a retry after its first try applied unseen while
    # another chunk wrote) runs ahead, which the assembly's check of the chunk items catches.
    write_id = write_id or uuid.uuid4().hex
    try:
        conditional_update(
            client, table, key, expression, condition=condition, values=values, returns=False, write_id=write_id
        )
    except (StaleWrite, JobNotFound) as exc:
        raise LeaseLost() from exc
    timings = (worker_seconds, render_seconds, first_frame_seconds)
    job_expression, job_condition, job_values = _count(chunk.attempt, len(results), timings, completes=last, now=now)
    try:
        counted = conditional_update(
            client,
            table,
            job_key(chunk.job_id),
            job_expression,
            # Not again if this very write applied last (a retry of a count whose answer was lost).
            condition=f"{job_condition} AND (attribute_not_exists(last_write) OR last_write <> :write_id)",
            values=job_values,
            returns=last,  # the completing count says whether it was the job's last
            write_id=write_id,
        )
    except StaleWrite as exc:
        raise JobNotRunning(exc.status) from exc
    except JobNotFound as exc:
        raise JobNotRunning("gone") from exc
    if last and int(counted.get("chunks_done", 0)) >= int(counted.get("chunks_total", 1)):
        after = after.replace(completes_job=True)
    return after


RUNNING_IN_ATTEMPT = "#status IN (:st_queued, :st_processing) AND attempt = :attempt"


def _count(
    attempt: int, frames: int, timings: tuple[float, float, float], *, completes: bool, now: datetime
) -> tuple[str, str, dict[str, Any]]:
    """The job item's part of a chunk's write: add its new frames, its seconds (worker, render, first frame: the
    job's sums) and its completion to the job's counts, if the job still runs in the chunk's attempt (a refusal
    is how a running chunk learns of a cancel)."""
    values: dict[str, Any] = {
        ":frames": frames,
        ":now": iso(now),
        ":attempt": attempt,
        ":worked": decimal(timings[0]),
        ":secs": decimal(timings[1]),
        ":first": decimal(timings[2]),
    }
    expression = (
        "SET updated_at = :now ADD frames_done :frames, worker_seconds :worked, render_seconds :secs,"
        " first_frame_seconds :first"
    )
    if completes:
        expression += ", chunks_done :one"
        values[":one"] = 1
    return expression, RUNNING_IN_ATTEMPT, values


def recount(client, table: str, job_id: str, *, attempt: int, seen: tuple[int, int], now: datetime, totals) -> bool:
    """Set the job's counts to `totals` (frames done, chunks done: summed from its chunk items by the caller)
    if they are still `seen` and the job runs in `attempt`; False when a chunk's write counted meanwhile (read
    and sum again). JobNotRunning when the job does not run in that attempt."""
    try:
        conditional_update(
            client,
            table,
            job_key(job_id),
            "SET frames_done = :frames, chunks_done = :chunks, updated_at = :now",
            condition=f"{RUNNING_IN_ATTEMPT} AND frames_done = :seen_frames AND chunks_done = :seen_chunks",
            values={
                ":frames": totals[0],
                ":chunks": totals[1],
                ":seen_frames": seen[0],
                ":seen_chunks": seen[1],
                ":now": iso(now),
                ":attempt": attempt,
            },
            returns=False,
        )
    except StaleWrite as exc:
        if exc.status in (JobStatus.QUEUED, JobStatus.PROCESSING) and exc.attempt == attempt:
            return False
        raise JobNotRunning(exc.status) from exc
    return True


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
