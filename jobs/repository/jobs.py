"""Job items in DynamoDB: create (with an idempotency record), read, list, and every job-level transition.

Which states a write accepts comes from the domain's state machine (`sources(target)`); chunk work
(claims, frames, leases) is in chunks.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import FINAL_STATES, MAX_WARNING, Failure, Job, JobStatus, can_transition, sources
from jobs.errors import (
    IdempotencyTaken,
    JobAlreadyExists,
    JobNotFound,
    JobNotRunning,
    OwnerLimitReached,
    ServiceUnavailable,
)
from jobs.ports.values import IdempotencyRecord, JobPage, Overdue
from jobs.repository import frames, indexes
from jobs.repository import partitions as P
from jobs.repository.chunks import DynamoChunkRepository
from jobs.repository.dynamo import (
    FINISHED,
    LEASE_FREE,
    TAKE_LEASE,
    conditional_update,
    conflict_from,
    failure_values,
    lease_values,
    set_status,
    state_in,
    update_params,
)
from jobs.repository.items import (
    deserialize,
    due_index,
    epoch,
    idempotency_key,
    idempotency_to_item,
    iso,
    item_to_idempotency,
    item_to_job,
    job_key,
    job_to_item,
    seconds,
    serialize,
)
from jobs.repository.steps import DynamoStepRepository
from jobs.repository.usage import ALLOWANCE, OwnerLimitPassed, give_back_usage, reserve_usage, settle_usage

RECOUNT_TRIES = 5  # a recount that a running chunk's write keeps overtaking reads and tries again


class DynamoJobRepository:
    """Jobs in the one table (docs/ARCHITECTURE.md); every state change is a conditional write."""

    def __init__(
        self,
        *,
        client,
        table_name: str,
        usage_block_frames: int = 0,
        usage_hold_seconds: float = 0.0,
        filter_reads: int | None = None,
    ):
        self._client = client
        self._table = table_name
        self._filter_reads = filter_reads  # a status-filtered listing's entries read per request (indexes.py)
        # An API process reserves an owner's frames ahead in blocks of up to this many (usage.py FrameAllowance)
        self._usage_block = usage_block_frames
        self._usage_hold = usage_hold_seconds
        self.chunks = DynamoChunkRepository(client=client, table_name=table_name)
        self.steps = DynamoStepRepository(client=client, table_name=table_name)

    # --- create, read, list ----------------------------------------------------------------------
    def add(self, job: Job, *, idempotency: IdempotencyRecord | None = None) -> None:
        """Store a new job. With an idempotency record, the record first (IdempotencyTaken when a live one holds
        its name: then nothing is written), then the job: two conditional puts, not one transaction (which
        bills each item twice). A record whose job never came (its request died between the two, or its job
        was withdrawn) is finished by the next request with its key (services/submit.py `_replay`)."""
        if idempotency is not None:
            try:
                with unavailable_as_503("DynamoDB"):
                    self._client.put_item(**self._idempotency_put(idempotency))
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise IdempotencyTaken() from exc
                raise
        put = {
            "TableName": self._table,
            "Item": serialize(job_to_item(job)),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.put_item(**put)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                if exc.response.get("Item") == put["Item"]:
                    return  # botocore retried a put whose first try applied: the job is ours
                raise JobAlreadyExists() from exc
            raise

    def _idempotency_put(self, record: IdempotencyRecord) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": serialize(idempotency_to_item(record)),
            # A record past its expiry counts as absent even before DynamoDB's TTL deletes it.
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
            "ExpressionAttributeValues": {":now": {"N": str(epoch(record.created_at))}},
        }

    def idempotency_record(self, name: str) -> IdempotencyRecord | None:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=idempotency_key(name), ConsistentRead=True)
        return item_to_idempotency(deserialize(resp["Item"])) if "Item" in resp else None

    def get(self, job_id: str) -> Job:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=job_key(job_id), ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound()
        return item_to_job(deserialize(resp["Item"]))

    def recount(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        """The job's counts of frames and chunks done, set again from its chunk items (repository/frames.py):
        for the chunks kept from earlier attempts, and for an audit. Safe beside running chunks: a count that
        changed between the reads and the write is read again."""
        for _ in range(RECOUNT_TRIES):
            job = self.get(job_id)
            if job.attempt != attempt or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
                raise JobNotRunning(str(job.status))
            chunks = self.chunks.list(job_id)
            totals = (sum(c.frames_done for c in chunks), sum(c.status is JobStatus.COMPLETED for c in chunks))
            if totals == (job.frames_done, job.chunks_done):
                return job
            seen = (job.frames_done, job.chunks_done)
            if frames.recount(self._client, self._table, job_id, attempt=attempt, seen=seen, now=now, totals=totals):
                return job.replace(frames_done=totals[0], chunks_done=totals[1])
        raise ServiceUnavailable("The job's counts keep changing; try again.")

    def note_warnings(self, job_id: str, warnings: list[str]) -> None:
        """Add warnings to the job (a set: noting the same ones again changes nothing)."""
        if not warnings:
            return
        with unavailable_as_503("DynamoDB"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=job_key(job_id),
                    UpdateExpression="ADD warnings :w",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":w": {"SS": [w[:MAX_WARNING] for w in warnings]}},
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                raise JobNotFound() from None

    def withdraw(self, job_id: str) -> None:
        """Delete a job that was never enqueued (still QUEUED). Its idempotency record stays: the client's
        retry with the key finishes the job under the same id."""
        delete = update_params(self._table, job_key(job_id), None, "#status = :st_queued", {})
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.delete_item(**delete)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise conflict_from(exc.response.get("Item")) from None

    def list_for_owner(self, owner: str, *, status: JobStatus | None, cursor: str | None, limit: int | None) -> JobPage:
        """An owner's jobs, newest first (indexes.py: gsi1, filtered by state if asked)."""
        return indexes.list_for_owner(
            self._client,
            self._table,
            owner,
            status=status,
            cursor=cursor,
            limit=limit,
            filter_reads=self._filter_reads,
        )

    # --- the job item as the assembler's lease ---------------------------------------------------
    def begin_assembly(
        self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job:
        """Take the job's lease to assemble it: only once every chunk is done, only by one worker at a time, and
        not again once the assembly handed the job to its steps in this attempt."""
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                TAKE_LEASE,
                condition="attempt = :attempt AND #status = :st_processing AND chunks_done >= chunks_total"
                f" AND {LEASE_FREE} AND (attribute_not_exists(steps_attempt) OR steps_attempt < :attempt)",
                values=lease_values(worker=worker, token=token, now=now, lease_seconds=lease_seconds, attempt=attempt),
            )
        )

    def release_assembly(self, job_id: str, *, token: str, now: datetime) -> None:
        """Give up the assembly lease (the count had run ahead of the chunks): the last chunk's count takes it."""
        conditional_update(
            self._client,
            self._table,
            job_key(job_id),
            "SET updated_at = :now REMOVE lease_token, lease_expires_at",
            condition="#status = :st_processing AND lease_token = :token",
            values={":now": iso(now), ":token": token},
            returns=False,
        )

    def reserve_frames(self, owner: str, frames: int, *, limit: int) -> None:
        """Count a job's frames in the owner's usage, unless that would pass `limit` (0: no limit)."""
        try:
            ALLOWANCE.take(
                self._client,
                self._table,
                owner,
                frames,
                limit=limit,
                block=self._usage_block,
                hold_seconds=self._usage_hold,
            )
        except OwnerLimitPassed as exc:
            raise OwnerLimitReached(
                f"{exc.frames_active} frames are waiting or rendering for this owner; {frames} more would pass the"
                f" limit of {limit}. Wait for some to finish, or cancel some.",
                details={"frames_active": exc.frames_active, "frames_requested": frames, "limit": limit},
            ) from exc

    def release_frames(self, owner: str, frames: int) -> None:
        """Give back frames reserved for a job that was not accepted after all."""
        give_back_usage(self._client, self._table, owner, frames, "(not accepted)")

    def complete_assembly(
        self, job_id: str, *, token: str, has_preview: bool, now: datetime, expires_at: datetime
    ) -> Job:
        """PROCESSING -> COMPLETED by the holder of the assembly lease."""
        status, values = set_status(JobStatus.COMPLETED)
        return self._final(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET {status}, has_preview = :preview, {FINISHED}, #error, error_code",
                condition="#status = :st_processing AND lease_token = :token",
                values={
                    **values,
                    ":now": iso(now),
                    ":ttl": epoch(expires_at),
                    ":token": token,
                    ":preview": has_preview,
                },
            )
        )

    def fail(self, job_id: str, *, attempt: int, failure: Failure, now: datetime, expires_at: datetime) -> Job:
        """-> FAILED in this attempt, whoever holds it: a chunk used up its attempts, crashed its workers, or
        its message was dead-lettered."""
        status, values = set_status(JobStatus.FAILED)
        return self._final(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET {status}, #error = :error, error_code = :error_code, {FINISHED}",
                condition=f"{state_in(sources(JobStatus.FAILED))} AND attempt = :attempt",
                values={
                    **values,
                    **failure_values(failure),
                    ":attempt": attempt,
                    ":now": iso(now),
                    ":ttl": epoch(expires_at),
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
        status, values = set_status(target)
        condition = "#status = :source AND attempt = :attempt"
        values.update({":source": source, ":attempt": attempt, ":now": iso(now)})
        if when_lease_free:
            condition += f" AND {LEASE_FREE}"
            values[":epoch"] = seconds(now)
        if target in (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
            expression = f"SET {status}, {FINISHED}"
            values[":ttl"] = epoch(expires_at or now)
        else:
            expression = f"SET {status}, updated_at = :now, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
            values.update({f":{k}": v for k, v in due_index(P.JOB_KIND, now, job_id).items()})
        item = conditional_update(
            self._client, self._table, job_key(job_id), expression, condition=condition, values=values
        )
        return self._final(item) if target in FINAL_STATES else item_to_job(item)

    def retry(self, job_id: str, *, attempt: int, now: datetime) -> Job:
        """FAILED | CANCELLED -> QUEUED as attempt + 1; finished chunks and frames are kept, and the worker-seconds
        the job's end charged (`charged_seconds`: its next end charges only what it adds)."""
        status, values = set_status(JobStatus.QUEUED)
        return self._reopened(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET {status}, attempt = :next, updated_at = :now, fanout_sent = :none,"
                " render_failures = :zero, crashes = :zero, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk,"
                " charged_seconds = if_not_exists(worker_seconds, :zero)"
                " REMOVE #error, error_code, finished_at, expires_at, lease_token, lease_expires_at",
                condition=f"{state_in(sources(JobStatus.QUEUED))} AND attempt = :attempt",
                values={
                    **values,
                    ":attempt": attempt,
                    ":next": attempt + 1,
                    ":now": iso(now),
                    ":none": -1,
                    ":zero": 0,
                    **{f":{k}": v for k, v in due_index(P.JOB_KIND, now, job_id).items()},
                },
            )
        )

    def advance_fanout(self, job_id: str, *, attempt: int, sent_before: int, sent_now: int) -> None:
        conditional_update(
            self._client,
            self._table,
            job_key(job_id),
            "SET fanout_sent = :now_sent",
            condition="attempt = :attempt AND fanout_sent = :before AND #status IN (:st_queued, :st_processing)",
            values={":attempt": attempt, ":before": sent_before, ":now_sent": sent_now},
        )

    def _final(self, item: dict[str, Any]) -> Job:
        settle_usage(self._client, self._table, item)
        return item_to_job(item)

    def _reopened(self, item: dict[str, Any]) -> Job:
        """A retried job's frames count in its owner's usage again (a retry is not refused for the limit)."""
        job = item_to_job(item)
        # exactly its frames, at once: frames held ahead are for submits, each taken under the limit's check
        reserve_usage(self._client, self._table, job.owner, job.frames_total, limit=0)
        return job

    # --- the sweeper's index (indexes.py) ---------------------------------------------------------
    def overdue(self, kind: str, *, before: datetime, limit: int) -> list[Overdue]:
        return indexes.overdue(self._client, self._table, kind, before=before, limit=limit)

    def advance(self, passed: list[Overdue]) -> None:
        indexes.advance(self._client, self._table, passed)

    def postpone(self, work: Overdue, *, until: datetime) -> bool:
        return indexes.postpone(self._client, self._table, work, until=until)
