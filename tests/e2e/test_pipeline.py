"""The whole pipeline with real processes: API (gunicorn) -> SQS -> `celery worker` -> S3, and its failure modes."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from jobs.adapters import aws
from jobs.devstack.stack import ENTRYPOINT, ROOT
from tests.e2e.conftest import wait_until
from tests.support.flaky_sqs import FlakyProxy

pytestmark = pytest.mark.e2e


def test_jobs_complete_and_their_images_download_through_presigned_urls(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.2")
    stack.start_ready_worker()
    single = stack.submit(output_format="jpeg")
    multi = stack.submit(frame_start=10, frame_end=12)

    done = stack.wait_for_status(single["id"], "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED" and done["progress"]["ratio"] == 1.0
    assert done["started_at"] and done["finished_at"] >= done["started_at"]
    frame = done["results"]["frames"][0]
    body = requests.get(frame["url"], timeout=10).content
    assert hashlib.sha256(body).hexdigest() == frame["sha256"] and len(body) == frame["size"]
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG" and image.size == (320, 180)

    done = stack.wait_for_status(multi["id"], "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED"
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [f["frame"] for f in manifest["frames"]] == [10, 11, 12]
    for entry, link in zip(manifest["frames"], done["results"]["frames"], strict=True):
        body = requests.get(link["url"], timeout=10).content
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert Image.open(io.BytesIO(body)).format == "PNG"


def test_every_finished_chunk_is_deleted_from_its_queue(make_stack):
    """A worker acks a chunk with a DeleteMessage sent on its event loop beside the next receive
    (jobs/worker/transport.py): once the jobs are done, no message is left, visible or in flight."""
    stack = make_stack()
    stack.start_ready_worker(concurrency=2)
    jobs = [stack.submit(frame_start=1, frame_end=6, chunk_size=2) for _ in range(3)]
    for job in jobs:
        assert stack.wait_for_status(job["id"], "COMPLETED", "FAILED")["status"] == "COMPLETED"
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=stack.env["RENDER_QUEUE_PREFIX"] + "render-normal")["QueueUrl"]

    def left() -> tuple[str, str]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]

    wait_until(lambda: left() == ("0", "0"), 10, "an empty queue")


def test_a_frame_list_renders_exactly_its_frames_on_a_real_worker(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.05")
    stack.start_ready_worker()
    job = stack.submit(frames="1-7x3,10", chunk_size=2)
    assert (job["frames"], job["frame_start"], job["frame_end"]) == ("1-10x3", 1, 10)
    assert (job["progress"]["frames_total"], job["progress"]["chunks_total"]) == (4, 2)

    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED", done
    assert (done["progress"]["frames_done"], done["progress"]["ratio"]) == (4, 1.0)
    bucket, prefix = stack.env["RENDER_BUCKET_NAME"], f"jobs/{job['id']}/frames/"
    stored = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    assert sorted(o["Key"] for o in stored) == [f"{prefix}{n:05d}.png" for n in (1, 4, 7, 10)]
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert manifest["frame_list"] == "1-10x3" and [f["frame"] for f in manifest["frames"]] == [1, 4, 7, 10]
    assert [f["frame"] for f in done["results"]["frames"]] == [1, 4, 7, 10]
    for link, entry in zip(done["results"]["frames"], manifest["frames"], strict=True):
        assert hashlib.sha256(requests.get(link["url"], timeout=10).content).hexdigest() == entry["sha256"]
    sheet = Image.open(io.BytesIO(requests.get(done["results"]["preview_url"], timeout=10).content))
    assert sheet.format == "PNG" and sheet.size == (4 * 320, 180)  # the four listed frames, one row
    page = requests.get(f"{stack.api}/api/jobs/{job['id']}/frames?offset=1&limit=2", headers=stack.auth(), timeout=10)
    assert [f["frame"] for f in page.json()["frames"]] == [4, 7] and page.json()["frames_next_offset"] == 3
    tasks = requests.get(f"{stack.api}/api/jobs/{job['id']}/tasks", headers=stack.auth(), timeout=10).json()["tasks"]
    assert [(t["frames"], t["frames_done"], t["status"]) for t in tasks] == [
        ("1,4", 2, "COMPLETED"),
        ("7,10", 2, "COMPLETED"),
    ]


def test_a_worker_killed_mid_render_leaves_a_job_that_completes_once(make_stack):
    # Short lease and visibility timeout so the message comes back soon; the lease lapses before that.
    stack = make_stack(RENDER_LEASE_SECONDS="3", RENDER_VISIBILITY_TIMEOUT="5", RENDER_SIMULATED_SECONDS="3")
    stack.start_ready_worker("doomed")
    job = stack.submit()
    stack.wait_for_status(job["id"], "PROCESSING", timeout=30)
    stack.kill("doomed")  # SIGKILL to the whole process group: main process and pool child
    stack.start_ready_worker("rescuer")

    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED"
    assert done["results"]["frames"][0]["size"] > 0
    assert stack.completions(job["id"], "rescuer") == 1
    assert f"job_completed job={job['id']}" not in stack.log("doomed")
    time.sleep(1)  # a late duplicate would show up here
    assert stack.job(job["id"])["finished_at"] == done["finished_at"]


def test_a_duplicate_message_changes_nothing(make_stack):
    stack = make_stack()
    stack.start_ready_worker()
    job = stack.submit()
    done = stack.wait_for_status(job["id"], "COMPLETED")
    # Deliver the same message again, as SQS may: the claim loses and the job is untouched.
    stack.send_chunk_message(job["id"], None, 1)
    deadline = time.monotonic() + 20
    while "not claimed" not in stack.log("worker") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "not claimed" in stack.log("worker")
    again = stack.job(job["id"])
    assert {k: v for k, v in again.items() if k != "results"} == {k: v for k, v in done.items() if k != "results"}


def test_render_errors_are_retried_with_backoff_then_fail_the_job(make_stack):
    stack = make_stack(
        RENDER_RENDERER="tests.support.renderers:AlwaysFails", RENDER_MAX_ATTEMPTS="3", RENDER_RETRY_BACKOFF_SECONDS="1"
    )
    stack.start_ready_worker()
    job = stack.submit(scene="cursed")
    done = stack.wait_for_status(job["id"], "FAILED", "COMPLETED", timeout=60)
    assert done["status"] == "FAILED"
    assert "simulated crash" in done["error"] and "cursed" in done["error"]
    assert done["results"] is None
    assert stack.log("worker").count("render failed") == 3


def test_sqs_down_at_submit_gets_503_and_leaves_no_job(make_stack):
    stack = make_stack(api=False)
    stack.env["AWS_ENDPOINT_URL_SQS"] = "http://127.0.0.1:9"  # nothing listens there
    stack.api = stack.start_api(workers=1, threads=2)
    resp = requests.post(
        f"{stack.api}/api/jobs", json={"scene": "s", "width": 64, "height": 64}, headers=stack.auth(), timeout=60
    )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "service_unavailable"
    listed = requests.get(f"{stack.api}/api/jobs", headers=stack.auth(), timeout=10).json()
    assert listed["jobs"] == []
    ready = requests.get(f"{stack.api}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["checks"]["sqs"].startswith("unreachable")


def test_dynamodb_down_gets_503(make_stack):
    stack = make_stack(api=False)
    stack.env["AWS_ENDPOINT_URL_DYNAMODB"] = "http://127.0.0.1:9"
    stack.api = stack.start_api(workers=1, threads=2)
    resp = requests.get(f"{stack.api}/api/jobs", headers=stack.auth(), timeout=60)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "service_unavailable"


def test_a_worker_whose_sqs_fails_for_a_while_stays_up_and_renders_once_it_answers(make_stack):
    """SQS answers the worker's first receives with 500 and 400 (a server error, a throttle): kombu alone stopped
    the worker's polling on the first one. The worker logs them, waits, polls again, and renders the job."""
    stack = make_stack()
    with FlakyProxy(stack.env["AWS_ENDPOINT_URL"], failures=6, statuses=(500, 400)) as sqs:
        worker = stack.start_ready_worker(extra_env={"AWS_ENDPOINT_URL_SQS": sqs.url})
        job = stack.submit()
        done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
        assert sqs.failed == 6
    assert done["status"] == "COMPLETED" and worker.poll() is None
    log = stack.log("worker")
    assert "could not receive from" in log and "HTTP 400" in log and "Unrecoverable error" not in log


