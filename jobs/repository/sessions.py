"""Browser sessions of the browsable API, kept server-side so that logging out or revoking a key ends them.

Item, in the one table: `pk=SESSION#<SHA-256 of the session key>`, `sk=SESSION`, `data` (the session
as Django encodes it: signed), `expires_at` (epoch seconds, the table's TTL attribute). The session key
itself (the cookie) is never stored, so a table export or backup yields no usable cookie. TTL deletes
expired items lazily (within days), so readers treat an item past `expires_at` as gone, and an update
never brings one back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.repository import partitions as P
from jobs.repository.items import epoch


def _key(session_hash: str) -> dict[str, Any]:
    return {"pk": {"S": P.SESSION + session_hash}, "sk": {"S": P.fixed_sort_key(P.SESSION)}}


class DynamoSessionRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def get(self, session_hash: str, *, now: datetime) -> str | None:
        """The session's data, or None if there is none or it has expired."""
        with unavailable_as_503("DynamoDB"):
            item = self._client.get_item(TableName=self._table, Key=_key(session_hash)).get("Item")
        if not item or int(item["expires_at"]["N"]) <= epoch(now):
            return None
        return item["data"]["S"]

    def create(self, session_hash: str, data: str, *, expires_at: datetime) -> bool:
        """Store a new session; False if one with this key exists (the caller picks another key)."""
        return self._write(session_hash, data, expires_at, "attribute_not_exists(pk)", {})

    def update(self, session_hash: str, data: str, *, expires_at: datetime, now: datetime) -> bool:
        """Replace a live session's data; False if it was deleted (logged out) or has expired meanwhile."""
        return self._write(
            session_hash,
            data,
            expires_at,
            "attribute_exists(pk) AND expires_at > :now",
            {":now": {"N": str(epoch(now))}},
        )

    def delete(self, session_hash: str) -> None:
        with unavailable_as_503("DynamoDB"):
            self._client.delete_item(TableName=self._table, Key=_key(session_hash))

    def _write(self, session_hash: str, data: str, expires_at: datetime, condition: str, values: dict) -> bool:
        item = {**_key(session_hash), "data": {"S": data}, "expires_at": {"N": str(epoch(expires_at))}}
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
