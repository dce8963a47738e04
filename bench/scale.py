"""Scale scenarios of `make bench` (issue 20): one job far larger than the others, and many owners at once.

- `scale`: one job of --scale-frames frames (10,000) in chunks of --scale-chunk-size (1,000 chunks) on
  --scale-workers x --scale-concurrency worker processes (16), render time 0: time, frames/s, write units per
  frame, the largest item written (every chunk publishes its progress on the job item, which grows with the
  job), and DynamoDB's transaction conflicts retried (the workers' log; moto never produces them).
- `owners`: --owner-jobs one-frame jobs (2,000) from --owners owners (50), submitted round robin by 2 clients
  per owner: jobs/s, write units and dollars per job, the largest item written.
Both take `--latency` (AWS-like milliseconds per request in the emulator).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from bench.farm import largest_items, print_requests, running, seconds_between, session

CONFLICT = re.compile(r"TransactionConflict")


def scenario_scale(args) -> None:
    frames, chunk = args.scale_frames, args.scale_chunk_size
    processes = args.scale_workers * args.scale_concurrency
    print(
        f"\n[scale] one job of {frames} frames in chunks of {chunk} ({-(-frames // chunk)} chunks) on {processes} "
        f"worker processes ({args.scale_workers} x {args.scale_concurrency}), render time 0"
        + (f", latency {args.latency}" if args.latency else "")
    )
    with running(
        workers=args.scale_workers, concurrency=args.scale_concurrency, render_seconds="0", latency=args.latency
    ) as bench:
        bench.wait_finished({bench.submit()}, timeout=120)  # warm up
        bench.stack.reset_emulator_counts()
        started = time.monotonic()
        job_id = bench.submit(frame_start=1, frame_end=frames, chunk_size=chunk)
        item = bench.wait_finished({job_id}, timeout=3600)[job_id]
        took = seconds_between(item, "created_at", "finished_at")
        wall = time.monotonic() - started
        print(f"  {item['status']['S']} in {took:.1f}s ({frames / took:.0f} frames/s; wall {wall:.1f}s)")
        print_requests(bench.counts(), frames, "frame")
        for line in bench.cost(frames).lines("frame"):
            print(f"  {line}")
        print(f"  {largest_items(bench)}")
        logs = bench.stack.log_dir.glob("*.log") if bench.stack.log_dir else []
        conflicts = sum(len(CONFLICT.findall(log.read_text(errors="replace"))) for log in logs)
        print(f"  transaction conflicts retried: {conflicts} (the emulator runs one call at a time: none can happen)")


def scenario_owners(args) -> None:
    owners, jobs = args.owners, args.owner_jobs
    print(
        f"\n[owners] {jobs} one-frame jobs from {owners} owners, {args.workers} workers x {args.concurrency}, "
        "render time 0" + (f", latency {args.latency}" if args.latency else "")
    )
    with running(workers=args.workers, concurrency=args.concurrency, render_seconds="0", latency=args.latency) as bench:
        with ThreadPoolExecutor(4) as pool:
            keys = list(pool.map(lambda n: bench.stack.create_api_key(f"owner-{n:03d}"), range(owners)))
        bench.wait_finished({bench.submit()}, timeout=120)  # warm up
        bench.stack.reset_emulator_counts()

        def submit(n: int) -> str:
            resp = session().post(
                f"{bench.api}/api/jobs",
                json={"scene": "owners", "width": 64, "height": 64},
                headers={"Authorization": f"Bearer {keys[n % owners]}"},
                timeout=30,
            )
            resp.raise_for_status()
            return resp.json()["id"]

        started = time.monotonic()
        with ThreadPoolExecutor(min(2 * owners, 64)) as pool:
            ids = set(pool.map(submit, range(jobs)))
        items = bench.wait_finished(ids, timeout=3600)
        took = time.monotonic() - started
        done = sum(1 for i in items.values() if i["status"]["S"] == "COMPLETED")
        print(f"  {done}/{jobs} COMPLETED in {took:.1f}s ({jobs / took:.1f} jobs/s)")
        print_requests(bench.counts(), jobs, "job")
        for line in bench.cost(jobs).lines("job"):
            print(f"  {line}")
        print(f"  {largest_items(bench)}")
