"""Task items (one per chunk of a multi-chunk job) in the job's partition, and their transitions."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_as_503
from ..domain import FrameResult, Job, JobStatus, Task
from ..errors import JobNotRunning, JobStateConflict, LeaseLost
from .cursor import decode_cursor, encode_cursor
from .dynamo import LEASE_FREE, cancellation_reasons, conditional_update, query_page, take_lease, update_params
from .items import (
    active_index,
    decimal,
    deserialize,
    iso,
    item_to_task,
    job_key,
    result_to_map,
    seconds,
    serialize,
    task_key,
    task_to_item,
)
from .types import TaskPage

log = logging.getLogger(__name__)
TRANSACTION_LIMIT = 100
TASK_HOLDS_LEASE = "#status = :processing AND lease_token = :token AND attempt = :attempt"


class DynamoTaskMixin:
    """Task operations of DynamoJobRepository (kept apart to keep each module small)."""

    _client: Any
    _table: str

    def put_tasks(self, job: Job, tasks: list[Task]) -> None:
        """Create task items, 100 to a transaction; a batch that already exists (a re-run) is skipped whole."""
        for start in range(0, len(tasks), TRANSACTION_LIMIT):
            batch = tasks[start : start + TRANSACTION_LIMIT]
            items = [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": serialize(task_to_item(t, job.created_at)),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
                for t in batch
            ]
            try:
                with unavailable_as_503("DynamoDB"):
                    self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                reasons = {r.get("Code") for r in cancellation_reasons(exc)}
                if error_code(exc) != "TransactionCanceledException" or not reasons <= {
                    "ConditionalCheckFailed",
                    "None",
                }:
                    raise
                log.info("job %s: tasks %d.. exist already (fan-out re-run)", job.id, batch[0].index)

    def claim_task(
        self, job_id: str, index: int, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Task:
        return item_to_task(
            take_lease(
                self._client,
                self._table,
                task_key(job_id, index),
                index=("TASK", f"{job_id}#{index:05d}"),
                condition=f"attempt = :attempt AND (#status = :queued OR (#status = :processing AND {LEASE_FREE}))",
                attempt=attempt,
                worker=worker,
                token=token,
                now=now,
                lease_seconds=lease_seconds,
            )
        )

    def record_task_frame(
        self,
        task: Task,
        *,
        token: str,
        result: FrameResult,
        render_seconds: float,
        now: datetime,
        lease_until: datetime,
    ) -> bool:
        """Store one frame's result on the task and count it on the job, atomically; True if the chunk is done.

        The job side requires the job to still be PROCESSING in this attempt, so cancel and failure stop
        the chunk at the next frame (JobNotRunning); the task side requires the lease (LeaseLost).
        """
        last = task.frames_done + 1 == len(task.frames)
        task_set = (
            "SET frames_done = :next, #results = list_append(#results, :result),"
            " render_seconds = render_seconds + :secs"
        )
        values = {
            ":next": task.frames_done + 1,
            ":done": task.frames_done,
            ":result": [result_to_map(result)],
            ":secs": decimal(render_seconds),
            ":token": token,
            ":attempt": task.attempt,
            ":processing": JobStatus.PROCESSING,
        }
        task_expression = task_set
        if not last:
            task_expression += ", lease_expires_at = :lease, gsi2sk = :gsi2sk"
            values[":lease"] = seconds(lease_until)
            values[":gsi2sk"] = f"{iso(lease_until)}#{task.job_id}#{task.index:05d}"
        if last:
            task_expression += (
                ", #status = :completed, finished_at = :now REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk"
            )
            values[":completed"] = JobStatus.COMPLETED
            values[":now"] = iso(now)
        job_values = {
            ":one": 1,
            ":chunks": 1 if last else 0,
            ":now": iso(now),
            ":attempt": task.attempt,
            ":processing": JobStatus.PROCESSING,
        }
        task_update = update_params(
            self._table,
            task_key(task.job_id, task.index),
            task_expression,
            f"{TASK_HOLDS_LEASE} AND frames_done = :done",
            values,
        )
        job_update = update_params(
            self._table,
            job_key(task.job_id),
            "SET updated_at = :now ADD frames_done :one, chunks_done :chunks",
            "#status = :processing AND attempt = :attempt",
            job_values,
        )
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.transact_write_items(TransactItems=[{"Update": task_update}, {"Update": job_update}])
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            task_reason, job_reason = ([*cancellation_reasons(exc), {}, {}])[:2]
            if task_reason.get("Code") == "ConditionalCheckFailed":
                raise LeaseLost() from exc
            if job_reason.get("Code") == "ConditionalCheckFailed":
                status = deserialize(job_reason.get("Item", {})).get("status", "gone")
                raise JobNotRunning(status) from exc
            raise
        return last

    def renew_task_lease(self, task: Task, *, token: str, until: datetime) -> None:
        """Keep holding a chunk while a long frame renders; LeaseLost once it is no longer ours."""
        self._task_update(
            task,
            "SET lease_expires_at = :lease, gsi2sk = :gsi2sk",
            TASK_HOLDS_LEASE,
            {
                ":lease": seconds(until),
                ":gsi2sk": f"{iso(until)}#{task.job_id}#{task.index:05d}",
                ":token": token,
                ":attempt": task.attempt,
                ":processing": JobStatus.PROCESSING,
            },
        )

    def release_task(self, task: Task, *, token: str, now: datetime, error: str | None = None) -> Task:
        """Lapse the chunk's lease (after a failed render, counted with its error, or at shutdown)."""
        failure = ", render_failures = render_failures + :one, #error = :error" if error is not None else ""
        return self._task_update(
            task,
            f"SET lease_expires_at = :lapsed, gsi2sk = :gsi2sk{failure} REMOVE lease_token",
            TASK_HOLDS_LEASE,
            {
                ":one": 1,
                ":error": (error or "")[:1000],
                ":lapsed": 0,
                ":gsi2sk": f"{iso(now)}#{task.job_id}#{task.index:05d}",
                ":token": token,
                ":attempt": task.attempt,
                ":processing": JobStatus.PROCESSING,
            },
        )

    def end_task(self, task: Task, *, token: str, status: JobStatus, now: datetime, error: str | None = None) -> Task:
        """The lease holder ends its chunk as FAILED (attempts used up) or CANCELLED (the job stopped)."""
        values = {
            ":final": status,
            ":now": iso(now),
            ":token": token,
            ":attempt": task.attempt,
            ":processing": JobStatus.PROCESSING,
            ":failures": 1 if status is JobStatus.FAILED else 0,
        }
        expression = "SET #status = :final, finished_at = :now, render_failures = render_failures + :failures"
        if error:
            expression += ", #error = :error"
            values[":error"] = error[:1000]
        return self._task_update(
            task, expression + " REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk", TASK_HOLDS_LEASE, values
        )

    def fail_unfinished_task(self, job_id: str, index: int, *, attempt: int, error: str, now: datetime) -> None:
        """A dead-lettered chunk: QUEUED | PROCESSING -> FAILED in this attempt, whoever held it."""
        conditional_update(
            self._client,
            self._table,
            task_key(job_id, index),
            "SET #status = :failed, finished_at = :now, #error = :error"
            " REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk",
            condition="#status IN (:queued, :processing) AND attempt = :attempt",
            values={
                ":failed": JobStatus.FAILED,
                ":queued": JobStatus.QUEUED,
                ":processing": JobStatus.PROCESSING,
                ":attempt": attempt,
                ":now": iso(now),
                ":error": error[:1000],
            },
        )

    def drop_task(self, job_id: str, index: int, *, attempt: int, now: datetime) -> None:
        """A message of a stopped job arrived: its QUEUED task is CANCELLED without rendering (if still QUEUED)."""
        with contextlib.suppress(JobStateConflict):
            conditional_update(
                self._client,
                self._table,
                task_key(job_id, index),
                "SET #status = :cancelled, finished_at = :now REMOVE gsi2pk, gsi2sk",
                condition="#status = :queued AND attempt = :attempt",
                values={
                    ":cancelled": JobStatus.CANCELLED,
                    ":queued": JobStatus.QUEUED,
                    ":attempt": attempt,
                    ":now": iso(now),
                },
            )

    def requeue_task(self, task: Task, *, attempt: int, now: datetime) -> bool:
        """An unfinished task joins a retry as QUEUED in `attempt`; False if it is finished or already in it."""
        try:
            conditional_update(
                self._client,
                self._table,
                task_key(task.job_id, task.index),
                "SET #status = :queued, attempt = :attempt, render_failures = :zero, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
                " REMOVE lease_token, lease_expires_at, #error, finished_at",
                condition="#status <> :completed AND attempt < :attempt",
                values={
                    ":queued": JobStatus.QUEUED,
                    ":completed": JobStatus.COMPLETED,
                    ":attempt": attempt,
                    ":zero": 0,
                    **{
                        f":{k}": v
                        for k, v in active_index(
                            "TASK", JobStatus.QUEUED, now, f"{task.job_id}#{task.index:05d}"
                        ).items()
                    },
                },
            )
        except JobStateConflict:
            return False
        return True

    def tasks(self, job_id: str) -> list[Task]:
        """Every task of a job, in index order (one Query page per ~1 MB)."""
        out: list[Task] = []
        start = None
        while True:
            items, start = query_page(self._client, self._tasks_query(job_id, limit=1000), start=start)
            out += [item_to_task(i) for i in items]
            if start is None:
                return out

    def list_tasks(self, job_id: str, *, cursor: str | None, limit: int) -> TaskPage:
        scope = f"tasks:{job_id}"
        start = decode_cursor(cursor, scope) if cursor else None
        items, last = query_page(self._client, self._tasks_query(job_id, limit=limit), start=start)
        return TaskPage(tasks=[item_to_task(i) for i in items], cursor=encode_cursor(last, scope) if last else None)

    def _tasks_query(self, job_id: str, *, limit: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :task)",
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}, ":task": {"S": "TASK#"}},
            "ConsistentRead": True,
            "Limit": limit,
        }

    def _task_update(self, task: Task, expression: str, condition: str, values: dict) -> Task:
        try:
            return item_to_task(
                conditional_update(
                    self._client,
                    self._table,
                    task_key(task.job_id, task.index),
                    expression,
                    condition=condition,
                    values=values,
                )
            )
        except JobStateConflict as exc:
            raise LeaseLost(exc.message) from exc
