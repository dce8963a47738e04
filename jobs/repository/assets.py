"""Declared scene files (assets) in the one table.

Item: `pk=ASSET#<owner slug>#<sha256>` (owner slug: jobs.domain.owner_slug), `sk=ASSET`, `owner`, `sha256`,
`size`, `created_at`, `expires_at` (epoch seconds, the table's TTL attribute), and once asked for, the file's
inspection: `inspection_state` (pending, done, failed), `inspection_at` (when last asked or recorded),
`inspection` (the report as JSON) or `inspection_error`. The file itself is in S3
(jobs.adapters.assets); the item is what the owner declared, so the API can tell "declared, not uploaded"
from "unknown", and it expires with the file unless a job extends it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import owner_slug
from jobs.ports.values import INSPECTION_PENDING, AssetInspection, AssetRecord
from jobs.repository import partitions as P
from jobs.repository.items import epoch, iso, parse_iso


def _key(owner: str, sha256: str) -> dict[str, Any]:
    return {"pk": {"S": f"{P.ASSET}{owner_slug(owner)}#{sha256}"}, "sk": {"S": P.fixed_sort_key(P.ASSET)}}


class DynamoAssetRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def declare(self, record: AssetRecord) -> None:
        """Write the declaration (a new declaration of the same hash replaces one never uploaded)."""
        item = {
            **_key(record.owner, record.sha256),
            "owner": {"S": record.owner},
            "sha256": {"S": record.sha256},
            "size": {"N": str(record.size)},
            "created_at": {"S": iso(record.created_at)},
            "expires_at": {"N": str(epoch(record.expires_at))},
        }
        with unavailable_as_503("DynamoDB"):
            self._client.put_item(TableName=self._table, Item=item)

    def get(self, owner: str, sha256: str) -> AssetRecord | None:
        with unavailable_as_503("DynamoDB"):
            item = self._client.get_item(TableName=self._table, Key=_key(owner, sha256), ConsistentRead=True).get(
                "Item"
            )
        if not item or item["owner"]["S"] != owner:
            return None
        return AssetRecord(
            owner=owner,
            sha256=sha256,
            size=int(item["size"]["N"]),
            created_at=parse_iso(item["created_at"]["S"]),
            expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), UTC),
            inspection=_inspection(item),
        )

    def request_inspection(self, owner: str, sha256: str, *, now: datetime, stale_before: datetime) -> bool:
        """Pending from now, unless an inspection is recorded or was asked for since `stale_before`."""
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(owner, sha256),
                    UpdateExpression="SET inspection_state = :pending, inspection_at = :now",
                    ConditionExpression=(
                        "attribute_exists(pk) AND (attribute_not_exists(inspection_state) OR "
                        "(inspection_state = :pending AND inspection_at < :stale))"
                    ),
                    ExpressionAttributeValues={
                        ":pending": {"S": INSPECTION_PENDING},
                        ":now": {"S": iso(now)},
                        ":stale": {"S": iso(stale_before)},
                    },
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def record_inspection(self, owner: str, sha256: str, inspection: AssetInspection) -> None:
        """The outcome of an inspection (a later one replaces it: the file is the same, so is the outcome)."""
        values = {":state": {"S": inspection.state}, ":at": {"S": iso(inspection.requested_at)}}
        if inspection.report is not None:
            update, values[":body"] = (
                "SET inspection = :body REMOVE inspection_error",
                {"S": json.dumps(inspection.report, separators=(",", ":"))},
            )
        else:
            update, values[":body"] = (
                "SET inspection_error = :body REMOVE inspection",
                {"S": inspection.error or "unreadable"},
            )
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(owner, sha256),
                    UpdateExpression=update.replace("SET ", "SET inspection_state = :state, inspection_at = :at, "),
                    ConditionExpression="attribute_exists(pk)",  # an expired declaration stays gone
                    ExpressionAttributeValues=values,
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def extend(self, owner: str, sha256: str, *, until: datetime) -> None:
        """Keep the record at least until `until` (conditional: it never shortens, never resurrects)."""
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(owner, sha256),
                    UpdateExpression="SET expires_at = :until",
                    ConditionExpression="attribute_exists(pk) AND expires_at < :until",
                    ExpressionAttributeValues={":until": {"N": str(epoch(until))}},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise


def _inspection(item: dict[str, Any]) -> AssetInspection | None:
    if "inspection_state" not in item:
        return None
    report = item.get("inspection", {}).get("S")
    return AssetInspection(
        state=item["inspection_state"]["S"],
        requested_at=parse_iso(item["inspection_at"]["S"]),
        report=json.loads(report) if report else None,
        error=item.get("inspection_error", {}).get("S"),
    )
