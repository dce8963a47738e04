"""API keys by the SHA-256 of the key; the key itself is never stored.

A key is found by its hash alone, so no secret is ever compared in code: the only comparison is
DynamoDB's lookup of a hash of a 256-bit random key, whose timing reveals nothing about other keys.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_as_503
from .items import iso, serialize


class DynamoApiKeyRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, *, key_hash: str, owner: str, now: datetime) -> None:
        item = {
            "pk": f"APIKEY#{key_hash}",
            "sk": "APIKEY",
            "owner": owner,
            "created_at": iso(now),
            "gsi1pk": f"APIKEYS#{owner}",  # an owner's keys, for revoking them all
            "gsi1sk": f"{iso(now)}#{key_hash}",
        }
        with unavailable_as_503("DynamoDB"):
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
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

    def revoke(self, key_hash: str, *, now: datetime) -> bool:
        """Mark a key revoked; False if there is no such key. Processes notice within their cache TTL."""
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"APIKEY#{key_hash}"}, "sk": {"S": "APIKEY"}},
                    UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":now": {"S": iso(now)}},
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def key_hashes_of(self, owner: str) -> list[str]:
        hashes, start = [], None
        while True:
            with unavailable_as_503("DynamoDB"):
                resp = self._client.query(
                    TableName=self._table,
                    IndexName="gsi1",
                    KeyConditionExpression="gsi1pk = :o",
                    ExpressionAttributeValues={":o": {"S": f"APIKEYS#{owner}"}},
                    ProjectionExpression="pk",
                    **({"ExclusiveStartKey": start} if start else {}),
                )
            hashes += [i["pk"]["S"].removeprefix("APIKEY#") for i in resp.get("Items", [])]
            start = resp.get("LastEvaluatedKey")
            if not start:
                return hashes
