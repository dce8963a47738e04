"""Declared scene files (assets) in the one table.

Item: `pk=ASSET#<owner slug>#<sha256>` (owner slug: jobs.domain.owner_slug), `sk=ASSET`, `owner`, `sha256`,
`size`, `created_at`, `expires_at` (epoch seconds, the table's TTL attribute). The file itself is in S3
(jobs.adapters.assets); the item is what the owner declared, so the API can tell "declared, not uploaded"
from "unknown", and it expires with the file unless a job extends it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import owner_slug
from jobs.ports.values import AssetRecord
from jobs.repository.items import epoch, iso, parse_iso


def _key(owner: str, sha256: str) -> dict[str, Any]:
    return {"pk": {"S": f"ASSET#{owner_slug(owner)}#{sha256}"}, "sk": {"S": "ASSET"}}


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
        )

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
