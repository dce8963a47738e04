"""Job control end to end: chunks on two workers, cancel, retry, priorities, idempotent submit."""

import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.e2e


def s3_objects(stack, job_id: str) -> dict[str, datetime]:
    s3 = boto3.client("s3", endpoint_url=stack.env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=stack.env["RENDER_BUCKET_NAME"], Prefix=f"jobs/{job_id}/")
    return {o["Key"]: o["LastModified"] for o in listing.get("Contents", [])}


def tasks_of(stack, job_id: str) -> list[dict]:
    resp = requests.get(f"{stack.api}/api/jobs/{job_id}/tasks", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["tasks"]


def test_a_24_frame_job_renders_in_parallel_chunks_with_manifest_and_preview(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.15")
    stack.start_ready_worker("w1")
    stack.start_ready_worker("w2")
    job = stack.submit(frame_start=1, frame_end=24, chunk_size=4)
    assert job["progress"]["chunks_total"] == 6
    seen_ratios = set()
    done = stack.wait_for(
        job["id"],
        lambda j: seen_ratios.add(j["progress"]["ratio"]) or j["status"] in ("COMPLETED", "FAILED"),
        timeout=90,
    )
    assert done["status"] == "COMPLETED", done
    assert done["progress"]["frames_done"] == 24 and done["progress"]["chunks_done"] == 6
    assert len(seen_ratios - {0.0, 1.0}) >= 2  # progress moved along the way

    tasks = tasks_of(stack, job["id"])
    assert [(t["frame_start"], t["frame_end"], t["status"]) for t in tasks] == [
        (1 + 4 * i, 4 + 4 * i, "COMPLETED") for i in range(6)
    ]
    assert len({t["worker"] for t in tasks}) == 2  # both workers took chunks
    assert all(t["seconds_per_frame"] >= 0.1 for t in tasks)

    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [f["frame"] for f in manifest["frames"]] == list(range(1, 25))
    objects = s3_objects(stack, job["id"])
    assert len([k for k in objects if "/frames/" in k]) == 24
    links = {f["frame"]: f["url"] for f in done["results"]["frames"]}
    for entry in manifest["frames"][::5]:
        body = requests.get(links[entry["frame"]], timeout=10).content
        assert hashlib.sha256(body).hexdigest() == entry["sha256"] and len(body) == entry["size"]
    preview = Image.open(io.BytesIO(requests.get(done["results"]["preview_url"], timeout=10).content))
    assert preview.format == "PNG" and preview.width >= 4 * 100
    animated = Image.open(io.BytesIO(requests.get(done["results"]["animation_url"], timeout=10).content))
    assert animated.format == "WEBP" and animated.n_frames == 16 and animated.is_animated

    page = requests.get(
        f"{stack.api}/api/jobs/{job['id']}/frames?offset=20&limit=10", headers=stack.auth(), timeout=10
    ).json()
    assert [f["frame"] for f in page["frames"]] == [21, 22, 23, 24] and page["frames_next_offset"] is None


def test_cancel_mid_job_stops_the_workers_and_nothing_is_uploaded_after(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.4")
    stack.start_ready_worker("w1")
    stack.start_ready_worker("w2")
    job = stack.submit(frame_start=1, frame_end=40, chunk_size=5)
    stack.wait_for(job["id"], lambda j: j["progress"]["frames_done"] >= 3, timeout=60)
    resp = requests.post(f"{stack.api}/api/jobs/{job['id']}/cancel", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] in ("CANCELLING", "CANCELLED")
    cancelled = stack.wait_for_status(job["id"], "CANCELLED", timeout=30)
    finished = datetime.fromisoformat(cancelled["finished_at"].replace("Z", "+00:00"))
    before = s3_objects(stack, job["id"])
    assert 3 <= len(before) < 40
    assert all(modified <= finished for modified in before.values())
    time.sleep(2)  # workers have moved on: nothing more arrives
    assert s3_objects(stack, job["id"]) == before
    assert stack.job(job["id"])["progress"]["frames_done"] < 40
    statuses = {t["status"] for t in tasks_of(stack, job["id"])}
    assert statuses <= {"CANCELLED", "COMPLETED", "QUEUED"} and "CANCELLED" in statuses
    again = requests.post(f"{stack.api}/api/jobs/{job['id']}/cancel", headers=stack.auth(), timeout=10)
    assert again.status_code == 409


def test_retry_after_a_chunk_failure_renders_only_the_failed_chunks(make_stack, tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    stack = make_stack(
        RENDER_RENDERER="tests.support.renderers:FailsWhileFlagged",
        RENDER_MAX_ATTEMPTS="1",
        RENDER_TEST_FAIL_FLAG=str(flag),
    )
    stack.start_ready_worker()
    job = stack.submit(frame_start=1, frame_end=15, chunk_size=5)
    failed = stack.wait_for_status(job["id"], "FAILED", "COMPLETED", timeout=60)
    assert failed["status"] == "FAILED" and "chunk 1" in failed["error"] and "flagged to fail" in failed["error"]
    time.sleep(1.5)  # let the other chunks stop or finish
    first_pass = s3_objects(stack, job["id"])
    finished_first = {t["index"] for t in tasks_of(stack, job["id"]) if t["status"] == "COMPLETED"}
    assert 1 not in finished_first

    flag.unlink()
    resp = requests.post(f"{stack.api}/api/jobs/{job['id']}/retry", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200 and resp.json()["attempt"] == 2
    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED" and done["progress"]["frames_done"] == 15 and done["error"] is None
    tasks = tasks_of(stack, job["id"])
    assert {t["index"] for t in tasks if t["attempt"] == 1} == finished_first  # kept, not re-run
    after = s3_objects(stack, job["id"])
    for key, modified in first_pass.items():
        frame = int(key.rsplit("/", 1)[1].split(".")[0]) if "/frames/" in key else None
        if frame is not None and (frame - 1) // 5 in finished_first:
            assert after[key] == modified  # frames of kept chunks were not written again


def test_a_high_priority_job_overtakes_a_low_priority_backlog(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.5")
    stack.start_ready_worker()
    backlog = stack.submit(frame_start=1, frame_end=30, chunk_size=1, priority="low")
    stack.wait_for(backlog["id"], lambda j: j["progress"]["frames_done"] >= 2, timeout=60)
    urgent = stack.submit(priority="high")
    done = stack.wait_for_status(urgent["id"], "COMPLETED", timeout=60)
    waited = (
        datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
        - datetime.fromisoformat(done["created_at"].replace("Z", "+00:00"))
    ).total_seconds()
    low = stack.job(backlog["id"])
    assert low["progress"]["frames_done"] < 15, "the high job waited for the backlog"
    assert waited < 4.0, f"high-priority job waited {waited:.2f}s behind 0.5 s chunks (the backlog is ~15 s)"


def test_ten_parallel_submits_with_one_idempotency_key_make_one_job(make_stack):
    stack = make_stack(api=False)
    stack.api = stack.start_api(workers=2, threads=8)
    body = {"scene": "once", "width": 64, "height": 64}

    def submit(_):
        headers = {**stack.auth(), "Idempotency-Key": "same-key-10"}
        return requests.post(f"{stack.api}/api/jobs", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(submit, range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 9
    listed = requests.get(f"{stack.api}/api/jobs", headers=stack.auth(), timeout=10).json()["jobs"]
    assert len(listed) == 1
    other = requests.post(
        f"{stack.api}/api/jobs",
        json={**body, "scene": "twice"},
        headers={**stack.auth(), "Idempotency-Key": "same-key-10"},
        timeout=10,
    )
    assert other.status_code == 422


def test_a_worker_serves_high_then_normal_then_low_when_all_have_work(make_stack):
    # With kombu's plain SQS transport (CELERY_BROKER_TRANSPORT=sqs) this fails: it takes whatever answers first.
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.1")
    jobs = {p: stack.submit(frame_start=1, frame_end=4, chunk_size=1, priority=p) for p in ("low", "normal", "high")}
    stack.start_ready_worker()  # the backlog is all there before the worker starts
    for job in jobs.values():
        stack.wait_for_status(job["id"], "COMPLETED", timeout=60)
    starts = {p: sorted(t["started_at"] for t in tasks_of(stack, job["id"])) for p, job in jobs.items()}
    assert starts["high"][-1] < starts["normal"][0], starts
    assert starts["normal"][-1] < starts["low"][0], starts


def test_killed_three_times_in_a_row_the_job_still_completes_once(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.7", RENDER_LEASE_SECONDS="2", RENDER_VISIBILITY_TIMEOUT="3")
    job = stack.submit(frame_start=1, frame_end=6, chunk_size=6)
    kills = []
    for round_ in range(3):
        stack.start_ready_worker(f"doomed{round_}")
        before = stack.job(job["id"])["progress"]["frames_done"]
        stack.wait_for(job["id"], lambda j, b=before: j["progress"]["frames_done"] > b, timeout=60)
        stack.kill(f"doomed{round_}")  # SIGKILL to the worker and its pool, mid-chunk
        kills.append(datetime.now(UTC))
    stack.start_ready_worker("survivor")
    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED" and done["progress"]["frames_done"] == 6
    assert stack.completions(job["id"], "doomed0", "doomed1", "doomed2", "survivor") == 1
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [f["frame"] for f in manifest["frames"]] == [1, 2, 3, 4, 5, 6]
    frames = {int(k.rsplit("/", 1)[1][:5]): t for k, t in s3_objects(stack, job["id"]).items() if "/frames/" in k}
    assert frames[1] < kills[0]  # recorded frames were kept: a later holder resumed instead of re-rendering