def test_worker_stops_cleanly_on_sigterm(make_stack):
    stack = make_stack(api=False)
    stack.start_ready_worker()
    assert stack.stop("worker", signal.SIGTERM, timeout=30, group=False) == 0


def test_create_api_key_prints_the_key_alone_and_it_works_until_revoked(make_stack):
    stack = make_stack(RENDER_API_KEY_CACHE_SECONDS="1")
    out = stack.manage("create_api_key", "--owner", "zoe")
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rk_") and len(lines[0]) > 40
    resp = requests.get(f"{stack.api}/api/jobs", headers={"Authorization": f"Bearer {lines[0]}"}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"jobs": [], "next_cursor": None}

    assert "revoked 1 key(s)" in stack.manage("revoke_api_key", "--key", lines[0])
    time.sleep(1.5)  # the API processes' key cache (RENDER_API_KEY_CACHE_SECONDS) lapses
    resp = requests.get(f"{stack.api}/api/jobs", headers={"Authorization": f"Bearer {lines[0]}"}, timeout=10)
    assert resp.status_code == 401


def test_the_sweep_command_gets_a_job_whose_message_was_lost_rendered(make_stack):
    stack = make_stack(RENDER_SWEEP_GRACE_SECONDS="0")
    stack.start_ready_worker()
    # The API wrote the job, then SQS "failed" and the withdraw failed too: an item with no message.
    code = (
        "import django; django.setup(); from jobs import wiring; from jobs.domain import *;"
        " now = utcnow(); job = Job(id=new_job_id(), owner='e2e', scene=Scene('lost', 64, 64, OutputFormat.PNG, 1),"
        " frame_start=1, frame_end=1, priority=Priority.NORMAL, status=JobStatus.QUEUED, created_at=now,"
        " updated_at=now); wiring.job_repository().add(job); print(job.id)"
    )
    job_id = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=stack.merged_env(), check=True, capture_output=True, text=True
    ).stdout.strip()
    time.sleep(1)
    assert stack.job(job_id)["status"] == "QUEUED"
    out = subprocess.run(
        [str(ENTRYPOINT), "sweep", "--json"],
        cwd=ROOT,
        env=stack.merged_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert '"job_requeued": 1' in out
    assert stack.wait_for_status(job_id, "COMPLETED", timeout=30)["status"] == "COMPLETED"


def test_worker_health_check_follows_its_liveness_file(make_stack):
    stack = make_stack(api=False)
    stack.start_ready_worker()
    env = {**stack.merged_env(), "RENDER_ROLE": "worker", "RENDER_LIVENESS_FILE": str(stack.log_dir / "worker.alive")}
    assert subprocess.run([sys.executable, "-m", "jobs.worker.healthcheck"], cwd=ROOT, env=env).returncode == 0
    stack.kill("worker")
    stale = stack.log_dir / "worker.alive"
    os.utime(stale, (time.time() - 120, time.time() - 120))
    assert subprocess.run([sys.executable, "-m", "jobs.worker.healthcheck"], cwd=ROOT, env=env).returncode == 1


def test_a_render_longer_than_the_visibility_timeout_runs_once(make_stack):
    # The frame takes 10 s; the lease is 3 s and the visibility timeout 6 s: both must be kept alive.
    stack = make_stack(RENDER_LEASE_SECONDS="3", RENDER_VISIBILITY_TIMEOUT="6", RENDER_SIMULATED_SECONDS="10")
    stack.start_ready_worker("w1")
    stack.start_ready_worker("w2")
    job = stack.submit()
    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED"
    assert stack.completions(job["id"], "w1", "w2") == 1  # and never redelivered to anyone:
    assert f"job {job['id']} attempt 1 not claimed" not in stack.log("w1") + stack.log("w2")


def test_sigterm_mid_render_releases_the_chunk_to_another_worker(make_stack):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.5", RENDER_SHUTDOWN_GRACE_SECONDS="0")
    stack.start_ready_worker("leaving")
    job = stack.submit(frame_start=1, frame_end=20, chunk_size=20)  # ~10 s of rendering
    stack.wait_for(job["id"], lambda j: j["progress"]["frames_done"] >= 2, timeout=30)
    started = time.monotonic()
    # SIGTERM to the main process only, as ECS stops a container (Spot interruption, deployment).
    assert stack.stop("leaving", signal.SIGTERM, timeout=30, group=False) == 0  # exits cleanly ...
    assert time.monotonic() - started < 8  # ... at the next frame boundary, not after the whole chunk
    assert f"job {job['id']} released at shutdown" in stack.log("leaving")
    assert stack.job(job["id"])["progress"]["frames_done"] < 20
    stack.start_ready_worker("staying")
    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED" and done["progress"]["frames_done"] == 20
    assert stack.completions(job["id"], "staying") == 1
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [f["frame"] for f in manifest["frames"]] == list(range(1, 21))


def test_poison_work_lands_in_the_dlq_and_its_job_is_failed(make_stack):
    stack = make_stack(
        RENDER_RENDERER="tests.support.renderers:CrashesItsWorker",
        RENDER_LEASE_SECONDS="1",
        RENDER_VISIBILITY_TIMEOUT="2",
    )
    stack.start_ready_worker()
    job = stack.submit(scene="poison")
    sqs = aws.client("sqs")
    dlq = sqs.get_queue_url(QueueName=stack.env["RENDER_QUEUE_PREFIX"] + "render-dlq")["QueueUrl"]

    def dead_lettered() -> bool:  # each delivery kills the pool process; after 5, SQS dead-letters it
        attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) > 0

    wait_until(dead_lettered, 90, "the poison message in the dead-letter queue")
    listed = stack.manage("dlq", "list", "--json")
    assert job["id"] in listed and '"task": "jobs.render_chunk"' in listed
    assert stack.job(job["id"])["status"] in ("QUEUED", "PROCESSING")  # not failed until the sweeper says so
    out = stack.manage("sweep", "--json")
    assert '"dlq_job_failed": 1' in out
    failed = stack.job(job["id"])
    assert failed["status"] == "FAILED" and "dead-lettered" in failed["error"]
    replayed = stack.manage("dlq", "replay")
    assert job["id"] in replayed
    assert stack.job(job["id"])["attempt"] == 2
    stack.stop("worker")
    stack.manage("dlq", "purge", "--yes")
    assert stack.manage("dlq", "list") == "The dead-letter queue is empty.\n"


