"""Shared plumbing of the DynamoDB adapters: conditional writes whose lost condition becomes a domain error.

Conditions name job states as `:st_<state>` (for example `:st_processing`); the helper supplies their
values, so the states a write accepts are written once, from the domain's state machine.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import COMPONENTS, error_code, unavailable_as_503
from jobs.domain import Failure, JobStatus
from jobs.errors import JobNotFound, ServiceUnavailable, StaleWrite
from jobs.repository.items import (
    deserialize,
    iso,
    seconds,
    serialize_value,
)

log = logging.getLogger(__name__)
NAMES = ("#status", "#error", "#results", "#index")
STATE_VALUES = {f":st_{s.value.lower()}": s.value for s in JobStatus}
LEASE_FREE = "(attribute_not_exists(lease_expires_at) OR lease_expires_at < :epoch)"


def state_in(states: Iterable[JobStatus]) -> str:
    """`#status IN (...)` over the given states (a condition fragment)."""
    names = ", ".join(f":st_{s.value.lower()}" for s in sorted(states))
    return f"#status IN ({names})"


def names_in(*expressions: str) -> dict[str, str]:
    text = " ".join(expressions)
    return {n: n[1:] for n in NAMES if n in text}


def update_params(
    table: str, key: dict, expression: str | None, condition: str, values: dict[str, Any]
) -> dict[str, Any]:
    text = f"{expression or ''} {condition}"
    used = set(re.findall(r":\w+", text))  # DynamoDB refuses unused values
    values = {**{k: v for k, v in STATE_VALUES.items() if k in used}, **values}
    params: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "ExpressionAttributeValues": {k: serialize_value(v) for k, v in values.items() if k in used},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if condition:  # "": an unconditional part of a transaction (a counter that any write of it may add to)
        params["ConditionExpression"] = condition
    if expression is not None:
        params["UpdateExpression"] = expression
    names = names_in(expression or "", condition)
    if names:
        params["ExpressionAttributeNames"] = names
    return params


# The lease holder's condition: the chunk (or one-chunk job) runs in this attempt under this token.
HOLDS_LEASE = "#status = :st_processing AND lease_token = :token AND attempt = :attempt"


def conflict_from(old: dict[str, Any] | None) -> StaleWrite | JobNotFound:
    if old is None:
        return JobNotFound()
    current = deserialize(old)
    return StaleWrite(current.get("status"), int(current.get("attempt", 0)), current=current)


# DynamoDB refuses a write to an item that a transaction is changing at that moment (TransactionConflict);
# botocore does not retry it, so these writes do, a few times with jitter, as the same write.
CONFLICT_RETRIES = 5


def _conflict_pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not security


def _stamped(expression: str) -> str:
    """The update expression that also sets `last_write` (the write's id, recognised on a retry)."""
    if not expression.startswith("SET "):
        raise ValueError(f"conditional updates start with SET: {expression!r}")
    return f"SET last_write = :write_id, {expression[4:]}"


def _applied_by(item: dict | None, write_id: str) -> bool:
    """The item as a failed condition returned it carries this write's id: an earlier try of it applied."""
    return item is not None and item.get("last_write", {}).get("S") == write_id


def conditional_update(
    client,
    table: str,
    key: dict,
    expression: str,
    *,
    condition: str,
    values: dict | None = None,
    returns: bool = True,
    write_id: str | None = None,
) -> dict:
    """UpdateItem returning the new item ({} with `returns=False`, for writes whose result nobody reads);
    a lost condition raises JobStateConflict (or JobNotFound).

    Safe under retries: every write stamps the item with a `last_write` id (fresh, or the caller's
    `write_id` when it may try the same write again), so when a retry finds the condition failed because an
    earlier try did apply (its response was lost to a timeout), the item it gets back carries our id and the
    write counts as done, not as a conflict. A transaction conflict on the item is retried.
    """
    write_id = write_id or uuid.uuid4().hex
    params = update_params(table, key, _stamped(expression), condition, {**(values or {}), ":write_id": write_id})
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            with unavailable_as_503("DynamoDB"):  # a conflict still there after the retries: 503
                try:
                    resp = client.update_item(ReturnValues="ALL_NEW" if returns else "NONE", **params)
                except ClientError as exc:
                    if error_code(exc) == "TransactionConflictException" and attempt < CONFLICT_RETRIES:
                        _conflict_pause(attempt)
                        continue
                    raise
            return deserialize(resp.get("Attributes", {}))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            current = exc.response.get("Item")
            if _applied_by(current, write_id):
                return deserialize(current)  # our own earlier try applied; this was a retry
            raise conflict_from(current) from exc
    raise AssertionError("unreachable")


def cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    return exc.response.get("CancellationReasons", [])


def conditional_transaction(
    client, updates: list[tuple[str, dict, str, str, dict]], *, write_id: str | None = None
) -> tuple[int, Exception] | None:
    """Conditional updates `(table, key, expression, condition, values)` applied all or none, in one
    TransactWriteItems; None when applied, else the position of the first update whose condition failed and
    its conflict (StaleWrite or JobNotFound, from the item as it stands).

    Safe under retries like `conditional_update`: every item is stamped with one `last_write` id (the
    caller's `write_id` when it may try the same write again), so a retry that finds an earlier try applied
    counts as done; on AWS each request's token makes botocore's own retries idempotent too. A transaction
    cancelled only by a conflict with another write to one of its items is tried again; still conflicting
    after that, it is ServiceUnavailable.
    """
    write_id = write_id or uuid.uuid4().hex
    items = []
    for table, key, expression, condition, values in updates:
        stamped = update_params(table, key, _stamped(expression), condition, {**values, ":write_id": write_id})
        items.append({"Update": stamped})
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            with unavailable_as_503("DynamoDB"):
                client.transact_write_items(TransactItems=items, ClientRequestToken=uuid.uuid4().hex)
            return None
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = cancellation_reasons(exc)
            for position, reason in enumerate(reasons):
                if reason.get("Code") != "ConditionalCheckFailed":
                    continue
                current = reason.get("Item")
                if _applied_by(current, write_id):
                    return None  # our own earlier try applied (all of it); this was a retry
                return position, conflict_from(current)
            if not any(r.get("Code") == "TransactionConflict" for r in reasons):
                raise  # cancelled for another reason (a validation error): the caller's bug, not a state
            if attempt < CONFLICT_RETRIES:
                _conflict_pause(attempt)
    raise ServiceUnavailable(
        "DynamoDB is busy with conflicting writes; try again shortly.", component=COMPONENTS["DynamoDB"]
    )


def lease_values(*, worker: str, token: str, now: datetime, lease_seconds: int, attempt: int) -> dict[str, Any]:
    return {
        ":worker": worker,
        ":token": token,
        ":lease": seconds(now + timedelta(seconds=lease_seconds)),
        ":epoch": seconds(now),
        ":now": iso(now),
        ":attempt": attempt,
    }


TAKE_LEASE = (
    "SET #status = :st_processing, worker = :worker, lease_token = :token, lease_expires_at = :lease,"
    " started_at = if_not_exists(started_at, :now), updated_at = :now"
)


def query_page(client, params: dict[str, Any], *, start: dict | None) -> tuple[list[dict[str, Any]], dict | None]:
    """One Query page: the deserialized items and the raw key to continue from (None at the end)."""
    if start:
        params = {**params, "ExclusiveStartKey": start}
    with unavailable_as_503("DynamoDB"):
        resp = client.query(**params)
    return [deserialize(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")


def batch_get(client, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items of `keys`, deserialized, in the order of `keys`; keys with no item are left out.

    Eventually consistent (half the read units), as the index that listed the keys is.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {table: {"Keys": keys[start : start + 100]}}
        while pending:
            with unavailable_as_503("DynamoDB"):
                resp = client.batch_get_item(RequestItems=pending)
            for raw in resp.get("Responses", {}).get(table, []):
                found[(raw["pk"]["S"], raw["sk"]["S"])] = deserialize(raw)
            pending = resp.get("UnprocessedKeys") or {}
    return [item for key in keys if (item := found.get((key["pk"]["S"], key["sk"]["S"]))) is not None]


def query_keys_then_items(
    client, params: dict[str, Any], *, start: dict | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict | None]:
    """One Query page of a keys-only index, then its items: (index entries, items in the same order, next)."""
    entries, last = query_page(client, params, start=start)
    keys = [{"pk": {"S": e["pk"]}, "sk": {"S": e["sk"]}} for e in entries]
    return entries, batch_get(client, params["TableName"], keys), last


# A job or chunk reaches a final state: timestamps, TTL, and out of every lease. Its entry in the sweeper's
# index stays (no index write): the sweeper reads it once, finds it final and passes it (items.due_index).
FINISHED = "finished_at = :now, updated_at = :now, expires_at = :ttl REMOVE lease_token, lease_expires_at"


def set_status(status: JobStatus) -> tuple[str, dict[str, Any]]:
    """The SET clause of a job's state change (no index entry moves: the owner's listing is keyed by time)."""
    return "#status = :new_status", {":new_status": status}


def failure_values(failure: Failure) -> dict[str, Any]:
    return {":error": failure.message, ":error_code": failure.code}
