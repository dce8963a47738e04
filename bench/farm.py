"""What every bench scenario shares: a local farm to run (`running`), its client (`Bench`), and the measures
(requests, CPU and memory by process role, item sizes)."""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from bench import cost
from jobs.devstack.emulator import OBSERVER_MARK
from jobs.devstack.stack import Stack
from jobs.repository.items import OWNER_SHARDS

OWNER = "bench"
TABLE = "render-jobs"
PROJECTION = "id, #s, created_at, started_at, finished_at, worker"
NAMES = {"ExpressionAttributeNames": {"#s": "status"}}
_local = threading.local()


def session() -> requests.Session:
    """One HTTP session (keep-alive connection) per client thread."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


class Bench:
    """A running local stack plus the helpers the scenarios share."""

    def __init__(self, stack: Stack, api: str, key: str):
        self.stack, self.api, self.key = stack, api, key
        self.observer = boto3.session.Session(
            aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).client("dynamodb", endpoint_url=stack.env["AWS_ENDPOINT_URL"], config=Config(user_agent_extra=OBSERVER_MARK))

    def submit(self, *, keyed: bool = False, **body) -> str:
        """One job; `keyed`: with an Idempotency-Key of its own, as renderctl, the add-on and the console send."""
        payload = {"scene": "bench", "width": 64, "height": 64, **body}
        headers = {"Authorization": f"Bearer {self.key}"}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        resp = session().post(f"{self.api}/api/jobs", json=payload, headers=headers, timeout=30)
        resp.raise_for_status()
        return resp.json()["id"]

    def submit_many(self, count: int, clients: int, *, keyed: bool = False, **body) -> list[str]:
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(lambda _: self.submit(keyed=keyed, **body), range(count)))

    def items(self) -> list[dict]:
        """The bench owner's job items, read straight from the table (tagged: not counted as system traffic)."""
        keys = []
        for shard in range(OWNER_SHARDS):  # gsi1 projects keys only, over the owner's shards: list, then read
            start = None
            while True:
                resp = self.observer.query(
                    TableName=TABLE,
                    IndexName="gsi1",
                    KeyConditionExpression="gsi1pk = :o",
                    ExpressionAttributeValues={":o": {"S": f"OWNER#{OWNER}#{shard}"}},
                    **({"ExclusiveStartKey": start} if start else {}),
                )
                keys += [{"pk": i["pk"], "sk": i["sk"]} for i in resp["Items"]]
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break
        return self.get_many({k["pk"]["S"].removeprefix("JOB#") for k in keys})

    def get_many(self, ids: set[str]) -> list[dict]:
        """These jobs' items, read by key (BatchGetItem; tagged: not counted as system traffic). The emulator
        leaks memory for every item a GSI Query returns (moto 5.2), so the bench's own polling avoids them."""
        keys = [{"pk": {"S": f"JOB#{i}"}, "sk": {"S": "JOB"}} for i in sorted(ids)]
        items = []
        for first in range(0, len(keys), 100):
            pending = {TABLE: {"Keys": keys[first : first + 100], "ProjectionExpression": PROJECTION, **NAMES}}
            while pending:
                resp = self.observer.batch_get_item(RequestItems=pending)
                items += resp["Responses"].get(TABLE, [])
                pending = resp.get("UnprocessedKeys") or {}
        return items

    def wait_finished(self, ids: set[str], timeout: float = 600) -> dict[str, dict]:
        """The jobs' items once every one has ended. It looks at the ten newest still running (ids sort by
        creation; the queues hand out the oldest first) until they have ended, then reads the rest: the
        one-process emulator serves the bench's reads on the farm's CPU, and the raw loop makes none."""
        deadline = time.monotonic() + timeout
        ended: dict[str, dict] = {}

        def look(jobs: set[str]) -> None:
            for item in self.get_many(jobs):
                if item["status"]["S"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    ended[item["id"]["S"]] = item

        while True:
            newest = set(sorted(ids - ended.keys())[-10:])
            look(newest)
            if not newest - ended.keys():
                look(ids - ended.keys())
                if len(ended) == len(ids):
                    return ended
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {len(ids)} jobs")
            time.sleep(2.0)

    def counts(self, field: str = "count", who: str = "system") -> Counter:
        """The system's requests by (service, action) since the last reset (`who="observer"`: the bench's own);
        `field="cpu_seconds"`: the emulator's CPU serving them."""
        rows = self.stack.emulator_counts()
        return Counter({(r["service"], r["action"]): r[field] for r in rows if r["who"] == who})

    def trace(self, since: float) -> list[dict]:
        """The system requests the emulator served since `since` (epoch seconds): start, end, service, action, note."""
        url = f"{self.stack.env['AWS_ENDPOINT_URL']}/_emulator/trace?since={since}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)["trace"]

    def cost(self, per: float, *, tables: tuple[str, ...] = (TABLE,)) -> cost.Cost:
        return cost.cost_of(cost.capacity(self.stack.env["AWS_ENDPOINT_URL"]), self.counts(), per, tables=tables)

    def bytes_written(self, per: float, table: str = TABLE) -> float:
        """The bytes of the items written to the tables named `table...` (each write's item as written), per `per`."""
        written = cost.bytes_written(self.stack.env["AWS_ENDPOINT_URL"])
        return sum(n for name, n in written.items() if name.startswith(table)) / per

    def stop_farm(self) -> None:
        """Stop the API and workers (the emulator stays), so the raw loop runs alone on the same emulator."""
        for name in [n for n in self.stack.processes if n != "emulator"]:
            self.stack.stop(name)
        time.sleep(2)  # let the last long polls end before counting again
        self.stack.reset_emulator_counts()


@contextmanager
def running(
    *,
    workers: int,
    concurrency: int,
    render_seconds: str,
    log_level: str = "WARNING",
    env: dict | None = None,
    latency: str = "",
):
    """A local stack for one scenario: emulator (with AWS-like `latency` per call when given), workers, API."""
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    stack = Stack(log_dir=logs)
    stack.env.update({"RENDER_SIMULATED_SECONDS": render_seconds, "RENDER_LOG_LEVEL": log_level, **(env or {})})
    try:
        stack.start_emulator(latency=latency)
        stack.bootstrap()
        key = stack.create_api_key(OWNER, "--allow-high")
        for i in range(workers):
            stack.start_worker(f"worker{i}", concurrency=concurrency)
        yield Bench(stack, stack.start_api(workers=2, threads=8), key)
    finally:
        stack.stop_all()
        print(f"  logs: {logs}")


def seconds_between(item: dict, start: str, end: str) -> float:
    return (datetime.fromisoformat(item[end]["S"]) - datetime.fromisoformat(item[start]["S"])).total_seconds()


def idle_between_jobs(items) -> list[float]:
    """Seconds each pool process (the items' `worker`) sat between finishing one job and starting its next."""
    by_worker: dict[str, list[dict]] = {}
    for item in items:
        if "worker" in item and "finished_at" in item:
            by_worker.setdefault(item["worker"]["S"], []).append(item)
    gaps = []
    for done in by_worker.values():
        done.sort(key=lambda i: i["started_at"]["S"])
        ends = [
            (datetime.fromisoformat(i["started_at"]["S"]), datetime.fromisoformat(i["finished_at"]["S"])) for i in done
        ]
        gaps += [(started - finished).total_seconds() for (_, finished), (started, _) in itertools.pairwise(ends)]
    return gaps


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def print_requests(counts: Counter, per: float, unit: str) -> None:
    total = sum(counts.values())
    print(f"  AWS requests per {unit}: {total / per:.2f}  (total {total})")
    for (service, action), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"    {service:9s} {action:24s} {n / per:7.3f}")


