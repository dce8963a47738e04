"""Owners' budgets and spend in DynamoDB: the monthly budget an operator sets, the worker-seconds counted.

Both live in the owner's partition: `pk=OWNER#<owner>`, `sk=BUDGET` (`dollars`), and the usage item's
`spent_<YYYY-MM>` (each job's worker-seconds, added once when it ended, with its frames given back:
usage.py `settle_usage`). Spend is kept in worker-seconds; its dollars are priced when read, at the
configured prices. Earlier versions kept a month's spend in its own item (`sk=SPEND#<YYYY-MM>`, expired by
TTL a year after its month): it is still read and added, so an upgrade within a month keeps its spend.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from jobs.adapters.aws import unavailable_as_503
from jobs.ports.values import OwnerSpend
from jobs.repository import partitions as P
from jobs.repository.dynamo import batch_get
from jobs.repository.items import iso
from jobs.repository.usage import spend_attribute, usage_key


def budget_key(owner: str) -> dict[str, Any]:
    return {"pk": {"S": P.OWNER + owner}, "sk": {"S": P.BUDGET}}


def legacy_spend_key(owner: str, month: str) -> dict[str, Any]:
    return {"pk": {"S": P.OWNER + owner}, "sk": {"S": P.SPEND + month}}


class DynamoBudgets:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def set_budget(self, owner: str, dollars: float | None, *, now: datetime) -> None:
        """The owner's monthly budget in dollars; None clears it (no limit)."""
        if dollars is None:
            params = {"UpdateExpression": "REMOVE dollars SET updated_at = :now"}
            values = {":now": {"S": iso(now)}}
        else:
            params = {"UpdateExpression": "SET dollars = :dollars, updated_at = :now"}
            values = {":dollars": {"N": str(Decimal(f"{dollars:.2f}"))}, ":now": {"S": iso(now)}}
        with unavailable_as_503("DynamoDB"):
            self._client.update_item(
                TableName=self._table, Key=budget_key(owner), ExpressionAttributeValues=values, **params
            )

    def spend(self, owner: str, *, month: str) -> OwnerSpend:
        """The owner's budget (None: none set) and worker-seconds counted in `month` (one BatchGetItem)."""
        keys = [budget_key(owner), usage_key(owner), legacy_spend_key(owner, month)]
        found = {item["sk"]: item for item in batch_get(self._client, self._table, keys)}
        dollars = found.get(P.BUDGET, {}).get("dollars")
        worker_seconds = float(found.get(P.USAGE, {}).get(spend_attribute(month), 0))
        worker_seconds += float(found.get(P.SPEND + month, {}).get("worker_seconds", 0))
        return OwnerSpend(
            owner=owner,
            month=month,
            worker_seconds=worker_seconds,
            budget=None if dollars is None else float(dollars),
        )
