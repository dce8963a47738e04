"""`make bench`: push N zero-render-time jobs through the real local pipeline and print the figures.

API (gunicorn) -> SQS -> `celery worker` -> S3, against the embedded emulator. Prints jobs/s, p50/p95
submit-to-COMPLETED latency (from the items' created_at/finished_at), AWS requests per job by service
and action (counted by the emulator, so every process's traffic is seen at the HTTP layer; the bench's
own polling is tagged and left out), and idle ReceiveMessage calls per minute per queue.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from jobs.devstack.emulator import OBSERVER_MARK
from jobs.devstack.stack import Stack

OWNER = "bench"


def observer_client(stack: Stack):
    """A DynamoDB client whose requests the emulator counts apart (the bench watching, not the system)."""
    return boto3.session.Session(
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    ).client("dynamodb", endpoint_url=stack.env["AWS_ENDPOINT_URL"], config=Config(user_agent_extra=OBSERVER_MARK))


def owner_items(client, table: str) -> list[dict]:
    items, start = [], None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        resp = client.query(
            TableName=table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :o",
            ExpressionAttributeValues={":o": {"S": f"OWNER#{OWNER}"}},
            ProjectionExpression="id, #s, created_at, finished_at",
            ExpressionAttributeNames={"#s": "status"},
            **kwargs,
        )
        items += resp["Items"]
        start = resp.get("LastEvaluatedKey")
        if not start:
            return items


def submit_all(api: str, key: str, count: int, clients: int, frames: int = 1) -> list[str]:
    def one(_: int) -> str:
        body = {"scene": "bench", "width": 64, "height": 64, "frame_start": 1, "frame_end": frames}
        resp = session().post(f"{api}/api/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        resp.raise_for_status()
        return resp.json()["id"]

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(count)))


_local = threading.local()


def session() -> requests.Session:
    """One HTTP session (keep-alive connection) per client thread."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def wait_completed(client, table: str, expected: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = owner_items(client, table)
        done = [i for i in items if i["status"]["S"] in ("COMPLETED", "FAILED")]
        if len(done) >= expected:
            return items
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {len(done)}/{expected} jobs finished")
        time.sleep(0.5)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def system_counts(stack: Stack) -> Counter:
    return Counter({(r["service"], r["action"]): r["count"] for r in stack.emulator_counts() if r["who"] == "system"})


def print_requests(counts: Counter, per: int, unit: str) -> float:
    total = sum(counts.values())
    print(f"  AWS requests per {unit}: {total / per:.2f}  (total {total})")
    for (service, action), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"    {service:9s} {action:24s} {n / per:7.3f}")
    return total / per


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the render pipeline end to end.")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitting clients")
    parser.add_argument("--idle-seconds", type=int, default=60, help="how long to watch idle workers poll")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    stack = Stack(log_dir=logs)
    stack.env.update({"RENDER_SIMULATED_SECONDS": "0", "RENDER_LOG_LEVEL": "WARNING"})
    try:
        stack.start_emulator()
        stack.bootstrap()
        key = stack.create_api_key(OWNER)
        for i in range(args.workers):
            stack.start_worker(f"worker{i}", concurrency=args.concurrency)
        api = stack.start_api(workers=2, threads=8)
        observer = observer_client(stack)
        table = "render-jobs"

        warm = min(10, args.jobs)
        submit_all(api, key, warm, args.clients)  # warm caches (queue URLs, key lookups, connections)
        wait_completed(observer, table, warm, timeout=120)
        stack.reset_emulator_counts()

        started = time.monotonic()
        ids = set(submit_all(api, key, args.jobs, args.clients))
        submitted = time.monotonic() - started
        items = wait_completed(observer, table, warm + args.jobs, timeout=600)
        counts = system_counts(stack)

        mine = [i for i in items if i["id"]["S"] in ids]
        failed = [i for i in mine if i["status"]["S"] != "COMPLETED"]
        created = [datetime.fromisoformat(i["created_at"]["S"]) for i in mine]
        finished = [datetime.fromisoformat(i["finished_at"]["S"]) for i in mine if "finished_at" in i]
        latencies = [
            (
                datetime.fromisoformat(i["finished_at"]["S"]) - datetime.fromisoformat(i["created_at"]["S"])
            ).total_seconds()
            for i in mine
        ]
        span = (max(finished) - min(created)).total_seconds()
        print(
            f"\nPipeline bench: {args.jobs} one-frame jobs, {args.workers} workers x {args.concurrency}, "
            f"{args.clients} clients, render time 0"
        )
        print(f"  completed: {len(mine) - len(failed)}/{args.jobs}  failed: {len(failed)}")
        print(f"  submit: {args.jobs / submitted:.1f} jobs/s accepted by the API")
        print(f"  throughput: {args.jobs / span:.1f} jobs/s (first submit to last COMPLETED: {span:.1f}s)")
        print(
            f"  latency submit->COMPLETED: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
        )
        print_requests(counts, args.jobs, "job")

        if args.idle_seconds > 0:
            time.sleep(3)
            stack.reset_emulator_counts()
            time.sleep(args.idle_seconds)
            idle = system_counts(stack)[("sqs", "ReceiveMessage")]
            per_minute = idle / (args.idle_seconds / 60) / args.workers / 3
            print(
                f"  idle: {per_minute:.2f} ReceiveMessage per minute per queue per worker "
                f"({idle} in {args.idle_seconds}s, {args.workers} workers x 3 queues)"
            )
    finally:
        stack.stop_all()
        print(f"  logs: {logs}")


if __name__ == "__main__":
    main()