def group_pids(group: int) -> list[int]:
    """The processes of one process group (a worker's main process and its pool, gunicorn and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == group:  # field 5: the process group
            pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def cpu_by_role(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the emulator, the API (gunicorn and its workers) and every worker group."""
    groups = {"emulator": [], "API": [], "workers": []}
    for name, proc in stack.processes.items():
        role = "workers" if name.startswith("worker") else "API" if name == "api" else "emulator"
        if name == "emulator":
            groups[role].append(proc.pid)
        elif name == "api" or name.startswith("worker"):
            groups[role] += group_pids(proc.pid)
    return {role: cpu_seconds(pids) for role, pids in groups.items()}


def consumers_cpu(stack: Stack) -> float:
    """CPU seconds so far of the worker groups' main processes (Celery's consumers), their pools left out."""
    return cpu_seconds([proc.pid for name, proc in stack.processes.items() if name.startswith("worker")])


def rss_mib(pids: list[int]) -> float:
    """Resident memory of the processes, summed, in MiB (VmRSS): pages a forked pool shares with its parent
    are counted once per process."""
    return _proc_sum(pids, "status", "VmRSS:")


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of the processes, summed, in MiB: each shared page is split between the
    processes that share it, so the sum is the memory the group really takes."""
    return _proc_sum(pids, "smaps_rollup", "Pss:")


def _proc_sum(pids: list[int], name: str, field: str) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def largest_items(bench: Bench) -> str:
    """The largest item written of each kind (bytes, as DynamoDB sizes it): a job item past 1 KB costs more
    than one write unit per write."""
    largest = cost.largest_items(bench.stack.env["AWS_ENDPOINT_URL"])
    return "largest item written: " + ", ".join(f"{kind} {size} B" for kind, size in sorted(largest.items()))


def memory_line(bench: Bench, label: str) -> str:
    stack = bench.stack
    workers = [group_pids(stack.processes[n].pid) for n in stack.processes if n.startswith("worker")]
    worker = max((pss_mib(pids) for pids in workers), default=0.0)
    worker_rss = max((rss_mib(pids) for pids in workers), default=0.0)
    api = [pid for pid in group_pids(stack.processes["api"].pid) if pid != stack.processes["api"].pid]
    per_api = max((pss_mib([pid]) for pid in api), default=0.0)
    per_api_rss = max((rss_mib([pid]) for pid in api), default=0.0)
    emulator = rss_mib([stack.processes["emulator"].pid])
    return (
        f"memory {label}: a worker group (main + pool) {worker:.0f} MiB PSS ({worker_rss:.0f} MiB RSS summed); "
        f"an API worker process {per_api:.0f} MiB PSS ({per_api_rss:.0f} MiB RSS); emulator {emulator:.0f} MiB"
    )
