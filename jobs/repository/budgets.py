"""Owners' budgets and spend in DynamoDB: the monthly budget an operator sets, the worker-seconds counted.

Both live in the owner's partition: `pk=OWNER#<owner>`, `sk=BUDGET` (`dollars`), and the usage item's
`spent_<YYYY-MM>` (each job's worker-seconds, added once when it ended, with its frames given back:
usage.py `settle_usage`). Spend is kept in worker-seconds; its dollars are priced when read, at the
configured prices. Earlier versions kept a month's spend in its own item (`sk=SPEND#<YYYY-MM>`, expired by
TTL a year after its month): it is still read and added, so an upgrade within a month keeps its spend.
"""

from __future__ import annotations

import threading
import time
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
    """`unbudgeted_seconds`: how long `budgeted_spend` takes an owner it found without a budget as still
    without one, without reading (0: it reads every time)."""

    UNBUDGETED_KEPT = 10_000  # owners remembered at most; the expired ones are dropped when it is reached

    def __init__(self, *, client, table_name: str, unbudgeted_seconds: float = 0.0):
        self._client = client
        self._table = table_name
        self._unbudgeted_seconds = unbudgeted_seconds
        self._unbudgeted: dict[str, float] = {}  # owner -> when (monotonic) to read its budget again
        self._budgets_set = 0  # budgets set by this process so far: a read that one overtook marks no owner
        self._lock = threading.Lock()

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
        with self._lock:
            self._budgets_set += 1
            self._unbudgeted.pop(owner, None)  # this process's submits see the new budget at once

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

    def budgeted_spend(self, owner: str, *, month: str) -> OwnerSpend | None:
        """The owner's spend if it has a budget, None if it has none: what a submit's budget check needs. An
        owner found without a budget is not read again for `unbudgeted_seconds` (a budget set by another process
        bites within that time; one set by this process at once), so an owner with none, most owners, costs its
        stream of submits a read per period instead of one each."""
        now = time.monotonic()
        with self._lock:
            if self._unbudgeted.get(owner, 0.0) > now:
                return None
            budgets_set = self._budgets_set
        spend = self.spend(owner, month=month)
        if spend.budget is not None:
            return spend
        if self._unbudgeted_seconds > 0:
            with self._lock:
                if self._budgets_set != budgets_set:  # a budget set here while this read was out: not remembered
                    return None
                if len(self._unbudgeted) >= self.UNBUDGETED_KEPT:
                    self._unbudgeted = {o: until for o, until in self._unbudgeted.items() if until > now}
                if len(self._unbudgeted) < self.UNBUDGETED_KEPT:
                    self._unbudgeted[owner] = now + self._unbudgeted_seconds
        return None
