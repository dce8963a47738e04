"""Chunks in DynamoDB: the unit of work, in either of its two storage shapes.

A one-chunk job is its own chunk (the job item, `index` None); a job of several chunks has one chunk item
per chunk in the job's partition (`sk=TASK#<index:05d>`). Every method takes or returns a `Chunk` and
decides the shape from its index, so the render loop is written once. Every write is conditional on the
attempt and, once claimed, on the lease token.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import Chunk, Failure, FrameResult, Job, JobStatus
from jobs.errors import JobNotFound, JobNotRunning, JobStateConflict, LeaseLost
from jobs.ports.values import ChunkPage
from jobs.repository.cursor import decode_cursor, encode_cursor
from jobs.repository.dynamo import (
    FINISHED,
    TAKE_LEASE,
    cancellation_reasons,
    conditional_update,
    failure_values,
    lease_values,
    query_page,
    set_status,
    settle_usage,
    update_params,
)
from jobs.repository.items import (
    chunk_due_index,
    chunk_key,
    chunk_to_item,
    decimal,
    deserialize,
    due_id,
    due_index,
    due_sort_key,
    epoch,
    iso,
    item_to_chunk,
    item_to_job,
    job_key,
    result_to_map,
    seconds,
    serialize,
)

log = logging.getLogger(__name__)
TRANSACTION_LIMIT = 100
# A running job of several chunks stays in the sweeper's index, due this often for an audit of its chunks.
RUNNING_JOB_AUDIT = timedelta(minutes=10)

PUT_RACE = {"ConditionalCheckFailed", "None"}
HOLDS_LEASE = "#status = :st_processing AND lease_token = :token AND attempt = :attempt"
# The common claim: queued, or released by its last holder (a failed render, a shutdown).
CLAIMABLE = (
    "attempt = :attempt AND (#status = :st_queued OR (#status = :st_processing AND attribute_not_exists(lease_token)))"
)
# A takeover: the last holder's lease lapsed without a release, so it died (or hung) holding the chunk.
TAKEOVER = "attempt = :attempt AND #status = :st_processing AND lease_token = :old_token AND lease_expires_at < :epoch"
NOT_HELD = (
    "(#status = :st_queued OR (#status = :st_processing"
    " AND (attribute_not_exists(lease_token) OR lease_expires_at < :epoch)))"
)


class DynamoChunkRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    # --- create and read -------------------------------------------------------------------------
    def put(self, job: Job, chunks: list[Chunk]) -> None:
        """Create chunk items, 100 to a transaction; items that exist already (another run) are kept."""
        for start in range(0, len(chunks), TRANSACTION_LIMIT):
            batch = [self._put_request(job, c) for c in chunks[start : start + TRANSACTION_LIMIT]]
            try:
                with unavailable_as_503("DynamoDB"):
                    self._client.transact_write_items(TransactItems=[{"Put": p} for p in batch])
            except ClientError as exc:
                reasons = {r.get("Code") for r in cancellation_reasons(exc)}
                if error_code(exc) != "TransactionCanceledException" or not reasons <= {
                    "ConditionalCheckFailed",
                    "None",
                }:
                    raise
                log.info("job %s: some chunk items exist already (a concurrent fan-out); adding the rest", job.id)
                for put in batch:
                    try:
                        with unavailable_as_503("DynamoDB"):
                            self._client.put_item(**put)
                    except ClientError as one:
                        if error_code(one) != "ConditionalCheckFailedException":
                            raise

    def _put_request(self, job: Job, chunk: Chunk) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": serialize(chunk_to_item(chunk, job.created_at)),
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def list(self, job_id: str) -> list[Chunk]:
        """Every chunk item of a job, in index order (one Query page per ~1 MB)."""
        out: list[Chunk] = []
        start = None
        while True:
            items, start = query_page(self._client, self._query(job_id, limit=1000), start=start)
            out += [item_to_chunk(i) for i in items]
            if start is None:
                return out

    def page(self, job_id: str, *, cursor: str | None, limit: int) -> ChunkPage:
        scope = f"tasks:{job_id}"
        start = decode_cursor(cursor, scope)[0] if cursor else None
        items, last = query_page(self._client, self._query(job_id, limit=limit), start=start)
        return ChunkPage(chunks=[item_to_chunk(i) for i in items], cursor=encode_cursor(last, scope) if last else None)

    def _query(self, job_id: str, *, limit: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :task)",
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}, ":task": {"S": "TASK#"}},
            "ConsistentRead": True,
            "Limit": limit,
        }

    # --- claim ---------------------------------------------------------------------------------------
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
    ) -> tuple[Job, Chunk]:
        """Take the chunk's lease: QUEUED or released work at once; a dead holder's chunk as a counted crash.

        Raises JobNotRunning when the job is not running in this attempt (cancelled, failed, finished),
        JobStateConflict when the chunk is not ours to take (held, finished, another attempt).
        """
        job = self._start(job_id, attempt=attempt, now=now) if index is not None else None
        lease = lease_values(worker=worker, token=token, now=now, lease_seconds=lease_seconds, attempt=attempt)
        expires = now + timedelta(seconds=lease_seconds)
        values = {
            **lease,
            **{f":{k}": v for k, v in chunk_due_index(job_id, index, JobStatus.PROCESSING, expires).items()},
        }
        expression = TAKE_LEASE
        if index is None:
            _, listed = set_status(JobStatus.PROCESSING, job_id)
            expression += ", gsi3sk = :gsi3sk"
            values[":gsi3sk"] = listed[":gsi3sk"]
        try:
            item = conditional_update(
                self._client, self._table, chunk_key(job_id, index), expression, condition=CLAIMABLE, values=values
            )
        except JobStateConflict as exc:
            current = getattr(exc, "current", {})
            if not _dead_holder(current, attempt, now):
                raise _not_claimed(exc, whole_job=index is None) from exc
            item = conditional_update(
                self._client,
                self._table,
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

    def _start(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        """A chunk of a job of several chunks starts: the job becomes PROCESSING (if it was QUEUED).

        While it runs, the job stays in the sweeper's index, due every RUNNING_JOB_AUDIT for an audit of
        its chunks (a job whose chunks all stopped without finishing must not wait forever).
        """
        status, values = set_status(JobStatus.PROCESSING, job_id)
        try:
            return item_to_job(
                conditional_update(
                    self._client,
                    self._table,
                    job_key(job_id),
                    f"SET {status}, started_at = if_not_exists(started_at, :now), updated_at = :now,"
                    " gsi2pk = :gsi2pk, gsi2sk = :gsi2sk",
                    condition="attempt = :attempt AND #status IN (:st_queued, :st_processing)",
                    values={
                        **values,
                        ":now": iso(now),
                        ":attempt": attempt,
                        **{
                            f":{k}": v
                            for k, v in due_index("JOB", JobStatus.PROCESSING, now + RUNNING_JOB_AUDIT, job_id).items()
                        },
                    },
                )
            )
        except JobStateConflict as exc:
            raise _not_claimed(exc, whole_job=True) from exc

    # --- while rendering -------------------------------------------------------------------------
    def record_frame(
        self,
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
            "SET frames_done = :next, #results = list_append(#results, :result),"
            " render_seconds = render_seconds + :secs"
        )
        if not last:
            expression += ", updated_at = :now, lease_expires_at = :lease, gsi2sk = :gsi2sk"
            values[":lease"] = seconds(lease_until)
            values[":gsi2sk"] = due_sort_key(lease_until, due_id(chunk.job_id, chunk.index))
        elif chunk.whole_job:
            status, listed = set_status(JobStatus.COMPLETED, chunk.job_id)
            expression += (
                f", {status}, has_preview = :preview, chunks_done = chunks_total, {FINISHED}, #error, error_code"
            )
            values.update({**listed, ":preview": has_preview, ":ttl": epoch(expires_at or now)})
        else:
            expression += (
                ", #status = :st_completed, finished_at = :now, updated_at = :now"
                " REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk"
            )
        key, condition = chunk_key(chunk.job_id, chunk.index), f"{HOLDS_LEASE} AND frames_done = :done"
        if chunk.whole_job:
            self._whole_job_write(key, expression, condition, values, finishes=last)
        else:
            update = update_params(self._table, key, expression, condition, values)
            self._chunk_item_write(chunk, update, last=last, now=now)
        return chunk.replace(
            frames_done=chunk.frames_done + 1,
            results=(*chunk.results, result),
            render_seconds=chunk.render_seconds + render_seconds,
            status=JobStatus.COMPLETED if last else chunk.status,
        )

    def _whole_job_write(self, key: dict, expression: str, condition: str, values: dict, *, finishes: bool) -> None:
        """One conditional update of a one-chunk job's item (safe under botocore's retries, like every other)."""
        try:
            item = conditional_update(self._client, self._table, key, expression, condition=condition, values=values)
        except JobStateConflict as exc:
            status = exc.details.get("status")
            if status == JobStatus.PROCESSING:
                raise LeaseLost() from exc
            raise JobNotRunning(status) from exc
        if finishes:
            settle_usage(self._client, self._table, item)

    def _chunk_item_write(self, chunk: Chunk, update: dict[str, Any], *, last: bool, now: datetime) -> None:
        job_update = update_params(
            self._table,
            job_key(chunk.job_id),
            "SET updated_at = :now ADD frames_done :one, chunks_done :chunks",
            "#status = :st_processing AND attempt = :attempt",
            {":one": 1, ":chunks": 1 if last else 0, ":now": iso(now), ":attempt": chunk.attempt},
        )
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.transact_write_items(TransactItems=[{"Update": update}, {"Update": job_update}])
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

    def renew(self, chunk: Chunk, *, token: str, until: datetime) -> None:
        """Keep holding a chunk while a long frame renders; LeaseLost once it is no longer ours."""
        self._held_update(
            chunk,
            "SET lease_expires_at = :lease, gsi2sk = :gsi2sk",
            {
                ":lease": seconds(until),
                ":gsi2sk": due_sort_key(until, due_id(chunk.job_id, chunk.index)),
                ":token": token,
            },
        )

    def release(self, chunk: Chunk, *, token: str, now: datetime, failure: Failure | None = None) -> Chunk:
        """Lapse the lease so the next message claims the chunk at once: after a failed render (counted, with
        its error) or at a worker's shutdown (no error)."""
        counted = ", render_failures = render_failures + :one, #error = :error, error_code = :error_code"
        return self._held_update(
            chunk,
            f"SET updated_at = :now, lease_expires_at = :lapsed, gsi2sk = :gsi2sk{counted if failure else ''}"
            " REMOVE lease_token",
            {
                ":one": 1,
                **(failure_values(failure) if failure else {}),
                ":now": iso(now),
                ":lapsed": 0,
                ":gsi2sk": due_sort_key(now, due_id(chunk.job_id, chunk.index)),
                ":token": token,
            },
        )

    def end(
        self,
        chunk: Chunk,
        *,
        token: str,
        status: JobStatus,
        now: datetime,
        expires_at: datetime,
        failure: Failure | None = None,
    ) -> Chunk:
        """The lease holder ends its chunk FAILED (attempts used up, poison) or CANCELLED (the job stopped).

        A one-chunk job ends with it: FAILED from PROCESSING, CANCELLED from CANCELLING.
        """
        values: dict[str, Any] = {
            ":token": token,
            ":attempt": chunk.attempt,
            ":now": iso(now),
            ":ttl": epoch(expires_at),
            ":failures": 1 if failure and status is JobStatus.FAILED else 0,
            **(failure_values(failure) if failure else {}),
        }
        error = ", #error = :error, error_code = :error_code" if failure else ""
        condition = HOLDS_LEASE
        if chunk.whole_job:
            clause, listed = set_status(status, chunk.job_id)
            values.update(listed)
            if status is JobStatus.CANCELLED:
                condition = "#status = :st_cancelling AND lease_token = :token AND attempt = :attempt"
        else:
            clause = "#status = :new_status"
            values[":new_status"] = status
        expression = f"SET {clause}, render_failures = render_failures + :failures{error}, {FINISHED}"
        return self._held_update(chunk, expression, values, condition, settles=chunk.whole_job)

    def _held_update(
        self, chunk: Chunk, expression: str, values: dict, condition: str = HOLDS_LEASE, *, settles: bool = False
    ) -> Chunk:
        """A write by the lease holder; `settles` when it ends a one-chunk job (its frames leave the usage)."""
        try:
            item = conditional_update(
                self._client,
                self._table,
                chunk_key(chunk.job_id, chunk.index),
                expression,
                condition=condition,
                values={":attempt": chunk.attempt, **values},
            )
        except JobStateConflict as exc:
            status = exc.details.get("status")
            if chunk.whole_job and status and status != JobStatus.PROCESSING:
                # A one-chunk job's item is the job: it stopped (cancelled, failed, retried), as the fake says.
                raise JobNotRunning(status) from exc
            raise LeaseLost(exc.message) from exc
        if settles:
            settle_usage(self._client, self._table, item)
        return item_to_chunk(item)

    # --- whoever holds it ------------------------------------------------------------------------
    def drop(self, job_id: str, index: int | None, *, attempt: int, now: datetime) -> bool:
        """A chunk item of a stopped job that no live lease holds is CANCELLED; a held one stops itself at its
        next frame. A one-chunk job stops with its job item (nothing to do here)."""
        return self._if_applies(
            job_id,
            index,
            "SET #status = :st_cancelled, finished_at = :now REMOVE gsi2pk, gsi2sk, lease_token, lease_expires_at",
            condition=f"attempt = :attempt AND {NOT_HELD}",
            values={":attempt": attempt, ":now": iso(now), ":epoch": seconds(now)},
        )

    def fail(self, job_id: str, index: int | None, *, attempt: int, failure: Failure, now: datetime) -> bool:
        """A chunk item that cannot run (dead-lettered, crashed its workers): QUEUED | PROCESSING -> FAILED,
        whoever held it. A one-chunk job fails with its job item (the job repository's `fail`)."""
        return self._if_applies(
            job_id,
            index,
            "SET #status = :st_failed, finished_at = :now, #error = :error, error_code = :error_code"
            " REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk",
            condition="#status IN (:st_queued, :st_processing) AND attempt = :attempt",
            values={":attempt": attempt, ":now": iso(now), **failure_values(failure)},
        )

    def _if_applies(self, job_id: str, index: int | None, expression: str, *, condition: str, values: dict) -> bool:
        """A write to a chunk item whoever holds it; False when its condition (or the item) is not there."""
        if index is None:
            return False
        try:
            conditional_update(
                self._client, self._table, chunk_key(job_id, index), expression, condition=condition, values=values
            )
        except (JobStateConflict, JobNotFound):
            return False
        return True

    def note_failure(self, job_id: str, index: int | None, *, attempt: int, failure: Failure, now: datetime) -> Chunk:
        """An error outside the render (a broken worker, say) counts as a failed attempt of a chunk that no live
        lease holds; its lease, if any, is lapsed so the retry claims it at once."""
        return item_to_chunk(
            conditional_update(
                self._client,
                self._table,
                chunk_key(job_id, index),
                "SET render_failures = render_failures + :one, #error = :error, error_code = :error_code,"
                " updated_at = :now REMOVE lease_token",
                condition=f"attempt = :attempt AND {NOT_HELD}",
                values={
                    ":attempt": attempt,
                    ":one": 1,
                    ":now": iso(now),
                    ":epoch": seconds(now),
                    **failure_values(failure),
                },
            )
        )

    def requeue(self, chunk: Chunk, *, attempt: int, now: datetime) -> bool:
        """An unfinished chunk item joins a retry as QUEUED in `attempt`; False if finished or already in it."""
        try:
            conditional_update(
                self._client,
                self._table,
                chunk_key(chunk.job_id, chunk.index),
                "SET #status = :st_queued, attempt = :attempt, render_failures = :zero, crashes = :zero,"
                " gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
                " REMOVE lease_token, lease_expires_at, #error, error_code, finished_at, expires_at",
                condition="#status <> :st_completed AND attempt < :attempt",
                values={
                    ":attempt": attempt,
                    ":zero": 0,
                    **{
                        f":{k}": v for k, v in chunk_due_index(chunk.job_id, chunk.index, JobStatus.QUEUED, now).items()
                    },
                },
            )
        except (JobStateConflict, JobNotFound):
            return False
        return True


def _dead_holder(current: dict[str, Any], attempt: int, now: datetime) -> bool:
    return (
        current.get("status") == JobStatus.PROCESSING
        and int(current.get("attempt", 0)) == attempt
        and bool(current.get("lease_token"))
        and float(current.get("lease_expires_at", 0)) < now.timestamp()
    )


def _not_claimed(exc: JobStateConflict, *, whole_job: bool) -> JobStateConflict:
    """The job (or a one-chunk job's item) is not running: JobNotRunning; else the conflict as it is."""
    status = exc.details.get("status")
    if whole_job and status in (JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
        return JobNotRunning(status)
    return exc
