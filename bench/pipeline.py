"""`make bench`: push work through the real local pipeline and print the figures.

API (gunicorn) -> SQS -> `celery worker` -> S3, against the embedded emulator, in three scenarios:
- `jobs`: N one-frame jobs with zero render time: jobs/s, p50/p95 submit-to-COMPLETED latency (from the
  items' created_at/finished_at), idle polling per minute, the cost model (bench/cost.py); then the raw loop
  (bench/raw.py) on the same emulator, and both side by side: one job's round trips (from the emulator's
  trace), AWS requests per job by action, item bytes written, client and emulator CPU per job, jobs/s and
  their ratio, and how busy each run kept the emulator and the machine (over 70%: no headroom, CPU-bound).
  With `--latency aws` every call waits an AWS-like round trip (jobs/devstack/latency.py).
- `consumer`: the jobs scenario in production's shape, one worker process with one consumer against the raw
  loop's one consumer thread (up to 150 jobs, one client), where the machine has headroom.
- `frames`: one many-frame job (240 frames in chunks of 10): AWS requests per frame and per chunk, the
  cost per frame, and the raw loop's time for the same job.
- `priority`: a backlog of low-priority chunks, then a high-priority job: how long the high job waited.
- `load`: 1,000 jobs from 20 concurrent clients: all COMPLETED, none lost, none completed twice.
- `takeover`: AWS requests per frame of 3 s renders (the lease and visibility keepers' cost), then a worker
  SIGKILLed mid-chunk: seconds from the kill to the chunk claimed by another worker.
- `blender`: the demo scene (scenes/demo_scene.py), 24 frames at 320x180, 16 samples: one job in chunks split evenly
  on 2 workers (upload included, submit to COMPLETED) against one Blender process rendering the same frames
  with the same settings; prints the ratio farm / direct wall time and the seconds per frame of each.
- `quote`: dry-run quotes of the demo scene against the jobs they quote (bench/quote.py).
Requests are counted by the emulator, so every process's traffic is seen at the HTTP layer; the bench's
own polling is tagged and left out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import boto3

from bench import quote, raw, scale
from bench.compare import path_summary, print_side_by_side
from bench.farm import (
    TABLE,
    consumers_cpu,
    cpu_by_role,
    group_pids,
    idle_between_jobs,
    largest_items,
    memory_line,
    percentile,
    print_requests,
    rss_mib,
    running,
    seconds_between,
    session,
)
from jobs.devstack.latency import ENV as LATENCY_ENV
from jobs.devstack.latency import parse_latency
from jobs.devstack.stack import ROOT, Stack
from jobs.domain import MAX_CHUNK_SIZE
from jobs.worker.identity import worker_id_of


def scenario_jobs_rounds(args) -> None:
    """The jobs scenario `--jobs-rounds` times, each with its own stack: one run's ratio to the raw loop moves by a
    fifth on a shared machine, so several rounds print their median."""
    ratios = [scenario_jobs(args) for _ in range(args.jobs_rounds)]
    if len(ratios) > 1:
        print(
            f"\n[jobs] throughput ratio project/raw over {len(ratios)} rounds: median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}; each: {', '.join(f'{r:.2f}' for r in ratios)})"
        )


def scenario_consumer(args) -> None:
    """The jobs scenario in production's shape: one worker process with one pool process (each Fargate worker
    task runs one, `worker_concurrency`), one submitting client, against the raw loop's one consumer thread. The
    machine keeps headroom here, so the ratio compares round trips and per-job work rather than the CPU of two
    stacks sharing two cores with their emulator (the jobs scenario's 8 consumers)."""
    shape = {"workers": 1, "concurrency": 1, "clients": 1, "jobs": min(args.jobs, 150), "idle_seconds": 0}
    print("\n[consumer] production's shape: one worker process, one consumer")
    scenario_jobs_rounds(argparse.Namespace(**{**vars(args), **shape}))


def scenario_jobs(args) -> float:
    """One-frame jobs through the project and through the raw loop; returns the throughput ratio project/raw."""
    print(
        f"\n[jobs] {args.jobs} one-frame jobs, {args.workers} workers x {args.concurrency}, {args.clients} clients, "
        "render time 0"
    )
    with running(workers=args.workers, concurrency=args.concurrency, render_seconds="0", latency=args.latency) as bench:
        if args.latency:
            print(f"  emulator latency per request: {parse_latency(args.latency)} (milliseconds)")
        time.sleep(3)
        print(f"  {memory_line(bench, 'idle')}")
        warm = bench.submit_many(min(10, args.jobs), args.clients)  # warm caches (queue URLs, keys, connections)
        bench.wait_finished(set(warm), timeout=120)
        pickups, windows = [], []
        for _ in range(20):  # idle workers: submit one job at a time, how soon is it PROCESSING?
            submitted = time.time()
            job = bench.submit()
            key = {"pk": {"S": f"JOB#{job}"}, "sk": {"S": "JOB"}}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                item = bench.observer.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
                if item["status"]["S"] == "COMPLETED":
                    break
                time.sleep(0.05)
            windows.append((submitted, time.time()))
            pickups.append(seconds_between(item, "created_at", "started_at"))
            time.sleep(1.0)  # idle again: every queue back in its long poll
        path = path_summary(bench.trace(windows[0][0] - 1), windows)
        print(
            f"  idle pickup, submit to PROCESSING: p50 {statistics.median(pickups) * 1000:.0f} ms, "
            f"max {max(pickups) * 1000:.0f} ms (goal p50 <= 25 ms)"
        )
        cpu_before, consumers_before = cpu_by_role(bench.stack), consumers_cpu(bench.stack)
        bench.stack.reset_emulator_counts()
        started = time.monotonic()
        ids = set(bench.submit_many(args.jobs, args.clients))
        accepted = time.monotonic() - started
        items = bench.wait_finished(ids)
        cpu = {role: cpu_by_role(bench.stack)[role] - seconds for role, seconds in cpu_before.items()}
        consumers = (consumers_cpu(bench.stack) - consumers_before) / args.jobs * 1000
        counts, moto_cpu = bench.counts(), bench.counts("cpu_seconds")
        watching = sum(bench.counts("cpu_seconds", who="observer").values())
        cpu["emulator"] -= watching  # the bench's own reads of the jobs' progress: the raw loop makes none
        done = [i for i in items.values() if i["status"]["S"] == "COMPLETED"]
        latencies = [seconds_between(i, "created_at", "finished_at") for i in done]
        first = min(datetime.fromisoformat(i["created_at"]["S"]) for i in items.values())
        last = max(datetime.fromisoformat(i["finished_at"]["S"]) for i in done)
        print(f"  completed: {len(done)}/{args.jobs}")
        print(f"  submit: {args.jobs / accepted:.1f} jobs/s accepted by the API")
        print(
            f"  throughput: {args.jobs / (last - first).total_seconds():.1f} jobs/s "
            f"(first submit to last COMPLETED: {(last - first).total_seconds():.1f}s)"
        )
        print(
            f"  latency submit->COMPLETED: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
        )
        idle = idle_between_jobs(done)
        print(
            f"  a pool process idle between two jobs (its ack, the next receive): p50 "
            f"{statistics.median(idle) * 1000:.0f} ms, p95 {percentile(idle, 95) * 1000:.0f} ms, "
            f"max {max(idle) * 1000:.0f} ms"
        )
        print(
            "  CPU per job: "
            + ", ".join(f"{role} {seconds / args.jobs * 1000:.1f} ms" for role, seconds in cpu.items())
            + f" (Celery's consumers {consumers:.1f}, the pools {cpu['workers'] / args.jobs * 1000 - consumers:.1f})"
            + f" (all: {sum(cpu.values()) / args.jobs * 1000:.1f} ms on {os.cpu_count()} cores; the emulator's "
            f"{watching / args.jobs * 1000:.1f} ms serving the bench's own reads of the jobs left out)"
        )
        print(f"  {memory_line(bench, 'after the run')}")
        project_cost, project_bytes = bench.cost(args.jobs), bench.bytes_written(args.jobs)
        for line in project_cost.lines("job"):
            print(f"  {line}")
        print(f"  {largest_items(bench)}")
        project_rate = args.jobs / (last - first).total_seconds()
        if args.idle_seconds > 0:
            time.sleep(3)
            bench.stack.reset_emulator_counts()
            time.sleep(args.idle_seconds)
            idle = bench.counts()[("sqs", "ReceiveMessage")]
            per_minute = idle / (args.idle_seconds / 60) / args.workers / 3
            print(
                f"  idle: {per_minute:.2f} ReceiveMessage per minute per queue per worker "
                f"({idle} in {args.idle_seconds}s, {args.workers} workers x 3 queues)"
            )
        keyed = min(args.jobs, 100)  # as the clients the project ships submit: each with an Idempotency-Key
        bench.stack.reset_emulator_counts()
        bench.wait_finished(set(bench.submit_many(keyed, args.clients, keyed=True)))
        keyed_cost = bench.cost(keyed)
        print(
            f"  with an Idempotency-Key ({keyed} jobs, as renderctl, the Blender add-on and the console submit): "
            f"{keyed_cost.write_units:.2f} write units per job, ${keyed_cost.dollars_per_million:.2f} per million"
        )
        bench.stop_farm()
        consumers = args.workers * args.concurrency
        raw_before: dict[str, float] = {}

        def measure() -> None:  # after the raw loop's warm-up and one-at-a-time jobs: count its N jobs alone
            bench.stack.reset_emulator_counts()
            raw_before.update(emulator=cpu_by_role(bench.stack)["emulator"], loop=sum(os.times()[:2]))

        result = raw.raw_jobs(
            bench.stack.env, jobs=args.jobs, clients=args.clients, consumers=consumers, alone=10, measure=measure
        )
        raw_cpu = {
            "emulator": cpu_by_role(bench.stack)["emulator"] - raw_before["emulator"],
            "loop": sum(os.times()[:2]) - raw_before["loop"],
        }
        raw_counts, raw_moto_cpu = bench.counts(), bench.counts("cpu_seconds")
        raw_cost, raw_bytes = bench.cost(args.jobs, tables=("raw-jobs",)), bench.bytes_written(args.jobs, "raw-jobs")
        raw_path = path_summary(bench.trace(result["windows"][0][0] - 1), result["windows"])
        print(f"  raw loop ({consumers} consumer threads, same emulator): {result['jobs_per_second']:.1f} jobs/s")
        for line in raw_cost.lines("job"):
            print(f"    raw {line}")
        print_side_by_side(
            args,
            project={
                "counts": counts,
                "moto": moto_cpu,
                "path": path,
                "bytes": project_bytes,
                "client": cpu["API"] + cpu["workers"],
                "emulator": cpu["emulator"],
                "rate": project_rate,
            },
            raw={
                "counts": raw_counts,
                "moto": raw_moto_cpu,
                "path": raw_path,
                "bytes": raw_bytes,
                "client": raw_cpu["loop"],
                "emulator": raw_cpu["emulator"],
                "rate": result["jobs_per_second"],
            },
        )
        return project_rate / result["jobs_per_second"]


def scenario_frames(args) -> None:
    frames, chunk = args.frames, args.chunk_size
    print(
        f"\n[frames] one job of {frames} frames in chunks of {chunk}, {args.workers} workers x {args.concurrency}, "
        "render time 0"
    )
    with running(workers=args.workers, concurrency=args.concurrency, render_seconds="0") as bench:
        bench.wait_finished({bench.submit()}, timeout=60)  # warm up
        bench.stack.reset_emulator_counts()
        job_id = bench.submit(frame_start=1, frame_end=frames, chunk_size=chunk)
        item = bench.wait_finished({job_id})[job_id]
        counts = bench.counts()
        chunks = -(-frames // chunk)
        print(
            f"  {item['status']['S']} in {seconds_between(item, 'created_at', 'finished_at'):.1f}s "
            f"({frames / seconds_between(item, 'created_at', 'finished_at'):.0f} frames/s)"
        )
        print(
            f"  fan-out: {counts[('sqs', 'SendMessage')] - 1} chunk messages for {chunks} chunks; "
            f"{counts[('dynamodb', 'PutItem')]} PutItems (the chunk items' creation), "
            f"{counts[('dynamodb', 'UpdateItem')]} UpdateItems (claims, progress writes and their counts: one pair "
            f"per RENDER_PROGRESS_SECONDS of frames and at a chunk's end), "
            f"{counts[('dynamodb', 'TransactWriteItems')]} transactions"
        )
        print_requests(counts, frames, "frame")
        print(f"  per chunk: {sum(counts.values()) / chunks:.1f} requests")
        for line in bench.cost(frames).lines("frame"):
            print(f"  {line}")
        bench.stop_farm()
        project = seconds_between(item, "created_at", "finished_at")
        raw_seconds = raw.raw_frames(
            bench.stack.env, frames=frames, chunk_size=chunk, consumers=args.workers * args.concurrency
        )
        print(
            f"  raw loop: the same job in {raw_seconds:.1f}s; "
            f"speed ratio project/raw {raw_seconds / project:.2f} (goal >= 0.7)"
        )


def scenario_priority(args) -> None:
    print("\n[priority] 1 worker x 1; a backlog of 40 low-priority one-frame chunks of 0.5 s, then a high job")
    with running(workers=1, concurrency=1, render_seconds="0.5") as bench:
        waits = []
        for _ in range(args.priority_rounds):
            backlog = bench.submit(frame_start=1, frame_end=40, chunk_size=1, priority="low")
            time.sleep(3)
            urgent = bench.submit(priority="high")
            item = bench.wait_finished({urgent})[urgent]
            waits.append(seconds_between(item, "created_at", "started_at"))
            session().post(
                f"{bench.api}/api/jobs/{backlog}/cancel", headers={"Authorization": f"Bearer {bench.key}"}, timeout=10
            )
            bench.wait_finished({backlog})
        print(
            f"  high job waited {', '.join(f'{w:.2f}' for w in waits)} s behind the backlog "
            f"(one chunk is 0.5 s; the backlog was ~17 s of work)"
        )


def scenario_load(args) -> None:
    count, clients = args.load_jobs, args.load_clients
    print(
        f"\n[load] {count} one-frame jobs from {clients} concurrent clients, {args.workers} workers x "
        f"{args.concurrency}, render time 0: none lost, none doubled"
    )
    with running(workers=args.workers, concurrency=args.concurrency, render_seconds="0", log_level="INFO") as bench:
        started = time.monotonic()
        ids = bench.submit_many(count, clients)
        items = bench.wait_finished(set(ids), timeout=1800)
        elapsed = time.monotonic() - started
        completed = [i for i in items.values() if i["status"]["S"] == "COMPLETED"]
        owned = [i for i in bench.items() if i["id"]["S"] in set(ids)]
        logs = "".join(p.read_text(errors="replace") for p in bench.stack.log_dir.glob("worker*.log"))
        completions = Counter(line.split("job=")[1].split()[0] for line in logs.splitlines() if "job_completed" in line)
        env = bench.stack.env
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        objects = sum(
            page.get("KeyCount", 0)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="render-results", Prefix="jobs/")
        )
        print(f"  accepted {len(ids)} distinct jobs ({len(set(ids))} ids); {len(owned)} job items")
        print(f"  COMPLETED {len(completed)}/{count} in {elapsed:.1f}s ({count / elapsed:.1f} jobs/s)")
        print(
            f"  completions logged: {sum(completions.values())} for {len(completions)} jobs "
            f"(max per job {max(completions.values(), default=0)}); frame objects in S3: {objects}"
        )
        ok = len(completed) == count == len(set(ids)) == len(owned) == len(completions) == objects
        ok = ok and max(completions.values(), default=0) == 1
        print("  " + ("OK: every job completed exactly once" if ok else "FAILED: lost or doubled work"))
        if not ok:
            sys.exit(1)


def worker_ids(stack: Stack, name: str) -> set[str]:
    """The opaque ids (`w-...`, as on chunk items) of the processes of one worker's process group."""
    host = socket.gethostname()
    return {worker_id_of(host, pid) for pid in group_pids(stack.processes[name].pid)}


def scenario_takeover(args) -> None:
    print(
        "\n[takeover] 2 workers x 1, render time 3 s per frame; lease and visibility timeout from the settings "
        f"(RENDER_LEASE_SECONDS={os.environ.get('RENDER_LEASE_SECONDS', 'default')}, "
        f"RENDER_VISIBILITY_TIMEOUT={os.environ.get('RENDER_VISIBILITY_TIMEOUT', 'default')})"
    )
    with running(workers=2, concurrency=1, render_seconds="3") as bench:
        bench.wait_finished({bench.submit()}, timeout=60)  # warm up
        bench.stack.reset_emulator_counts()
        frames = 20
        job_id = bench.submit(frame_start=1, frame_end=frames, chunk_size=5)  # 4 chunks of 15 s
        bench.wait_finished({job_id}, timeout=300)
        counts = bench.counts()
        # The workers' heartbeat items (none before issue 12); the one other PutItem is the submit.
        heartbeats = counts.pop(("dynamodb", "PutItem"), 0) - 1
        counts[("dynamodb", "PutItem")] = 1
        print_requests(counts, frames, "frame (render path, idle polls included)")
        print(f"  plus worker heartbeat PutItem: {heartbeats} ({heartbeats / frames:.2f} per frame)")

        # A one-chunk job of 20 frames (60 s); kill its worker after two frames.
        job_id = bench.submit(frame_start=1, frame_end=frames, chunk_size=frames)
        key = {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}
        while True:
            item = bench.observer.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item", {})
            if int(item.get("frames_done", {}).get("N", "0")) >= 2:
                break
            time.sleep(0.2)
        holder, token = item["worker"]["S"], item["lease_token"]["S"]
        doomed = next(
            n for n in list(bench.stack.processes) if n.startswith("worker") and holder in worker_ids(bench.stack, n)
        )
        killed = time.monotonic()
        os.killpg(bench.stack.processes.pop(doomed).pid, signal.SIGKILL)
        while True:
            item = bench.observer.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
            if item.get("lease_token", {}).get("S", token) != token and item["worker"]["S"] != holder:
                break
            if time.monotonic() - killed > 600:
                sys.exit("no takeover within 600 s")
            time.sleep(0.1)
        took = time.monotonic() - killed
        done = bench.wait_finished({job_id}, timeout=300)[job_id]
        print(
            f"  takeover: SIGKILL of {doomed} to the chunk claimed by another worker in {took:.1f} s; "
            f"the job ended {done['status']['S']}"
        )


def scenario_blender(args) -> None:
    import json
    import shutil
    import subprocess

    if shutil.which("blender") is None:
        print("\n[blender] skipped: blender is not on the PATH")
        return
    frames, width, height, samples = args.blender_frames, 320, 180, 16
    print(f"\n[blender] demo scene, {frames} frames {width}x{height} {samples} samples: 2 workers vs one process")
    root = Path(tempfile.mkdtemp(prefix="bench-blender-"))
    scene = root / "demo.blend"
    setup = ROOT / "jobs" / "renderers" / "blender_setup.py"
    blender = ["blender", "-b", "--factory-startup", "-noaudio"]
    quote.demo_scene(scene, width, height, frames)
    config = {
        "scene": str(scene),
        "scratch": str(root),
        "output": str(root / "direct" / "frame_#####"),
        "format": "png",
        "first": 1,
        "last": frames,
        "width": width,
        "height": height,
        "samples": samples,
    }

    def direct_run() -> float:
        """Blender alone on the same frames (the setup script's settings), in seconds."""
        shutil.rmtree(root / "direct", ignore_errors=True)
        started = time.monotonic()
        argv = [*blender[:2], "-Y", *blender[2:], str(scene), "--python-exit-code", "3", "--python", str(setup)]
        subprocess.run([*argv, "-a", "--", json.dumps(config)], check=True, capture_output=True)
        took = time.monotonic() - started
        assert len(list((root / "direct").iterdir())) == frames
        return took

    # As many chunks as it takes at MAX_CHUNK_SIZE, rounded up to a multiple of the 2 workers, split evenly: 12
    # frames make 2 chunks of 6, 240 make 4 of 60 (each worker renders two in a row, in one kept Blender:
    # RENDER_BLENDER_PERSISTENT); 100, 100 and 40 left one worker idle for the last 40 frames.
    chunks = -(-frames // MAX_CHUNK_SIZE)
    chunk_size = -(-frames // (chunks + chunks % 2))

    def farm_run(sandbox: str) -> tuple[float, float, float]:
        """One job in even chunks on 2 workers: wall seconds (upload and polling included), submit to COMPLETED,
        and the mean seconds a chunk rendered (its claim to its completion)."""
        with running(workers=2, concurrency=1, render_seconds="0", env={"RENDER_SANDBOX": sandbox}) as bench:
            auth = {"Authorization": f"Bearer {bench.key}"}
            body = scene.read_bytes()
            started = time.monotonic()
            sha = hashlib.sha256(body).hexdigest()
            resp = session().post(f"{bench.api}/api/assets", json={"sha256": sha, "size": len(body)}, headers=auth)
            ticket = resp.json()["upload"]
            session().put(ticket["url"], data=body, headers=ticket["headers"]).raise_for_status()
            job_id = bench.submit(
                renderer="blender",
                scene_file=sha,
                frame_start=1,
                frame_end=frames,
                chunk_size=chunk_size,
                width=width,
                height=height,
                samples=samples,
            )
            item = bench.wait_finished({job_id}, timeout=600)[job_id]
            wall = time.monotonic() - started  # includes the 2 s polling of wait_finished at most
            if item["status"]["S"] != "COMPLETED":
                sys.exit(f"[blender] the {sandbox} job ended {item['status']['S']}: {item.get('error')}")
            tasks = session().get(f"{bench.api}/api/jobs/{job_id}/tasks", headers=auth).json()["tasks"]
            chunks = [
                (datetime.fromisoformat(t["finished_at"]) - datetime.fromisoformat(t["started_at"])).total_seconds()
                for t in tasks
            ]
            return wall, seconds_between(item, "created_at", "finished_at"), sum(chunks) / len(chunks)

    runs: dict[str, list[tuple[float, float, float]]] = {"bwrap": [], "none": []}
    directs: list[float] = []
    for _ in range(args.blender_rounds):  # alternated, so a noisy moment of a shared machine falls on all three
        directs.append(direct_run())
        for sandbox in runs:
            runs[sandbox].append(farm_run(sandbox))
    direct = statistics.median(directs)
    median = {s: [statistics.median(r[i] for r in rs) for i in range(3)] for s, rs in runs.items()}
    (farm, inside, chunk), (_, bare_inside, bare_chunk) = median["bwrap"], median["none"]
    print(
        f"  COMPLETED (median of {args.blender_rounds}): farm {farm:.1f}s (submit to COMPLETED {inside:.1f}s), "
        f"direct {direct:.1f}s"
    )
    print(
        f"  ratio farm/direct: {inside / direct:.2f} (job item times), "
        f"{farm / direct:.2f} (wall, with the upload and polling)"
    )
    print(f"  seconds per frame: farm {inside / frames:.2f}, direct {direct / frames:.2f}")
    print(
        f"  sandbox: a chunk of {chunk_size} frames rendered in {chunk:.2f}s sandboxed (bubblewrap) vs "
        f"{bare_chunk:.2f}s unsandboxed: {chunk / bare_chunk:.3f}x (goal <= 1.05); job {inside:.1f}s vs "
        f"{bare_inside:.1f}s"
    )


def scenario_soak(args) -> None:
    rounds, jobs = args.soak_rounds, args.soak_jobs
    print(
        f"\n[soak] {rounds} rounds of {jobs} one-frame jobs then one {args.frames}-frame job (chunks of "
        f"{args.chunk_size}) into one emulator; {args.workers} workers x {args.concurrency}, render time 0"
    )
    with running(workers=args.workers, concurrency=args.concurrency, render_seconds="0") as bench:
        times = []
        for n in range(rounds):
            bench.wait_finished(set(bench.submit_many(jobs, args.clients)), timeout=1800)
            job_id = bench.submit(frame_start=1, frame_end=args.frames, chunk_size=args.chunk_size)
            item = bench.wait_finished({job_id}, timeout=900)[job_id]
            times.append(seconds_between(item, "created_at", "finished_at"))
            emulator = rss_mib([bench.stack.processes["emulator"].pid])
            print(
                f"  round {n + 1}: {(n + 1) * (jobs + 1)} jobs in the table; the {args.frames}-frame job took "
                f"{times[-1]:.1f}s; emulator {emulator:.0f} MiB"
            )
        print(f"  last / first {args.frames}-frame job: {times[-1] / times[0]:.2f} (goal <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the render pipeline end to end.")
    parser.add_argument("--scenarios", default="jobs,consumer,frames,priority,load,takeover,soak,blender,quote")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitting clients")
    parser.add_argument("--idle-seconds", type=int, default=60, help="how long to watch idle workers poll")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--chunk-size", type=int, default=10)
    parser.add_argument("--jobs-rounds", type=int, default=1, help="runs of the jobs scenario (the ratio's median)")
    parser.add_argument("--priority-rounds", type=int, default=3)
    parser.add_argument("--load-jobs", type=int, default=1000)
    parser.add_argument("--load-clients", type=int, default=20)
    parser.add_argument("--blender-frames", type=int, default=24)
    parser.add_argument("--blender-rounds", type=int, default=3)
    parser.add_argument("--quote-rounds", type=int, default=2)
    parser.add_argument("--soak-rounds", type=int, default=5)
    parser.add_argument("--soak-jobs", type=int, default=600)
    parser.add_argument(
        "--latency",
        default=os.environ.get(LATENCY_ENV, ""),
        help="AWS-like round trip the emulator adds per request: aws, or e.g. dynamodb=5,sqs=10,s3=20 "
        "(jobs, scale, owners; jobs/devstack/latency.py)",
    )
    parser.add_argument("--scale-frames", type=int, default=10_000)
    parser.add_argument("--scale-chunk-size", type=int, default=10)
    parser.add_argument("--scale-workers", type=int, default=4, help="x --scale-concurrency worker processes")
    parser.add_argument("--scale-concurrency", type=int, default=4)
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--owner-jobs", type=int, default=2000)
    args = parser.parse_args()
    scenarios = {
        "jobs": scenario_jobs_rounds,
        "consumer": scenario_consumer,
        "frames": scenario_frames,
        "priority": scenario_priority,
        "load": scenario_load,
        "takeover": scenario_takeover,
        "soak": scenario_soak,
        "blender": scenario_blender,
        "quote": quote.scenario_quote,
        "scale": scale.scenario_scale,
        "owners": scale.scenario_owners,
    }
    for name in args.scenarios.split(","):
        scenarios[name](args)


if __name__ == "__main__":
    main()
