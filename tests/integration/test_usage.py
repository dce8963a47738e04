"""The owner's usage item against DynamoDB: ended jobs' frames and worker-seconds settled in one write, and a
render worker's batches of them (jobs/repository/usage.py)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.adapters import aws
from jobs.repository.budgets import DynamoBudgets
from jobs.repository.usage import FrameAllowance, OwnerLimitPassed, UsageLedger, add_usage, usage_key

ROOT = Path(__file__).resolve().parents[2]


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


def test_an_owner_without_a_budget_is_read_once_a_period_and_a_budget_set_here_bites_at_once(
    table, emulator, monkeypatch
):
    """A submit's budget check (DynamoBudgets.budgeted_spend): an owner found with no budget costs a stream of
    submits one read per period; a budget set by another process bites within the period, one set by this
    process at once; an owner with a budget is read on every check."""
    from datetime import UTC, datetime

    client = aws.client("dynamodb")
    clock = [1000.0]
    monkeypatch.setattr("jobs.repository.budgets.time.monotonic", lambda: clock[0])
    here = DynamoBudgets(client=client, table_name=table, unbudgeted_seconds=2)
    elsewhere = DynamoBudgets(client=client, table_name=table)
    now = datetime.now(UTC)

    def reads() -> int:
        rows = emulator.emulator_counts()
        return sum(r["count"] for r in rows if r["who"] == "system" and r["action"] == "BatchGetItem")

    emulator.reset_emulator_counts()
    assert [here.budgeted_spend("carol", month="2026-01") for _ in range(5)] == [None] * 5
    assert reads() == 1
    elsewhere.set_budget("carol", 5, now=now)
    clock[0] += 1.5
    assert here.budgeted_spend("carol", month="2026-01") is None  # set elsewhere: not read within the period
    clock[0] += 1.0
    assert [here.budgeted_spend("carol", month="2026-01").budget for _ in range(3)] == [5.0] * 3
    assert reads() == 4  # with a budget: read on every check
    here.set_budget("carol", None, now=now)
    assert here.budgeted_spend("carol", month="2026-01") is None and reads() == 5
    here.set_budget("carol", 1, now=now)  # set by this process: its next check reads it
    assert here.budgeted_spend("carol", month="2026-01").budget == 1.0 and reads() == 6
    assert DynamoBudgets(client=client, table_name=table).budgeted_spend("dave", month="2026-01") is None
    assert reads() == 7


def test_a_budget_set_while_a_check_reads_none_bites_at_the_next_check(table, monkeypatch):
    """A check that read "no budget" just before this process set one (another thread, the same API process)
    does not remember the owner as unbudgeted: the budget bites at the next check, not a period later."""
    from datetime import UTC, datetime

    here = DynamoBudgets(client=aws.client("dynamodb"), table_name=table, unbudgeted_seconds=60)
    read = here.spend

    def read_then_set_elsewhere(owner, *, month):
        found = read(owner, month=month)  # no budget yet
        here.set_budget(owner, 5, now=datetime.now(UTC))  # another request of this process, meanwhile
        return found

    monkeypatch.setattr(here, "spend", read_then_set_elsewhere)
    assert here.budgeted_spend("erin", month="2026-01") is None  # what it read
    monkeypatch.setattr(here, "spend", read)
    assert here.budgeted_spend("erin", month="2026-01").budget == 5.0


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


def test_a_stream_of_submits_reserves_its_frames_in_blocks_and_gives_back_what_it_did_not_use(table):
    """An API process reserves an owner's frames ahead while the owner submits steadily (usage.py FrameAllowance):
    a lone submit reserves exactly its frames, the next ones as many again as were taken lately, and what was not
    used goes back once the owner has stopped submitting for the hold period."""
    client = aws.client("dynamodb")
    allowance = FrameAllowance()

    def take(frames):
        allowance.take(client, table, "alice", frames, limit=100_000, block=100, hold_seconds=1.5)

    take(1)
    assert _usage(table, "alice") == {"frames_active": 1}  # alone: exactly its frames
    take(1)
    assert _usage(table, "alice") == {"frames_active": 3} and allowance.held(table, "alice", 100_000) == 1  # 1 ahead
    take(1)
    assert _usage(table, "alice") == {"frames_active": 3} and allowance.held(table, "alice", 100_000) == 0  # no write
    take(2)
    assert _usage(table, "alice") == {"frames_active": 8} and allowance.held(table, "alice", 100_000) == 3
    deadline = time.monotonic() + 10
    while _usage(table, "alice")["frames_active"] != 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _usage(table, "alice") == {"frames_active": 5} and allowance.held(table, "alice", 100_000) == 0  # given back


def test_near_the_limit_a_submit_reserves_exactly_its_frames_and_past_it_is_refused(table):
    """Blocks are at most 1% of the limit, and none where a block would pass it: the limit holds as without them."""
    client = aws.client("dynamodb")
    allowance = FrameAllowance()
    add_usage(client, table, "bob", 394)

    def take(frames):
        allowance.take(client, table, "bob", frames, limit=400, block=100, hold_seconds=60)

    take(1)  # alone: 395
    take(1)  # 1 ahead: 397
    take(1)  # held: no write
    assert _usage(table, "bob") == {"frames_active": 397}
    # frames held for a write with no limit (a retry's, say) are not this limit's: they were never checked
    allowance.take(client, table, "bob", 1, limit=0, block=100, hold_seconds=60)
    allowance.take(client, table, "bob", 1, limit=0, block=100, hold_seconds=60)
    assert _usage(table, "bob") == {"frames_active": 400} and allowance.held(table, "bob", 0) == 1
    add_usage(client, table, "bob", -3)  # three of bob's frames finished: 397 again
    take(3)  # a block of 3 ahead would pass 400: exactly 3
    assert _usage(table, "bob") == {"frames_active": 400} and allowance.held(table, "bob", 400) == 0
    with pytest.raises(OwnerLimitPassed) as refused:
        take(1)
    assert refused.value.frames_active == 400
    allowance.give_back(idle_seconds=0)  # the process's exit: only the no-limit write's frame was held
    assert _usage(table, "bob") == {"frames_active": 399}


def test_without_blocks_every_submit_reserves_its_own_frames_at_once(table):
    client = aws.client("dynamodb")
    allowance = FrameAllowance()
    for _ in range(3):
        allowance.take(client, table, "carol", 2, limit=0, block=0, hold_seconds=2)
    assert _usage(table, "carol") == {"frames_active": 6} and allowance.held(table, "carol", 0) == 0


def test_a_block_is_at_most_one_percent_of_the_limit(table):
    client = aws.client("dynamodb")
    allowance = FrameAllowance()
    for frames in (1, 50):  # alone, then 1 ahead
        allowance.take(client, table, "erin", frames, limit=1_000, block=100, hold_seconds=60)
    allowance.take(client, table, "erin", 50, limit=1_000, block=100, hold_seconds=60)  # 51 taken lately: 10 ahead
    assert _usage(table, "erin") == {"frames_active": 111} and allowance.held(table, "erin", 1_000) == 10


def test_a_process_that_exits_gives_back_what_it_holds(table):
    """The API process's exit (gunicorn runs atexit in its workers) writes back the frames held ahead."""
    code = (
        "import sys\n"
        "from jobs.adapters import aws\n"
        "from jobs.repository.usage import ALLOWANCE\n"
        "client = aws.client('dynamodb')\n"
        "for frames in (1, 1, 2):\n"
        "    ALLOWANCE.take(client, sys.argv[1], 'dave', frames, limit=0, block=100, hold_seconds=600)\n"
        "print(ALLOWANCE.held(sys.argv[1], 'dave', 0))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "renderproject.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code, table], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"  # 1 alone, 1 + 1 ahead, 2 = 1 held + 1 reserved with 2 ahead
    assert _usage(table, "dave") == {"frames_active": 4}  # 6 reserved, the 2 held given back at the exit
