"""Chunks in DynamoDB: the unit of work, in either of its two storage shapes.

A one-chunk job is its own chunk (the job item, `index` None); a job of several chunks has one chunk item
per chunk in the job's partition (`sk=TASK#<index:05d>`). Every method takes or returns a `Chunk` and
decides the shape from its index, so the render loop is written once. Every write is conditional on the
attempt and, once claimed, on the lease token.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import Chunk, Failure, Job, JobStatus
from jobs.errors import JobNotFound, JobNotRunning, JobStateConflict, LeaseLost, StaleWrite
from jobs.ports.values import ChunkPage
from jobs.repository import claims, frames
from jobs.repository import partitions as P
from jobs.repository.cursor import decode_cursor, encode_cursor
from jobs.repository.dynamo import (
    FINISHED,
    HOLDS_LEASE,
    conditional_update,
    failure_values,
    query_page,
    set_status,
)
from jobs.repository.items import (
    chunk_key,
    chunk_to_item,
    deserialize,
    due_id,
    due_sort_key,
    epoch,
    iso,
    item_to_chunk,
    seconds,
    serialize,
)
from jobs.repository.usage import settle_usage

log = logging.getLogger(__name__)
PUT_THREADS = 8  # a fan-out's concurrent PutItems of chunk items
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
        """Create chunk items, each with a conditional PutItem (PUT_THREADS at a time): one write unit a chunk
        item, where a transaction of them cost two. Items that exist already (another run of the fan-out) are
        kept; all or none is not needed, since the fan-out lists the job's chunk items and adds what is
        missing each time it runs."""
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=min(PUT_THREADS, len(chunks))) as pool:
            created = list(pool.map(self._put_one, [self._put_request(job, c) for c in chunks]))
        if not all(created):
            log.info("job %s: some chunk items exist already (a concurrent fan-out); kept", job.id)

    def _put_one(self, put: dict[str, Any]) -> bool:
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.put_item(**put)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _put_request(self, job: Job, chunk: Chunk) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": serialize(chunk_to_item(chunk)),
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def get(self, job_id: str, index: int | None) -> Chunk:
        """One chunk as stored now (a one-chunk job's item seen as its chunk); JobNotFound if there is none."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=chunk_key(job_id, index), ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound()
        return item_to_chunk(deserialize(resp["Item"]))

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
            "ExpressionAttributeValues": {":pk": {"S": P.JOB + job_id}, ":task": {"S": P.CHUNK}},
            "ConsistentRead": True,
            "Limit": limit,
        }

    # --- while rendering -------------------------------------------------------------------------
    # --- the lease holder ---------------------------------------------------------------------------
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
        """Take the chunk's lease (claims.py): JobNotRunning when the job is not running in this attempt,
        JobStateConflict when the chunk is not ours to take (held, finished, another attempt)."""
        return claims.claim(
            self._client,
            self._table,
            job_id,
            index,
            attempt=attempt,
            worker=worker,
            token=token,
            now=now,
            lease_seconds=lease_seconds,
        )

    def record_frames(self, chunk: Chunk, **frames_: Any) -> Chunk:
        """Store the frames rendered since the last write, renewing the lease; the write holding the last frame
        completes the chunk (frames.py)."""
        return frames.record_frames(self._client, self._table, chunk, **frames_)

    def renew(self, chunk: Chunk, *, token: str, until: datetime) -> None:
        """Keep holding a chunk while a long frame renders; LeaseLost once it is no longer ours."""
        self._held_update(
            chunk,
            "SET lease_expires_at = :lease",  # the sweeper's marker stays (see frames.py)
            {":lease": seconds(until), ":token": token},
        )

    def release(self, chunk: Chunk, *, token: str, now: datetime, failure: Failure | None = None) -> Chunk:
        """Lapse the lease so the next message claims the chunk at once: after a failed render (counted, with
        its error) or at a worker's shutdown (no error)."""
        counted = ", render_failures = render_failures + :one, #error = :error, error_code = :error_code"
        # A one-chunk job's entry in the sweeper's index starts its grace again (chunk items have none).
        marker = ", gsi2sk = :gsi2sk" if chunk.whole_job else ""
        return self._held_update(
            chunk,
            f"SET updated_at = :now, lease_expires_at = :lapsed{marker}{counted if failure else ''} REMOVE lease_token",
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
            clause, listed = set_status(status)
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
        except StaleWrite as exc:
            if chunk.whole_job and exc.status and exc.status != JobStatus.PROCESSING:
                # A one-chunk job's item is the job: it stopped (cancelled, failed, retried), as the fake says.
                raise JobNotRunning(exc.status) from exc
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
            "SET #status = :st_cancelled, finished_at = :now REMOVE lease_token, lease_expires_at",
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
            " REMOVE lease_token, lease_expires_at",
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
                "SET #status = :st_queued, attempt = :attempt, render_failures = :zero, crashes = :zero"
                " REMOVE lease_token, lease_expires_at, #error, error_code, finished_at, expires_at",
                condition="#status <> :st_completed AND attempt < :attempt",
                values={":attempt": attempt, ":zero": 0},
            )
        except (JobStateConflict, JobNotFound):
            return False
        return True
