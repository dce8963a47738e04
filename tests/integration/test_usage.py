"""The owner's usage item against DynamoDB: ended jobs' frames and worker-seconds settled in one write, and a
render worker's batches of them (jobs/repository/usage.py)."""

import time

from jobs.adapters import aws
from jobs.repository.budgets import DynamoBudgets
from jobs.repository.usage import UsageLedger, add_usage, usage_key


def _usage(table, owner):
    item = aws.client("dynamodb").get_item(TableName=table, Key=usage_key(owner), ConsistentRead=True)["Item"]
    return {k: float(v["N"]) for k, v in item.items() if "N" in v}


def test_settles_write_at_once_by_default_one_write_for_frames_and_spend(table):
    client = aws.client("dynamodb")
    add_usage(client, table, "alice", 10)
    UsageLedger().settle(client, table, "alice", frames=4, month="2026-01", worker_seconds=2.5)
    assert _usage(table, "alice") == {"frames_active": 6, "spent_2026-01": 2.5}
    spend = DynamoBudgets(client=client, table_name=table).spend("alice", month="2026-01")
    assert spend.worker_seconds == 2.5 and spend.budget is None


def test_a_batched_ledger_writes_each_owners_sums_once_a_flush(table):
    client = aws.client("dynamodb")
    for owner in ("alice", "bob"):
        add_usage(client, table, owner, 10)
    ledger = UsageLedger()
    ledger.batch(0.5)
    ledger.settle(client, table, "alice", frames=2, month="2026-01", worker_seconds=1.5)
    ledger.settle(client, table, "alice", frames=3, month="2026-02", worker_seconds=2.0)
    ledger.settle(client, table, "bob", frames=4, month="2026-01", worker_seconds=0)
    assert _usage(table, "alice") == {"frames_active": 10}  # summed, not written yet
    deadline = time.monotonic() + 10
    while _usage(table, "bob")["frames_active"] != 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _usage(table, "alice") == {"frames_active": 5, "spent_2026-01": 1.5, "spent_2026-02": 2.0}
    assert _usage(table, "bob") == {"frames_active": 6}
    ledger.flush()  # nothing left: no write
    assert _usage(table, "alice")["frames_active"] == 5
