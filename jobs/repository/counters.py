"""Shared request counters in DynamoDB: `pk=THROTTLE#<subject>#<window>`, expired by TTL."""

from __future__ import annotations

from datetime import datetime

from jobs.adapters.aws import unavailable_as_503
from jobs.repository import partitions as P


class DynamoCounters:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, subject: str, window: int, count: int, *, expires_at: datetime) -> int:
        """Atomically add `count` to the subject's counter for `window`; returns the new total."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"{P.THROTTLE}{subject}#{window}"}, "sk": {"S": P.fixed_sort_key(P.THROTTLE)}},
                UpdateExpression="ADD hits :n SET expires_at = if_not_exists(expires_at, :ttl)",
                ExpressionAttributeValues={":n": {"N": str(count)}, ":ttl": {"N": str(int(expires_at.timestamp()))}},
                ReturnValues="UPDATED_NEW",
            )
        return int(resp["Attributes"]["hits"]["N"])
