"""An owner's usage item, `pk=OWNER#<owner>, sk=USAGE`: the frames of its jobs waiting or rendering
(`frames_active`, the fairness limit) and the worker-seconds its jobs used, by month (`spent_<YYYY-MM>`, what
its budget is checked against: budgets.py).

A submit reserves a job's frames with a conditional `ADD` (`add_usage`); an API process reserves an owner's
frames ahead in blocks while that owner submits steadily (`FrameAllowance`), so a stream of submits writes the
usage item once a block, not once a job. The write that ends a job settles it
(`settle_usage`): its frames leave `frames_active` and its worker-seconds are added to the month it ended in,
in one `UpdateItem` of the usage item. In a render worker's pool process the settles are batched
(`batch_settles`, from the worker's start-up): each owner's sums are written at most once every
RENDER_USAGE_FLUSH_SECONDS by a daemon thread, and at the process's shutdown, so a busy worker ending many
jobs of one owner writes its usage item a few times a minute, not once a job. Elsewhere (the API, the
sweeper, tests) a settle writes at once.

Best effort, after the conditional write that ended the job: a lost settle (AWS unreachable, or a worker
killed within its flush interval) leaves the owner a little less room and under-counts its spend; it never
blocks or doubles a state change.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import month_of
from jobs.repository import partitions as P
from jobs.repository.items import decimal, deserialize, item_frames, parse_iso

log = logging.getLogger(__name__)


def usage_key(owner: str) -> dict[str, Any]:
    return {"pk": {"S": P.OWNER + owner}, "sk": {"S": P.USAGE}}


def spend_attribute(month: str) -> str:
    """The usage item's attribute of a month's worker-seconds: `spent_2026-12`."""
    return f"spent_{month}"


def add_usage(client, table: str, owner: str, frames: int, *, room: int | None = None) -> None:
    """ADD `frames` (negative to give back) to the owner's usage; with `room`, only if usage <= room before."""
    params: dict[str, Any] = {
        "TableName": table,
        "Key": usage_key(owner),
        "UpdateExpression": "ADD frames_active :frames",
        "ExpressionAttributeValues": {":frames": {"N": str(frames)}},
    }
    if room is not None:
        params["ConditionExpression"] = "attribute_not_exists(frames_active) OR frames_active <= :room"
        params["ExpressionAttributeValues"][":room"] = {"N": str(room)}
        params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    with unavailable_as_503("DynamoDB"):
        client.update_item(**params)


class OwnerLimitPassed(Exception):
    """The owner's usage would pass its limit: `frames_active` is what the usage item held (blocks held ahead too)."""

    def __init__(self, frames_active: int):
        super().__init__(frames_active)
        self.frames_active = frames_active


def reserve_usage(client, table: str, owner: str, frames: int, *, limit: int) -> None:
    """ADD `frames` to the owner's usage unless that passes `limit` (0: no limit); OwnerLimitPassed if it would."""
    try:
        add_usage(client, table, owner, frames, room=limit - frames if limit else None)
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        raise OwnerLimitPassed(int(deserialize(exc.response.get("Item", {})).get("frames_active", 0))) from exc


def give_back_usage(client, table: str, owner: str, frames: int, job_id: str) -> None:
    """Frames leave the owner's usage at once (a job not accepted after all). Best effort."""
    try:
        add_usage(client, table, owner, -frames)
    except Exception:
        log.warning("could not give back the usage of job %s", job_id, exc_info=True)


def charge(client, table: str, owner: str, *, frames: int, spent: dict[str, float]) -> None:
    """One write of the usage item: `frames` leave `frames_active`, `spent` (worker-seconds by month) is added."""
    expression = ["frames_active :frames"]
    values: dict[str, Any] = {":frames": {"N": str(-frames)}}
    names: dict[str, str] = {}
    for n, (month, worker_seconds) in enumerate(sorted(spent.items())):
        expression.append(f"#m{n} :s{n}")
        names[f"#m{n}"] = spend_attribute(month)
        values[f":s{n}"] = {"N": str(decimal(worker_seconds))}
    params: dict[str, Any] = {
        "TableName": table,
        "Key": usage_key(owner),
        "UpdateExpression": "ADD " + ", ".join(expression),
        "ExpressionAttributeValues": values,
    }
    if names:
        params["ExpressionAttributeNames"] = names
    with unavailable_as_503("DynamoDB"):
        client.update_item(**params)


