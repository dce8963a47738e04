"""Operations with real processes: one job followed by its id through the JSON logs of the API and two
workers, no secret in any log line, and the farm status of live workers (a killed one drops out)."""

import json
import re
import time

import pytest
import requests

from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_one_job_is_followed_by_its_id_through_the_json_logs_and_no_secret_is_logged(make_stack):
    stack = make_stack(RENDER_LOG_FORMAT="json", RENDER_SIMULATED_SECONDS="0.2", RENDER_WORKER_HEARTBEAT_SECONDS="1")
    stack.start_ready_worker("w1")
    stack.start_ready_worker("w2")
    trace = "Root=1-67891233-abcdef012345678912345678"
    resp = requests.post(
        f"{stack.api}/api/jobs",
        json={"scene": "ops", "width": 64, "height": 64, "frame_start": 1, "frame_end": 8, "chunk_size": 2},
        headers={**stack.auth(), "X-Amzn-Trace-Id": f"{trace};Sampled=1"},
        timeout=10,
    )
    assert resp.status_code == 201 and resp.headers["X-Request-Id"] == "1-67891233-abcdef012345678912345678"
    job_id = resp.json()["id"]
    done = stack.wait_for_status(job_id, "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED"
    requests.get(f"{stack.api}/api/jobs/{job_id}/frames", headers=stack.auth(), timeout=10)  # presigned URLs out
    time.sleep(1)

    api = [r for r in json_lines(stack.log("api")) if r.get("job_id") == job_id]
    assert any("submitted" in r["message"] and r["request_id"] == "1-67891233-abcdef012345678912345678" for r in api)
    assert all(r.get("owner") == "e2e" for r in api)
    workers = {n: [r for r in json_lines(stack.log(n)) if r.get("job_id") == job_id] for n in ("w1", "w2")}
    both = workers["w1"] + workers["w2"]
    assert workers["w1"] and workers["w2"], "both workers took part"
    messages = " | ".join(r["message"] for r in both)
    assert "received jobs.fanout_job" in messages and "received jobs.render_chunk" in messages
    assert "metric QueueWait" in messages and "metric FramesRendered" in messages
    assert f"job_completed job={job_id}" in messages  # the assembly
    assert sum(r.get("FramesRendered", 0) for r in both) == 8
    chunk_lines = [r for r in both if r.get("chunk") is not None]
    assert {r["chunk"] for r in chunk_lines} == {0, 1, 2, 3} and all(r["attempt"] == 1 for r in chunk_lines)
    assert all(r.get("request_id") == "1-67891233-abcdef012345678912345678" for r in both if "received" in r["message"])
    emf = next(r for r in both if "FramesRendered" in r)
    assert emf["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "FramesRendered"

    # Nothing secret in any line of any process: the API key, the Django secret, presigned URLs, sessions.
    logs = "".join(stack.log(n) for n in ("api", "w1", "w2"))
    assert stack.key not in logs
    assert not re.search(r"rk_[A-Za-z0-9_-]{43}", logs)
    assert "X-Amz-Signature" not in logs and "X-Amz-Credential" not in logs and "Signature=" not in logs
    assert "sessionid" not in logs.lower() and "AWS_SECRET_ACCESS_KEY" not in logs


def test_farm_status_and_api_farm_show_live_workers_and_a_killed_one_drops_out(make_stack):
    # Progress written every second, so the first frames show while both chunks are still rendering.
    stack = make_stack(RENDER_SIMULATED_SECONDS="1", RENDER_WORKER_HEARTBEAT_SECONDS="1", RENDER_PROGRESS_SECONDS="1")
    operator = stack.create_api_key("ops", "--operator")
    stack.start_ready_worker("steady")
    stack.start_ready_worker("doomed")
    job = stack.submit(frame_start=1, frame_end=20, chunk_size=5)
    stack.wait_for(job["id"], lambda j: j["progress"]["frames_done"] >= 1, timeout=30)

    farm = requests.get(f"{stack.api}/api/farm", headers={"Authorization": f"Bearer {operator}"}, timeout=10)
    assert farm.status_code == 200, farm.text
    status = farm.json()
    assert len(status["workers"]) == 2
    assert {w["job_id"] for w in status["workers"] if w["busy"]} == {job["id"]}
    assert set(status["queues"]) == {"high", "normal", "low"} and status["dead_letters"] == 0
    assert status["jobs_by_state"]["PROCESSING"] == 1 and status["in_flight"] >= 1
    denied = requests.get(f"{stack.api}/api/farm", headers=stack.auth(), timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "operator_only"

    text = stack.manage("farm_status")
    assert "workers: 2 alive" in text and f"job {job['id']}" in text and "dead letters: 0" in text
    stack.kill("doomed")

    def alive() -> list:  # the API's view of the heartbeats (a farm_status process a poll cost a second of CPU)
        farm = requests.get(f"{stack.api}/api/farm", headers={"Authorization": f"Bearer {operator}"}, timeout=10)
        return farm.json()["workers"]

    wait_until(lambda: len(alive()) == 1, 10, "the killed worker to drop out (TTL: three beats of 1 s)")
    assert len(json.loads(stack.manage("farm_status", "--json"))["workers"]) == 1
    assert stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=90)["status"] == "COMPLETED"


def every_line_json(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "no output"
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return [json.loads(line) for line in lines]


def test_with_json_logs_every_line_of_the_api_and_a_worker_is_json_and_access_lines_carry_the_request_id(make_stack):
    stack = make_stack(api=False, RENDER_LOG_FORMAT="json")
    stack.api = stack.start_api(workers=1, threads=2)
    trace = {"X-Amzn-Trace-Id": "Root=1-6789abcd-0123456789abcdef01234567"}
    traced = requests.get(f"{stack.api}/api/jobs", headers={**stack.auth(), **trace}, timeout=10)
    refused = requests.get(f"{stack.api}/api/jobs", timeout=10)  # no key: 401, and a random request id
    assert traced.status_code == 200 and refused.status_code == 401
    stack.start_ready_worker("w1")
    stack.stop("api")  # its shutdown lines too

    api = every_line_json(stack.log("api"))
    for resp in (traced, refused):
        request_id = resp.headers["X-Request-Id"]
        access = [r for r in api if r["logger"] == "gunicorn.access" and r["request_id"] == request_id]
        assert len(access) == 1 and access[0]["path"] == "/api/jobs" and access[0]["status"] == resp.status_code
        mine = [r for r in api if r.get("request_id") == request_id]
        assert {r["logger"] for r in mine} >= {"gunicorn.access", "render.api"}
    assert traced.headers["X-Request-Id"] == "1-6789abcd-0123456789abcdef01234567"
    unauthorized = next(r for r in api if r["logger"] == "django.request")  # logged after the request's middleware
    assert unauthorized["request_id"] == refused.headers["X-Request-Id"]
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Starting gunicorn") for r in api)

    worker = every_line_json(stack.log("w1"))  # its start-up: no banner, and the ready line is a log line
    assert any(r["message"].endswith(" ready.") for r in worker)
