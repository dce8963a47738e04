"""DynamoDB persistence of jobs and API keys: items <-> domain objects, conditional writes -> domain errors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from django.core import signing

from .aws import error_code, unavailable_as_503
from .domain import FrameResult, Job, JobStatus, OutputFormat, Priority, Scene
from .errors import InvalidCursor, JobAlreadyExists, JobNotFound, JobStateConflict

_ser = TypeSerializer()
_de = TypeDeserializer()
CURSOR_SALT = "jobs.repository.cursor"


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: str | None


class JobRepository(Protocol):
    """What services need from job storage; `DynamoJobRepository` and the tests' fake implement it."""

    def add(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job: ...
    def delete_queued(self, job_id: str) -> None: ...
    def list_for_owner(self, owner: str, *, status: JobStatus | None, cursor: str | None, limit: int) -> JobPage: ...
    def claim(
        self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job: ...
    def record_progress(self, job_id: str, *, token: str, frames_done: int, now: datetime) -> None: ...
    def complete(
        self,
        job_id: str,
        *,
        token: str,
        frames_done: int,
        result: FrameResult | None,
        now: datetime,
        expires_at: datetime,
    ) -> Job: ...
    def release_after_failure(self, job_id: str, *, token: str, error: str, now: datetime) -> Job: ...
    def fail(self, job_id: str, *, token: str, error: str, now: datetime, expires_at: datetime) -> Job: ...


class ApiKeyRepository(Protocol):
    def add(self, *, key_hash: str, owner: str, now: datetime) -> None: ...
    def owner_for(self, key_hash: str) -> str | None: ...


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _seconds(value: datetime) -> Decimal:
    """Epoch seconds to the millisecond, as DynamoDB numbers want (no floats)."""
    return Decimal(f"{value.timestamp():.3f}")


def _job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def _active_index(status: JobStatus, due: datetime, job_id: str) -> dict[str, str]:
    """The sparse gsi2 attributes: present only while work could get stuck, sorted by when it is due."""
    return {"gsi2pk": f"STATUS#{status}", "gsi2sk": f"{_iso(due)}#{job_id}"}


def job_to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"JOB#{job.id}",
        "sk": "JOB",
        "gsi1pk": f"OWNER#{job.owner}",
        "gsi1sk": f"{_iso(job.created_at)}#{job.id}",
        "id": job.id,
        "owner": job.owner,
        "scene": job.scene.name,
        "width": job.scene.width,
        "height": job.scene.height,
        "output_format": str(job.scene.output_format),
        "samples": job.scene.samples,
        "frame_start": job.frame_start,
        "frame_end": job.frame_end,
        "priority": str(job.priority),
        "status": str(job.status),
        "attempt": job.attempt,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "frames_done": job.frames_done,
        "render_failures": job.render_failures,
    }
    item.update(_active_index(job.status, job.created_at, job.id))
    return item


def item_to_job(item: dict[str, Any]) -> Job:
    result = item.get("result")
    lease = item.get("lease_expires_at")
    return Job(
        id=item["id"],
        owner=item["owner"],
        scene=Scene(
            name=item["scene"],
            width=int(item["width"]),
            height=int(item["height"]),
            output_format=OutputFormat(item["output_format"]),
            samples=int(item["samples"]),
        ),
        frame_start=int(item["frame_start"]),
        frame_end=int(item["frame_end"]),
        priority=Priority(item["priority"]),
        status=JobStatus(item["status"]),
        attempt=int(item["attempt"]),
        created_at=_dt(item["created_at"]),
        updated_at=_dt(item["updated_at"]),
        started_at=_dt(item.get("started_at")),
        finished_at=_dt(item.get("finished_at")),
        error=item.get("error"),
        frames_done=int(item.get("frames_done", 0)),
        render_failures=int(item.get("render_failures", 0)),
        worker=item.get("worker"),
        lease_token=item.get("lease_token"),
        lease_expires_at=datetime.fromtimestamp(float(lease), UTC) if lease else None,
        result=FrameResult(
            frame=int(result["frame"]),
            key=result["key"],
            size=int(result["size"]),
            sha256=result["sha256"],
            content_type=result["content_type"],
        )
        if result
        else None,
    )


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


class DynamoJobRepository:
    """Jobs in the one table of DESIGN.md; every state change is a conditional UpdateItem."""

    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, job: Job) -> None:
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.put_item(
                    TableName=self._table,
                    Item=_serialize(job_to_item(job)),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise JobAlreadyExists() from exc
            raise

    def get(self, job_id: str) -> Job:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=_job_key(job_id), ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound()
        return item_to_job(_deserialize(resp["Item"]))

    def delete_queued(self, job_id: str) -> None:
        self._update(
            job_id,
            None,
            delete=True,
            condition="#status = :queued",
            values={":queued": JobStatus.QUEUED},
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
        if cursor:
            params["ExclusiveStartKey"] = _decode_cursor(cursor, owner)
        with unavailable_as_503("DynamoDB"):
            resp = self._client.query(**params)
        jobs = [item_to_job(_deserialize(i)) for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return JobPage(jobs=jobs, cursor=_encode_cursor(last, owner) if last else None)

    def claim(self, job_id: str, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int) -> Job:
        """QUEUED -> PROCESSING, or take over PROCESSING work whose holder's lease has lapsed."""
        expires = now + timedelta(seconds=lease_seconds)
        return self._update(
            job_id,
            "SET #status = :processing, worker = :worker, lease_token = :token, lease_expires_at = :lease,"
            " started_at = if_not_exists(started_at, :now), updated_at = :now,"
            " gsi2pk = :gsi2pk, gsi2sk = :gsi2sk",
            condition="attempt = :attempt AND (#status = :queued OR"
            " (#status = :processing AND (attribute_not_exists(lease_expires_at) OR lease_expires_at < :epoch)))",
            values={
                ":processing": JobStatus.PROCESSING,
                ":queued": JobStatus.QUEUED,
                ":worker": worker,
                ":token": token,
                ":lease": _seconds(expires),
                ":epoch": _seconds(now),
                ":now": _iso(now),
                ":attempt": attempt,
                **{f":{k}": v for k, v in _active_index(JobStatus.PROCESSING, expires, job_id).items()},
            },
        )

    def record_progress(self, job_id: str, *, token: str, frames_done: int, now: datetime) -> None:
        self._update(
            job_id,
            "SET frames_done = :done, updated_at = :now",
            condition=_HOLDS_LEASE,
            values={":done": frames_done, ":now": _iso(now), ":token": token, ":processing": JobStatus.PROCESSING},
        )

    def complete(
        self,
        job_id: str,
        *,
        token: str,
        frames_done: int,
        result: FrameResult | None,
        now: datetime,
        expires_at: datetime,
    ) -> Job:
        values: dict[str, Any] = {
            ":completed": JobStatus.COMPLETED,
            ":now": _iso(now),
            ":ttl": _epoch(expires_at),
            ":token": token,
            ":processing": JobStatus.PROCESSING,
            ":done": frames_done,
        }
        set_result = ""
        if result is not None:
            set_result = ", #result = :result"
            values[":result"] = {
                "frame": result.frame,
                "key": result.key,
                "size": result.size,
                "sha256": result.sha256,
                "content_type": result.content_type,
            }
        return self._update(
            job_id,
            "SET #status = :completed, finished_at = :now, updated_at = :now, expires_at = :ttl, frames_done = :done"
            f"{set_result} REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk, #error",
            condition=_HOLDS_LEASE,
            values=values,
        )

    def release_after_failure(self, job_id: str, *, token: str, error: str, now: datetime) -> Job:
        """Record a failed render and lapse the lease so the retry message can claim the job again."""
        return self._update(
            job_id,
            "SET render_failures = render_failures + :one, #error = :error, updated_at = :now,"
            " lease_expires_at = :lapsed, gsi2sk = :gsi2sk REMOVE lease_token",
            condition=_HOLDS_LEASE,
            values={
                ":one": 1,
                ":error": error[:1000],
                ":now": _iso(now),
                ":lapsed": 0,
                ":gsi2sk": f"{_iso(now)}#{job_id}",
                ":token": token,
                ":processing": JobStatus.PROCESSING,
            },
        )

    def fail(self, job_id: str, *, token: str, error: str, now: datetime, expires_at: datetime) -> Job:
        return self._update(
            job_id,
            "SET #status = :failed, #error = :error, finished_at = :now, updated_at = :now, expires_at = :ttl,"
            " render_failures = render_failures + :one REMOVE lease_token, lease_expires_at, gsi2pk, gsi2sk",
            condition=_HOLDS_LEASE,
            values={
                ":failed": JobStatus.FAILED,
                ":error": error[:1000],
                ":now": _iso(now),
                ":ttl": _epoch(expires_at),
                ":one": 1,
                ":token": token,
                ":processing": JobStatus.PROCESSING,
            },
        )

    def _update(
        self, job_id: str, expression: str | None, *, condition: str, values: dict[str, Any], delete: bool = False
    ) -> Job | None:
        names = {n: n[1:] for n in ("#status", "#error", "#result") if n in f"{expression} {condition}"}
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": _job_key(job_id),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {k: _ser.serialize(v) for k, v in values.items()},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if names:
            params["ExpressionAttributeNames"] = names
        try:
            with unavailable_as_503("DynamoDB"):
                if delete:
                    self._client.delete_item(**params)
                    return None
                resp = self._client.update_item(UpdateExpression=expression, ReturnValues="ALL_NEW", **params)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            if old is None:
                raise JobNotFound() from exc
            current = _deserialize(old)
            raise JobStateConflict(
                f"Job is {current.get('status')} (attempt {current.get('attempt')}).",
                details={"status": current.get("status"), "attempt": int(current.get("attempt", 0))},
            ) from exc
        return item_to_job(_deserialize(resp["Attributes"]))


_HOLDS_LEASE = "#status = :processing AND lease_token = :token"


def _encode_cursor(key: dict[str, Any], owner: str) -> str:
    payload = json.dumps({"o": owner, "k": key}, separators=(",", ":"))
    return signing.dumps(base64.urlsafe_b64encode(payload.encode()).decode(), salt=CURSOR_SALT, compress=True)


def _decode_cursor(cursor: str, owner: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(signing.loads(cursor, salt=CURSOR_SALT)))
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor() from exc
    if payload.get("o") != owner or not isinstance(payload.get("k"), dict):
        raise InvalidCursor()
    return payload["k"]


class DynamoApiKeyRepository:
    """API keys by the SHA-256 of the key; the key itself is never stored."""

    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, *, key_hash: str, owner: str, now: datetime) -> None:
        with unavailable_as_503("DynamoDB"):
            self._client.put_item(
                TableName=self._table,
                Item=_serialize({"pk": f"APIKEY#{key_hash}", "sk": "APIKEY", "owner": owner, "created_at": _iso(now)}),
                ConditionExpression="attribute_not_exists(pk)",
            )

    def owner_for(self, key_hash: str) -> str | None:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"APIKEY#{key_hash}"}, "sk": {"S": "APIKEY"}}
            )
        item = resp.get("Item")
        if not item or "revoked_at" in item:
            return None
        return item["owner"]["S"]