def add_spend(client, table: str, owner: str, worker_seconds: float, now: datetime) -> None:
    """ADD worker-seconds to the owner's spend of `now`'s month (nothing else changes)."""
    charge(client, table, owner, frames=0, spent={month_of(now): worker_seconds})


class UsageLedger:
    """Settles of ended jobs, summed by (table, owner) until the next flush (all in this process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._client = None
        self._every: float | None = None  # None: write at once
        self._wake = threading.Event()

    def batch(self, every: float) -> None:
        """Sum settles and write them every `every` seconds from a daemon thread (a worker's pool process)."""
        if every <= 0:
            return
        self._every = every
        threading.Thread(target=self._run, name="usage-flush", daemon=True).start()

    def settle(self, client, table: str, owner: str, *, frames: int, month: str, worker_seconds: float) -> None:
        if self._every is None:
            self._write(client, table, owner, frames, {month: worker_seconds} if worker_seconds > 0 else {})
            return
        with self._lock:
            self._client = client
            entry = self._pending.setdefault((table, owner), {"frames": 0, "spent": defaultdict(float)})
            entry["frames"] += frames
            if worker_seconds > 0:
                entry["spent"][month] += worker_seconds

    def flush(self) -> None:
        """Write every owner's sums now (one UpdateItem each); what fails to write is logged and dropped."""
        with self._lock:
            pending, self._pending = self._pending, {}
            client = self._client
        for (table, owner), entry in pending.items():
            self._write(client, table, owner, entry["frames"], dict(entry["spent"]))

    def after_fork(self) -> None:
        """A forked child starts empty, writing at once, with no thread (the parent writes what it noted)."""
        self._lock = threading.Lock()
        self._pending = {}
        self._every = None
        self._wake = threading.Event()

    def _run(self) -> None:
        every = self._every
        while not self._wake.wait(every):
            self.flush()

    @staticmethod
    def _write(client, table: str, owner: str, frames: int, spent: dict[str, float]) -> None:
        try:
            charge(client, table, owner, frames=frames, spent=spent)
        except Exception:
            log.warning("could not settle %s frames of owner %s", frames, owner, exc_info=True)


LEDGER = UsageLedger()
os.register_at_fork(after_in_child=LEDGER.after_fork)


class FrameAllowance:
    """Frames this process reserved ahead for each owner, taken by its submits without a write.

    A submit takes its frames from what the process holds for the owner; when that is not enough it reserves
    them with a conditional ADD, plus as many again as the owner's submits took here in the last `hold_seconds`
    (at most `block` frames, and at most 1% of the limit): a lone submit reserves exactly its frames, a steady
    stream writes the usage item once a block. Near the limit the block is dropped and the submit reserves
    exactly its frames, as it would without an allowance. What a process holds goes back to the usage item
    (one ADD) once its owner has not submitted here for `hold_seconds`, and at the process's exit.

    The cost: another owner's view of the usage (and the 429 at the limit) counts up to a block per API
    process that it has not used yet, for at most `hold_seconds` after its last submit; a process killed with
    a block held leaves that many frames counted (as a lost settle does: nothing recounts them yet).
    `block` 0: every submit reserves exactly its own frames, at once (the API's default is
    RENDER_USAGE_BLOCK_FRAMES).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (table, owner, limit) -> what is held: frames reserved under one limit's check serve only that limit
        self._holds: dict[tuple[str, str, int], _Hold] = {}
        self._client = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._hold_seconds = 1.0

    def take(self, client, table: str, owner: str, frames: int, *, limit: int, block: int, hold_seconds: float) -> None:
        """Count `frames` of a new job in the owner's usage (held here or reserved); OwnerLimitPassed if they
        would pass `limit` (0: no limit)."""
        block = min(block, limit // 100) if limit else block
        if block <= 0 or hold_seconds <= 0:
            reserve_usage(client, table, owner, frames, limit=limit)
            return
        key = (table, owner, limit)
        now = time.monotonic()
        with self._lock:
            self._client = client
            self._hold_seconds = hold_seconds
            hold = self._holds.setdefault(key, _Hold())
            recent = hold.recent(now, hold_seconds)
            hold.used(now, frames)
            if hold.frames >= frames:
                hold.frames -= frames
                return
            had, hold.frames = hold.frames, 0
        self._start()  # forgets this owner once idle, whether or not it holds frames
        need = frames - had
        extra = min(block, recent)
        try:
            try:
                reserve_usage(client, table, owner, need + extra, limit=limit)
            except OwnerLimitPassed:
                if not extra:
                    raise
                extra = 0  # near the limit: exactly this job's frames, as without an allowance
                reserve_usage(client, table, owner, need, limit=limit)
        except Exception:
            self._put_back(key, had)
            raise
        self._put_back(key, extra)

    def _put_back(self, key: tuple[str, str, int], frames: int) -> None:
        if frames:
            with self._lock:
                self._holds.setdefault(key, _Hold()).frames += frames

    def give_back(self, *, idle_seconds: float) -> None:
        """Write back what has been held without a submit for `idle_seconds` (0: everything), and forget those
        owners (their recent submits too); best effort."""
        now = time.monotonic()
        with self._lock:
            idle = [key for key, hold in self._holds.items() if now - hold.last_used >= idle_seconds]
            due = [(key, self._holds.pop(key).frames) for key in idle]
            client = self._client
        for (table, owner, _), frames in due:
            if frames:
                give_back_usage(client, table, owner, frames, "(held ahead)")

    def held(self, table: str, owner: str, limit: int) -> int:
        with self._lock:
            hold = self._holds.get((table, owner, limit))
            return hold.frames if hold else 0

    def close(self) -> None:
        """At the process's exit: stop the thread (its write in flight done), then give back everything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.give_back(idle_seconds=0)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="usage-allowance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(min(self._hold_seconds / 2, 1.0)):
            self.give_back(idle_seconds=self._hold_seconds)

    def after_fork(self) -> None:
        """A forked child holds nothing and has no thread (gunicorn forks its workers from a preloaded app)."""
        self._lock = threading.Lock()
        self._holds = {}
        self._thread = None
        self._stop = threading.Event()


class _Hold:
    """One owner's frames held in this process, and its submits of the last hold period (what sizes a block)."""

    def __init__(self) -> None:
        self.frames = 0
        self.last_used = 0.0
        self._taken: deque[tuple[float, int]] = deque()
        self._taken_frames = 0

    def recent(self, now: float, seconds: float) -> int:
        """Frames the owner's submits took here in the last `seconds`."""
        while self._taken and now - self._taken[0][0] > seconds:
            self._taken_frames -= self._taken.popleft()[1]
        return self._taken_frames

    def used(self, now: float, frames: int) -> None:
        self._taken.append((now, frames))
        self._taken_frames += frames
        self.last_used = now


ALLOWANCE = FrameAllowance()
os.register_at_fork(after_in_child=ALLOWANCE.after_fork)
atexit.register(ALLOWANCE.close)


def batch_settles(every: float) -> None:
    """Batch this process's settles (a render worker's pool process; jobs ended by the API or the sweeper
    settle at once)."""
    LEDGER.batch(every)


def flush_settles() -> None:
    LEDGER.flush()


def settle_usage(client, table: str, item: dict[str, Any]) -> None:
    """A job reached a final state by the conditional write that returned `item`: its frames leave the usage and
    its worker-seconds (those of this attempt's end: beyond `charged_seconds`, which a retry sets) are charged
    to its owner's month, once, by the writer that ended it (not by every progress write: no owner item is
    written by every chunk)."""
    # A retried job's item keeps its earlier attempts' seconds; the retry noted them as charged.
    worked = float(item.get("worker_seconds", 0)) - float(item.get("charged_seconds", 0))
    ended = parse_iso(item.get("finished_at") or item.get("updated_at"))
    LEDGER.settle(
        client,
        table,
        item["owner"],
        frames=len(item_frames(item)),
        month=month_of(ended) if ended else "",
        worker_seconds=worked if ended is not None else 0.0,
    )
