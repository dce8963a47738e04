"""Job items in DynamoDB: create (with an idempotency record), read, list, and every job-level transition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_as_503
from ..domain import FrameResult, Job, JobStatus, can_transition
from ..errors import JobAlreadyExists, JobNotFound, JobStateConflict
from .cursor import decode_cursor, encode_cursor
from .dynamo import LEASE_FREE, cancellation_reasons, conditional_update, query_page, take_lease, update_params
from .items import (
    active_index,
    deserialize,
    epoch,
    iso,
    item_to_job,
    job_key,
    job_to_item,
    result_to_map,
    seconds,
    serialize,
)
from .tasks import DynamoTaskMixin
from .types import IdempotencyRecord, JobPage

HOLDS_LEASE = "#status = :processing AND lease_token = :token"


class DynamoJobRepository(DynamoTaskMixin):
    """Jobs in the one table of DESIGN.md; every state change is a conditional write."""

    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    # --- create, read, list ----------------------------------------------------------------------
    def add(self, job: Job, *, idempotency: IdempotencyRecord | None = None) -> None:
        """Store a new job; with an idempotency record both are written in one transaction, or neither."""
        put = {
            "TableName": self._table,
            "Item": serialize(job_to_item(job)),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            with unavailable_as_503("DynamoDB"):
                if idempotency is None:
                    self._client.put_item(**put)
                    return
                self._client.transact_write_items(
                    TransactItems=[{"Put": put}, {"Put": self._idempotency_put(idempotency)}]
                )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                if exc.response.get("Item") == put["Item"]:
                    return  # botocore retried a put whose first try applied: the job is ours
                raise JobAlreadyExists() from exc
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in cancellation_reasons(exc)]
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise IdempotencyTaken() from exc
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise JobAlreadyExists() from exc
            raise

    def _idempotency_put(self, record: IdempotencyRecord) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": serialize(
                {
                    "pk": record.pk,
                    "sk": "IDEMPOTENCY",
                    "job_id": record.job_id,
                    "request_hash": record.request_hash,
                    "expires_at": epoch(record.expires_at),
                }
            ),
            # A record past its expiry counts as absent even before DynamoDB's TTL deletes it.
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
            "ExpressionAttributeValues": {":now": {"N": str(epoch(record.created_at))}},
        }

    def idempotency_record(self, pk: str) -> dict[str, Any] | None:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": pk}, "sk": {"S": "IDEMPOTENCY"}}, ConsistentRead=True
            )
        return deserialize(resp["Item"]) if "Item" in resp else None

    def get(self, job_id: str) -> Job:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=job_key(job_id), ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound()
        return item_to_job(deserialize(resp["Item"]))

    def withdraw(self, job_id: str, *, idempotency_pk: str | None = None) -> None:
        """Delete a job that was never enqueued (still QUEUED), with its idempotency record."""
        delete = update_params(self._table, job_key(job_id), None, "#status = :queued", {":queued": "QUEUED"})
        delete.pop("ReturnValuesOnConditionCheckFailure")
        with unavailable_as_503("DynamoDB"):
            if idempotency_pk is None:
                self._client.delete_item(**delete)
                return
            self._client.transact_write_items(
                TransactItems=[
                    {"Delete": delete},
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": idempotency_pk}, "sk": {"S": "IDEMPOTENCY"}},
                        }
                    },
                ]
            )

    def list_for_owner(self, owner: str, *, status: JobStatus | None, cursor: str | None, limit: int) -> JobPage:
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :owner",
            "ExpressionAttributeValues": {":owner": {"S": f"OWNER#{owner}"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            params["ExpressionAttributeNames"] = {"#status": "status"}
            params["ExpressionAttributeValues"][":status"] = {"S": str(status)}
        scope = f"owner:{owner}"
        items, last = query_page(self._client, params, start=decode_cursor(cursor, scope) if cursor else None)
        return JobPage(jobs=[item_to_job(i) for i in items], cursor=encode_cursor(last, scope) if last else None)

    # --- the job item as the unit of work (one-chunk jobs) or as the assembler's lease ------------
    def claim(self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int) -> Job:
        """QUEUED -> PROCESSING, or take over PROCESSING work whose holder's lease has lapsed."""
        return self._lease(
            job_id,
            attempt=attempt,
            worker=worker,
            token=token,
            now=now,
            lease_seconds=lease_seconds,
            condition=f"attempt = :attempt AND (#status = :queued OR (#status = :processing AND {LEASE_FREE}))",
        )

    def begin_assembly(
        self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job:
        """Take the job's lease to assemble it: only once every chunk is done, and only by one worker at a time."""
        return self._lease(
            job_id,
            attempt=attempt,
            worker=worker,
            token=token,
            now=now,
            lease_seconds=lease_seconds,
            condition=f"attempt = :attempt AND #status = :processing AND chunks_done = chunks_total AND {LEASE_FREE}",
        )

    def _lease(self, job_id, *, attempt, worker, token, now, lease_seconds, condition) -> Job:
        return item_to_job(
            take_lease(
                self._client,
                self._table,
                job_key(job_id),
                index=("JOB", job_id),
                condition=condition,
                attempt=attempt,
                worker=worker,
                token=token,
                now=now,
                lease_seconds=lease_seconds,
            )
        )

    def start(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        """A chunk of a multi-chunk job starts: the job becomes PROCESSING (if it was QUEUED) and is returned.

        While its chunks run the job leaves the sweeper's index: its task items are indexed one by one,
        and the assembly lease puts the job back in it.
        """
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET #status = :processing, started_at = if_not_exists(started_at, :now), updated_at = :now"
                " REMOVE gsi2pk, gsi2sk",
                condition="attempt = :attempt AND #status IN (:queued, :processing)",
                values={
                    ":processing": JobStatus.PROCESSING,
                    ":queued": JobStatus.QUEUED,
                    ":now": iso(now),
                    ":attempt": attempt,
                },
            )
        )

    def overdue(self, index_key: str, *, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Items of the sparse gsi2 partition `index_key` (e.g. `TASK#PROCESSING`) due before `now`."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.query(
                TableName=self._table,
                IndexName="gsi2",
                KeyConditionExpression="gsi2pk = :key AND gsi2sk < :now",
                ExpressionAttributeValues={":key": {"S": index_key}, ":now": {"S": iso(now)}},
                Limit=limit,
            )
        return [deserialize(i) for i in resp.get("Items", [])]

    def postpone(self, item: dict[str, Any], *, until: datetime) -> bool:
        """Move an overdue item's due time; False if someone else moved it (or its state) first."""
        key = {"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}}
        try:
            conditional_update(
                self._client,
                self._table,
                key,
                "SET gsi2sk = :next",
                condition="gsi2pk = :key AND gsi2sk = :due",
                values={
                    ":next": f"{iso(until)}#{item['gsi2sk'].split('#', 1)[1]}",
                    ":key": item["gsi2pk"],
                    ":due": item["gsi2sk"],
                },
            )
        except JobStateConflict:
            return False
        return True

    def record_frame(
        self, job_id: str, *, token: str, frames_done: int, result: FrameResult, now: datetime, lease_until: datetime
    ) -> Job:
        """One more frame of a one-chunk job is stored (renewing the lease); fails once the job is cancelled
        or the lease is lost."""
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET frames_done = :next, #results = list_append(#results, :result), updated_at = :now,"
                " lease_expires_at = :lease, gsi2sk = :gsi2sk",
                condition=f"{HOLDS_LEASE} AND frames_done = :done",
                values={
                    ":next": frames_done + 1,
                    ":done": frames_done,
                    ":result": [result_to_map(result)],
                    ":now": iso(now),
                    ":token": token,
                    ":processing": JobStatus.PROCESSING,
                    ":lease": seconds(lease_until),
                    ":gsi2sk": f"{iso(lease_until)}#{job_id}",
                },
            )
        )

    def renew_lease(self, job_id: str, *, token: str, until: datetime) -> None:
        """Keep holding a one-chunk job (or its assembly) while a long frame renders."""
        conditional_update(
            self._client,
            self._table,
            job_key(job_id),
            "SET lease_expires_at = :lease, gsi2sk = :gsi2sk",
            condition=HOLDS_LEASE,
            values={
                ":lease": seconds(until),
                ":gsi2sk": f"{iso(until)}#{job_id}",
                ":token": token,
                ":processing": JobStatus.PROCESSING,
            },
        )

    def complete(
        self,
        job_id: str,
        *,
        token: str,
        results: tuple[FrameResult, ...] | None,
        has_preview: bool,
        now: datetime,
        expires_at: datetime,
    ) -> Job:
        """PROCESSING -> COMPLETED by the holder of the job's lease; `results` replaces the item's list if given."""
        values: dict[str, Any] = {
            ":completed": JobStatus.COMPLETED,
            ":now": iso(now),
            ":ttl": epoch(expires_at),
            ":token": token,
            ":processing": JobStatus.PROCESSING,
            ":preview": has_preview,
        }
        extra = ""
        if results is not None:
            extra = ", #results = :results, frames_done = :done, chunks_done = chunks_total"
            values[":results"] = [result_to_map(r) for r in results]
            values[":done"] = len(results)
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET #status = :completed, finished_at = :now, updated_at = :now, expires_at = :ttl,"
                f" has_preview = :preview{extra} REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk, #error",
                condition=HOLDS_LEASE,
                values=values,
            )
        )

    def release(self, job_id: str, *, token: str, now: datetime, error: str | None = None) -> Job:
        """Lapse the lease so the next message claims the job at once: after a failed render (counted, with
        its error) or at a worker's shutdown (no error)."""
        failure = ", render_failures = render_failures + :one, #error = :error" if error is not None else ""
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET updated_at = :now, lease_expires_at = :lapsed, gsi2sk = :gsi2sk{failure} REMOVE lease_token",
                condition=HOLDS_LEASE,
                values={
                    ":one": 1,
                    ":error": (error or "")[:1000],
                    ":now": iso(now),
                    ":lapsed": 0,
                    ":gsi2sk": f"{iso(now)}#{job_id}",
                    ":token": token,
                    ":processing": JobStatus.PROCESSING,
                },
            )
        )

    def fail(self, job_id: str, *, token: str, error: str, now: datetime, expires_at: datetime) -> Job:
        """PROCESSING -> FAILED by the lease holder of a one-chunk job."""
        return self._finish(
            job_id,
            JobStatus.FAILED,
            condition=HOLDS_LEASE,
            error=error,
            now=now,
            expires_at=expires_at,
            values={":token": token, ":failures": 1},
        )

    def fail_unfinished(self, job_id: str, *, attempt: int, error: str, now: datetime, expires_at: datetime) -> Job:
        """QUEUED | PROCESSING -> FAILED in this attempt, whoever holds it: a chunk used up its attempts, or
        its message was dead-lettered."""
        return self._finish(
            job_id,
            JobStatus.FAILED,
            condition="#status IN (:queued, :processing) AND attempt = :attempt",
            error=error,
            now=now,
            expires_at=expires_at,
            values={":attempt": attempt, ":failures": 0, ":queued": JobStatus.QUEUED},
        )

    def _finish(self, job_id, status, *, condition, error, now, expires_at, values) -> Job:
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET #status = :final, #error = :error, finished_at = :now, updated_at = :now, expires_at = :ttl,"
                " render_failures = render_failures + :failures REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk",
                condition=condition,
                values={
                    ":final": status,
                    ":error": error[:1000],
                    ":now": iso(now),
                    ":ttl": epoch(expires_at),
                    ":processing": JobStatus.PROCESSING,
                    **values,
                },
            )
        )

    # --- control: cancel, retry, fan-out progress --------------------------------------------------
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
    ) -> Job:
        """A plain conditional state change (cancel requests, CANCELLING -> CANCELLED)."""
        if not can_transition(source, target):
            raise ValueError(f"{source} -> {target} is not a transition of the job state machine")
        condition = "#status = :source AND attempt = :attempt"
        values: dict[str, Any] = {":source": source, ":target": target, ":attempt": attempt, ":now": iso(now)}
        if when_lease_free:
            condition += f" AND {LEASE_FREE}"
            values[":epoch"] = seconds(now)
        if target in (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
            expression = (
                "SET #status = :target, updated_at = :now, finished_at = :now, expires_at = :ttl"
                " REMOVE gsi2pk, gsi2sk, lease_token, lease_expires_at"
            )
            values[":ttl"] = epoch(expires_at or now)
        else:
            expression = "SET #status = :target, updated_at = :now, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
            values.update({f":{k}": v for k, v in active_index("JOB", target, now, job_id).items()})
        return item_to_job(
            conditional_update(
                self._client, self._table, job_key(job_id), expression, condition=condition, values=values
            )
        )

    def stop(self, job_id: str, *, token: str, now: datetime, expires_at: datetime) -> Job:
        """The lease holder of a one-chunk job saw CANCELLING and stopped: CANCELLING -> CANCELLED."""
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET #status = :cancelled, updated_at = :now, finished_at = :now, expires_at = :ttl"
                " REMOVE gsi2pk, gsi2sk, lease_token, lease_expires_at",
                condition="#status = :cancelling AND lease_token = :token",
                values={
                    ":cancelled": JobStatus.CANCELLED,
                    ":cancelling": JobStatus.CANCELLING,
                    ":token": token,
                    ":now": iso(now),
                    ":ttl": epoch(expires_at),
                },
            )
        )

    def retry(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        """FAILED | CANCELLED -> QUEUED as attempt + 1; finished chunks and frames are kept."""
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                "SET #status = :queued, attempt = :next, updated_at = :now, fanout_sent = :none,"
                " render_failures = :zero, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
                " REMOVE #error, finished_at, expires_at, lease_token, lease_expires_at",
                condition="#status IN (:failed, :cancelled) AND attempt = :attempt",
                values={
                    ":queued": JobStatus.QUEUED,
                    ":failed": JobStatus.FAILED,
                    ":cancelled": JobStatus.CANCELLED,
                    ":attempt": attempt,
                    ":next": attempt + 1,
                    ":now": iso(now),
                    ":none": -1,
                    ":zero": 0,
                    **{f":{k}": v for k, v in active_index("JOB", JobStatus.QUEUED, now, job_id).items()},
                },
            )
        )

    def advance_fanout(self, job_id: str, *, attempt: int, sent_before: int, sent_now: int) -> None:
        conditional_update(
            self._client,
            self._table,
            job_key(job_id),
            "SET fanout_sent = :now_sent",
            condition="attempt = :attempt AND fanout_sent = :before AND #status IN (:queued, :processing)",
            values={
                ":attempt": attempt,
                ":before": sent_before,
                ":now_sent": sent_now,
                ":queued": JobStatus.QUEUED,
                ":processing": JobStatus.PROCESSING,
            },
        )


class IdempotencyTaken(Exception):
    """The idempotency record exists (and has not expired): the caller looks up the original job."""
