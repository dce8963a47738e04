"""Shared plumbing of the DynamoDB adapters: conditional writes whose lost condition becomes a domain error."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_as_503
from ..domain import JobStatus
from ..errors import JobNotFound, JobStateConflict
from .items import active_index, deserialize, iso, seconds, serialize_value

NAMES = ("#status", "#error", "#results", "#index")


def names_in(*expressions: str) -> dict[str, str]:
    text = " ".join(expressions)
    return {n: n[1:] for n in NAMES if n in text}


def update_params(
    table: str, key: dict, expression: str | None, condition: str, values: dict[str, Any]
) -> dict[str, Any]:
    used = set(re.findall(r":\w+", f"{expression or ''} {condition}"))  # DynamoDB refuses unused values
    params: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": {k: serialize_value(v) for k, v in values.items() if k in used},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if expression is not None:
        params["UpdateExpression"] = expression
    names = names_in(expression or "", condition)
    if names:
        params["ExpressionAttributeNames"] = names
    return params


def conflict_from(old: dict[str, Any] | None) -> JobStateConflict:
    if old is None:
        return JobNotFound()
    current = deserialize(old)
    return JobStateConflict(
        f"It is {current.get('status')} (attempt {current.get('attempt')}).",
        details={"status": current.get("status"), "attempt": int(current.get("attempt", 0))},
    )


def conditional_update(client, table: str, key: dict, expression: str, *, condition: str, values: dict) -> dict:
    """UpdateItem returning the new item; a lost condition raises JobStateConflict (or JobNotFound).

    Safe under botocore's retries: every write stamps the item with a fresh `last_write` id, so when a
    retry finds the condition failed because the first try did apply (its response was lost to a
    timeout), the item it gets back carries our id and the write counts as done, not as a conflict.
    """
    write_id = uuid.uuid4().hex
    if not expression.startswith("SET "):
        raise ValueError(f"conditional updates start with SET: {expression!r}")
    expression = f"SET last_write = :write_id, {expression[4:]}"
    try:
        with unavailable_as_503("DynamoDB"):
            resp = client.update_item(
                ReturnValues="ALL_NEW",
                **update_params(table, key, expression, condition, {**values, ":write_id": write_id}),
            )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        current = exc.response.get("Item")
        if current is not None and current.get("last_write", {}).get("S") == write_id:
            return deserialize(current)  # our own earlier try applied; this was botocore retrying it
        raise conflict_from(current) from exc
    return deserialize(resp["Attributes"])


def cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    return exc.response.get("CancellationReasons", [])


LEASE_FREE = "(attribute_not_exists(lease_expires_at) OR lease_expires_at < :epoch)"


def take_lease(
    client,
    table: str,
    key: dict,
    *,
    index: tuple[str, str],
    condition: str,
    attempt: int,
    worker: str,
    token: str,
    now: datetime,
    lease_seconds: int,
) -> dict:
    """PROCESSING with this worker's lease, if `condition` holds; the item (job or task) is re-indexed in
    gsi2 by the lease's expiry, so the sweeper finds it if the lease lapses."""
    expires = now + timedelta(seconds=lease_seconds)
    kind, item_id = index
    return conditional_update(
        client,
        table,
        key,
        "SET #status = :processing, worker = :worker, lease_token = :token, lease_expires_at = :lease,"
        " started_at = if_not_exists(started_at, :now), updated_at = :now, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk",
        condition=condition,
        values={
            ":processing": JobStatus.PROCESSING,
            ":queued": JobStatus.QUEUED,
            ":worker": worker,
            ":token": token,
            ":lease": seconds(expires),
            ":epoch": seconds(now),
            ":now": iso(now),
            ":attempt": attempt,
            **{f":{k}": v for k, v in active_index(kind, JobStatus.PROCESSING, expires, item_id).items()},
        },
    )


def query_page(client, params: dict[str, Any], *, start: dict | None) -> tuple[list[dict[str, Any]], dict | None]:
    """One Query page: the deserialized items and the raw key to continue from (None at the end)."""
    if start:
        params = {**params, "ExclusiveStartKey": start}
    with unavailable_as_503("DynamoDB"):
        resp = client.query(**params)
    return [deserialize(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")
