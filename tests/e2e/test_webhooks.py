"""Webhooks end to end: gunicorn and a real `celery worker` POST to a real receiver (http.server on 127.0.0.1).

One stack for the module: a completed job notifies once with a signature that verifies with the owner's
secret; a receiver that fails twice shows the retries on the job; a cancelled job notifies; an API with
RENDER_WEBHOOK_ALLOW_PRIVATE off refuses a loopback callback.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

import pytest
import requests

from jobs.callbacks import signature_valid
from jobs.devstack.stack import ENTRYPOINT, free_port, wait_for_http
from tests.e2e.conftest import E2EStack

pytestmark = pytest.mark.e2e


class Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[tuple[str, dict, bytes]] = []
    failures: dict[str, int] = {}  # path -> how many more times to answer 500

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.path, dict(self.headers), body))
        left = Receiver.failures.get(self.path, 0)
        Receiver.failures[self.path] = max(left - 1, 0)
        self.send_response(500 if left else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def stack(emulator, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    stack = E2EStack(log_dir=tmp_path_factory.mktemp(f"hooks-{suffix}"))
    stack.env.update(emulator.env)
    stack.env.update(
        {
            "RENDER_TABLE_NAME": f"e2e-{suffix}",
            "RENDER_BUCKET_NAME": f"e2e-{suffix}",
            "RENDER_QUEUE_PREFIX": f"e2e-{suffix}-",
            "RENDER_SIMULATED_SECONDS": "0.2",
            "RENDER_SQS_WAIT_SECONDS": "1",
            "RENDER_WEBHOOK_ALLOW_PRIVATE": "1",
            "RENDER_WEBHOOK_BACKOFF_SECONDS": "1",
        }
    )
    stack.bootstrap()
    stack.key = stack.create_api_key("e2e", "--allow-high")
    stack.api = stack.start_api(workers=1, threads=4)
    made = requests.post(f"{stack.api}/api/webhook-secret", headers=stack.auth(), timeout=10)
    assert made.status_code == 201, made.text
    stack.secret = made.json()["secret"]
    stack.start_ready_worker()
    yield stack
    stack.stop_all()


def posts_to(path: str, timeout: float = 30, count: int = 1) -> list[tuple[str, dict, bytes]]:
    deadline = time.monotonic() + timeout
    while True:
        mine = [p for p in Receiver.posts if p[0] == path]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.1)


def webhook_settled(job: dict) -> bool:
    return job.get("webhook", {}).get("state") in ("delivered", "failed")


def test_a_callback_needs_a_secret_then_a_completed_job_is_posted_once_signed(stack, receiver):
    other = stack.create_api_key("no-secret-yet")
    refused = requests.post(
        f"{stack.api}/api/jobs",
        json={"scene": "e2e", "width": 64, "height": 64, "callback_url": f"{receiver}/done"},
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "webhook_secret_missing"
    secret = stack.secret

    job = stack.submit(frame_start=1, frame_end=3, chunk_size=1, callback_url=f"{receiver}/done")
    assert job["callback_url"] == f"{receiver}/done"
    (post,) = posts_to("/done")
    _, headers, body = post
    assert signature_valid(secret, int(headers["X-Render-Timestamp"]), body, headers["X-Render-Signature"])
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["id"] == job["id"] and sent["status"] == "COMPLETED" and sent["results"]["manifest_url"]
    final = stack.wait_for(job["id"], webhook_settled, timeout=20)
    assert final["webhook"]["state"] == "delivered" and final["webhook"]["event"] == "COMPLETED"
    assert [(d["attempt"], d["status_code"]) for d in final["webhook"]["deliveries"]] == [(1, 200)]
    time.sleep(1)
    assert len(posts_to("/done", timeout=0)) == 1  # one POST, no duplicate


def test_a_receiver_that_fails_twice_gets_retries_shown_on_the_job(stack, receiver):
    Receiver.failures["/flaky"] = 2
    job = stack.submit(callback_url=f"{receiver}/flaky")
    final = stack.wait_for(job["id"], webhook_settled, timeout=40)
    assert final["status"] == "COMPLETED" and final["webhook"]["state"] == "delivered"
    assert [(d["attempt"], d["status_code"]) for d in final["webhook"]["deliveries"]] == [(1, 500), (2, 500), (3, 200)]
    assert len(posts_to("/flaky", timeout=0)) == 3


def test_a_cancelled_job_notifies(stack, receiver):
    job = stack.submit(frame_start=1, frame_end=100, chunk_size=100, callback_url=f"{receiver}/cancelled")
    resp = requests.post(f"{stack.api}/api/jobs/{job['id']}/cancel", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200
    final = stack.wait_for(job["id"], webhook_settled, timeout=40)
    assert final["status"] == "CANCELLED" and final["webhook"]["event"] == "CANCELLED"
    (post,) = posts_to("/cancelled")
    assert json.loads(post[2])["status"] == "CANCELLED"


def test_an_api_without_the_private_setting_refuses_a_loopback_callback(stack, receiver):
    port = free_port()
    env = {"RENDER_API_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", "RENDER_WEBHOOK_ALLOW_PRIVATE": "0"}
    proc = stack._spawn("api-strict", [str(ENTRYPOINT), "api"], env)  # its own name: stop_all stops it too
    strict = f"http://127.0.0.1:{port}"
    wait_for_http(f"{strict}/healthz", process=proc)
    for url in (f"{receiver}/private", "http://169.254.169.254/latest", "http://[::1]:9/x", "ftp://example.com/"):
        resp = requests.post(
            f"{strict}/api/jobs",
            json={"scene": "e2e", "width": 64, "height": 64, "callback_url": url},
            headers=stack.auth(),
            timeout=10,
        )
        assert resp.status_code == 400, (url, resp.text)
        assert "callback_url" in resp.json()["error"]["details"], resp.text
    assert posts_to("/private", timeout=0) == []
