"""API keys by the SHA-256 of the key; the key itself is never stored."""

from __future__ import annotations

from datetime import datetime

from ..aws import unavailable_as_503
from .items import iso, serialize


class DynamoApiKeyRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, *, key_hash: str, owner: str, now: datetime) -> None:
        with unavailable_as_503("DynamoDB"):
            self._client.put_item(
                TableName=self._table,
                Item=serialize({"pk": f"APIKEY#{key_hash}", "sk": "APIKEY", "owner": owner, "created_at": iso(now)}),
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
