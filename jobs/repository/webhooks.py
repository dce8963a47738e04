"""Webhook delivery records and per-owner webhook secrets in the one table.

- Delivery: `pk=JOB#<id>, sk=HOOK#<attempt:05d>#<status>`, one per end of a job (a retry's new end gets
  its own). While pending it sits in gsi2 (`HOOK#PENDING`, due when it should have had news), where the
  sweeper finds a delivery whose message was lost. Every change is a conditional write: opened once,
  leased for a try, recorded by the lease holder.
- Secret: `pk=HOOKSECRET#<owner>, sk=HOOKSECRET`, the signing secret in clear (it must be used to sign,
  so it cannot be a hash): the table is encrypted at rest with its KMS key in AWS, only the API (which
  writes it) and the webhook workers (which sign) may read the prefix, and it is never returned after creation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.adapters.aws import unavailable_as_503
from jobs.domain import JobStatus, Priority
from jobs.errors import JobStateConflict
from jobs.ports.webhooks import MAX_LISTED_TRIES, PENDING, DeliveryTry, WebhookDelivery
from jobs.repository import partitions as P
from jobs.repository.dynamo import conditional_update
from jobs.repository.items import deserialize, due_sort_key, epoch, from_seconds, iso, parse_iso, seconds

PENDING_PARTITION = P.HOOK_PENDING


def delivery_key(job_id: str, job_attempt: int, event: str) -> dict[str, Any]:
    return {"pk": {"S": P.JOB + job_id}, "sk": {"S": f"{P.HOOK}{job_attempt:05d}#{event}"}}


def secret_key(owner: str) -> dict[str, Any]:
    return {"pk": {"S": P.HOOKSECRET + owner}, "sk": {"S": P.fixed_sort_key(P.HOOKSECRET)}}


def _due_id(job_id: str, job_attempt: int, event: str) -> str:
    return f"{job_id}#{job_attempt:05d}#{event}"


def _try_to_map(entry: DeliveryTry) -> dict[str, Any]:
    out: dict[str, Any] = {"at": iso(entry.at), "attempt": entry.attempt}
    if entry.status_code is not None:
        out["status_code"] = entry.status_code
    if entry.error is not None:
        out["error"] = entry.error[:300]
    return out


def _map_to_try(value: dict[str, Any]) -> DeliveryTry:
    code = value.get("status_code")
    return DeliveryTry(
        at=parse_iso(value["at"]),
        attempt=int(value["attempt"]),
        status_code=int(code) if code is not None else None,
        error=value.get("error"),
    )


def item_to_delivery(item: dict[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        job_id=item["job_id"],
        job_attempt=int(item["attempt"]),
        event=JobStatus(item["hook_event"]),
        owner=item["hook_owner"],
        url=item["hook_url"],
        priority=Priority(item["priority"]),
        state=item["delivery_state"],
        tries=int(item.get("tries", 0)),
        deliveries=tuple(_map_to_try(v) for v in item.get("deliveries", [])),
        lease_token=item.get("lease_token"),
        lease_until=from_seconds(item.get("lease_until")),
        created_at=parse_iso(item.get("created_at")),
        marker=(item["gsi2pk"], item["gsi2sk"]) if "gsi2pk" in item else None,
    )


class DynamoWebhookRepository:
    """Implements jobs.ports.WebhookRepository."""

    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def _update(self, key: dict, expression: str, *, condition: str, values: dict) -> dict[str, Any]:
        return conditional_update(self._client, self._table, key, expression, condition=condition, values=values)

    # --- deliveries ------------------------------------------------------------------------------
    def open(self, delivery: WebhookDelivery, *, due: datetime, expires_at: datetime) -> bool:
        """Create the pending delivery (an UpdateItem on a missing item); False if it exists already."""
        d = delivery
        try:
            self._update(
                delivery_key(d.job_id, d.job_attempt, d.event),
                "SET job_id = :job, attempt = :attempt, hook_event = :event, hook_owner = :owner, hook_url = :url,"
                " priority = :priority, delivery_state = :pending, tries = :zero, deliveries = :none,"
                " created_at = :now, gsi2pk = :gsi2pk, gsi2sk = :gsi2sk, expires_at = :ttl",
                condition="attribute_not_exists(pk)",
                values={
                    ":job": d.job_id,
                    ":attempt": d.job_attempt,
                    ":event": str(d.event),
                    ":owner": d.owner,
                    ":url": d.url,
                    ":priority": str(d.priority),
                    ":pending": PENDING,
                    ":zero": 0,
                    ":none": [],
                    ":now": iso(d.created_at),
                    ":gsi2pk": PENDING_PARTITION,
                    ":gsi2sk": due_sort_key(due, _due_id(d.job_id, d.job_attempt, d.event)),
                    ":ttl": epoch(expires_at),
                },
            )
        except JobStateConflict:
            return False
        return True

    def get(self, job_id: str, job_attempt: int, event: JobStatus) -> WebhookDelivery | None:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(
                TableName=self._table, Key=delivery_key(job_id, job_attempt, event), ConsistentRead=True
            )
        return item_to_delivery(deserialize(resp["Item"])) if "Item" in resp else None

    def latest(self, job_id: str) -> WebhookDelivery | None:
        """The delivery of the job's latest end (the highest attempt)."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :hook)",
                ExpressionAttributeValues={":pk": {"S": P.JOB + job_id}, ":hook": {"S": P.HOOK}},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
        items = resp.get("Items", [])
        return item_to_delivery(deserialize(items[0])) if items else None

    def begin(self, delivery: WebhookDelivery, *, token: str, now: datetime, until: datetime) -> WebhookDelivery:
        """Lease a pending delivery for one try (nobody holds it, or the holder's lease lapsed)."""
        d = delivery
        return item_to_delivery(
            self._update(
                delivery_key(d.job_id, d.job_attempt, d.event),
                "SET lease_token = :token, lease_until = :until",
                condition="delivery_state = :pending AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                values={":token": token, ":until": seconds(until), ":now": seconds(now), ":pending": PENDING},
            )
        )

    def record(
        self, delivery: WebhookDelivery, *, token: str, entry: DeliveryTry, state: str, due: datetime | None
    ) -> WebhookDelivery:
        """The lease holder records its try and the outcome; `due` (pending) is when the sweeper should look."""
        d = delivery
        tries = [_try_to_map(t) for t in d.deliveries] + [_try_to_map(entry)]
        values: dict[str, Any] = {
            ":token": token,
            ":tries": entry.attempt,
            ":list": tries[-MAX_LISTED_TRIES:],
            ":state": state,
        }
        if due is not None:
            index = "SET gsi2pk = :gsi2pk, gsi2sk = :gsi2sk"
            values[":gsi2pk"] = PENDING_PARTITION
            values[":gsi2sk"] = due_sort_key(due, _due_id(d.job_id, d.job_attempt, d.event))
            expression = f"SET delivery_state = :state, tries = :tries, deliveries = :list, {index[4:]}"
            expression += " REMOVE lease_token, lease_until"
        else:
            expression = (
                "SET delivery_state = :state, tries = :tries, deliveries = :list"
                " REMOVE lease_token, lease_until, gsi2pk, gsi2sk"
            )
        return item_to_delivery(
            self._update(
                delivery_key(d.job_id, d.job_attempt, d.event),
                expression,
                condition="lease_token = :token",
                values=values,
            )
        )

    def overdue(self, *, now: datetime, limit: int) -> list[WebhookDelivery]:
        """Pending deliveries due before `now` (gsi2 projects keys and ids; each is then read whole)."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.query(
                TableName=self._table,
                IndexName="gsi2",
                KeyConditionExpression="gsi2pk = :key AND gsi2sk < :now",
                ExpressionAttributeValues={":key": {"S": PENDING_PARTITION}, ":now": {"S": iso(now)}},
                Limit=limit,
            )
        out = []
        for raw in resp.get("Items", []):
            sk = raw["sk"]["S"].split("#")  # HOOK#<attempt>#<event>
            found = self.get(raw["pk"]["S"].removeprefix(P.JOB), int(sk[1]), JobStatus(sk[2]))
            if found is not None and found.marker is not None:
                out.append(found)
        return out

    def postpone(self, delivery: WebhookDelivery, *, until: datetime) -> bool:
        """Move a pending delivery's due time; False if someone else moved it (or it ended) first."""
        d = delivery
        if d.marker is None:
            return False
        try:
            self._update(
                delivery_key(d.job_id, d.job_attempt, d.event),
                "SET gsi2sk = :next",
                condition="gsi2pk = :key AND gsi2sk = :due",
                values={
                    ":next": due_sort_key(until, _due_id(d.job_id, d.job_attempt, d.event)),
                    ":key": d.marker[0],
                    ":due": d.marker[1],
                },
            )
        except JobStateConflict:
            return False
        return True

    # --- secrets ---------------------------------------------------------------------------------
    def secret(self, owner: str) -> str | None:
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=secret_key(owner), ConsistentRead=True)
        return resp["Item"]["secret_value"]["S"] if "Item" in resp else None

    def put_secret(self, owner: str, secret: str, *, now: datetime) -> None:
        """Create or rotate the owner's secret: a conditional write on the version it replaces."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=secret_key(owner), ConsistentRead=True)
        version = int(resp["Item"]["secret_version"]["N"]) if "Item" in resp else 0
        condition = "attribute_not_exists(pk)" if version == 0 else "secret_version = :version"
        values = {":secret": secret, ":now": iso(now), ":next": version + 1}
        if version:
            values[":version"] = version
        try:
            self._update(
                secret_key(owner),
                "SET secret_value = :secret, rotated_at = :now, secret_version = :next",
                condition=condition,
                values=values,
            )
        except JobStateConflict as exc:
            raise JobStateConflict("The webhook secret was rotated at the same moment; try again.") from exc
