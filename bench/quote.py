"""`make bench BENCH_ARGS=--scenarios=quote`: how close a dry run's quote comes to the job it quotes.

For each case (the demo scene at a size and sample count), in `--quote-rounds` rounds: a dry run (its scout
renders 3 frames in one chunk) gives a quote, then the real job runs on the same farm and its measured
worker-seconds (the sum of its chunks') are compared. One worker process, so what the quote assumes about
kept Blender processes (one start for the job's consecutive chunks) is what happens. Goal (issue 22): each
quote within 30% of its job. Timing depends on the machine's load: run it on a quiet machine; the load
average is printed with each round.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.farm import running, session
from jobs.devstack.stack import ROOT

# (label, width, height, samples, frames, chunk size): fast frames where the fixed costs weigh, slower ones
CASES = (("fast frames", 160, 90, 8, 12, 4), ("slower frames", 320, 180, 32, 24, 6))


def demo_scene(path: Path, width: int, height: int, frames: int) -> Path:
    """The demo scene (scenes/demo_scene.py) saved at `path` with that size and frame range."""
    argv = ["blender", "-b", "--factory-startup", "-noaudio", "--python", str(ROOT / "scenes" / "demo_scene.py")]
    subprocess.run([*argv, "--", str(path), str(width), str(height), str(frames)], check=True, capture_output=True)
    return path


def scenario_quote(args) -> None:
    if shutil.which("blender") is None:
        print("\n[quote] skipped: blender is not on the PATH")
        return
    print(f"\n[quote] dry-run quotes against the jobs they quote, 1 worker, {args.quote_rounds} rounds a case")
    root = Path(tempfile.mkdtemp(prefix="bench-quote-"))
    ratios = []
    with running(workers=1, concurrency=1, render_seconds="0") as bench:
        auth = {"Authorization": f"Bearer {bench.key}"}
        for label, width, height, samples, frames, chunk in CASES:
            scene = demo_scene(root / f"{width}x{height}.blend", width, height, frames)
            body = scene.read_bytes()
            sha = hashlib.sha256(body).hexdigest()
            ticket = (
                session()
                .post(f"{bench.api}/api/assets", json={"sha256": sha, "size": len(body)}, headers=auth)
                .json()["upload"]
            )
            session().put(ticket["url"], data=body, headers=ticket["headers"]).raise_for_status()
            job = {"scene": "quote", "renderer": "blender", "scene_file": sha, "width": width, "height": height,
                   "samples": samples, "frame_start": 1, "frame_end": frames, "chunk_size": chunk}  # fmt: skip
            for n in range(args.quote_rounds):
                quote = _finished(bench, auth, _post(bench, auth, job, dry_run=True))["quote"]
                done = _finished(bench, auth, _post(bench, auth, job))
                ratio = quote["worker_seconds"] / done["worker_seconds"]
                ratios.append(ratio)
                print(
                    f"  {label} ({width}x{height}, {samples} samples, {frames} frames in chunks of {chunk}), "
                    f"round {n + 1}: quote {quote['worker_seconds']:.1f} worker-seconds "
                    f"({quote['seconds_per_frame']:.3f} s a frame, {quote['startup_seconds']:.2f} s a chunk's "
                    f"start-up), job {done['worker_seconds']:.1f}: ratio {ratio:.2f} "
                    f"(load {os.getloadavg()[0]:.1f})"
                )
    shutil.rmtree(root, ignore_errors=True)
    worst = max(ratios, key=lambda r: abs(r - 1))
    within = sum(0.7 <= r <= 1.3 for r in ratios)
    print(
        f"  quote / job: median {statistics.median(ratios):.2f}, furthest {worst:.2f}; {within} of {len(ratios)} "
        "within 30% (goal: all)"
    )


def _post(bench, auth: dict, job: dict, *, dry_run: bool = False) -> str:
    resp = session().post(f"{bench.api}/api/jobs" + ("?dry_run=1" if dry_run else ""), json=job, headers=auth)
    resp.raise_for_status()
    return resp.json()["id"]


def _finished(bench, auth: dict, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = session().get(f"{bench.api}/api/jobs/{job_id}", headers=auth).json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            if job["status"] != "COMPLETED":
                raise SystemExit(f"[quote] job {job_id} ended {job['status']}: {job.get('error')}")
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"[quote] job {job_id} did not finish in {timeout:.0f}s")
        time.sleep(0.5)