def test_a_pool_process_sums_the_usage_of_the_jobs_it_ends_and_writes_it_when_it_stops(make_stack):
    """The owner's usage item is written once per flush, not once per job (jobs/repository/usage.py): with a
    flush interval of an hour, three ended jobs are summed in the pool process and written at its warm shutdown.
    (The API reserves each job's frames exactly, no block ahead, so the usage item counts just the jobs'.)"""
    stack = make_stack(
        RENDER_USAGE_FLUSH_SECONDS="3600", RENDER_SIMULATED_SECONDS="0.05", RENDER_USAGE_BLOCK_FRAMES="0"
    )
    stack.start_ready_worker()
    jobs = [stack.submit(frame_start=1, frame_end=2) for _ in range(3)]
    for job in jobs:
        assert stack.wait_for_status(job["id"], "COMPLETED", timeout=30)["status"] == "COMPLETED"

    def usage() -> dict:
        key = {"pk": {"S": "OWNER#e2e"}, "sk": {"S": "USAGE"}}
        return aws.client("dynamodb").get_item(TableName=stack.env["RENDER_TABLE_NAME"], Key=key)["Item"]

    def month_seconds() -> float:
        return requests.get(f"{stack.api}/api/usage", headers=stack.auth(), timeout=10).json()["worker_seconds"]

    assert usage()["frames_active"] == {"N": "6"} and month_seconds() == 0  # ended, summed, not written yet
    assert stack.stop("worker") == 0  # SIGTERM: a warm shutdown; the pool process writes what it summed
    assert usage()["frames_active"] == {"N": "0"}
    assert month_seconds() > 0
