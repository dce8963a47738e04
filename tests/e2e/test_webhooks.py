"""Webhooks end to end: gunicorn, a render worker and a webhook worker (real `celery worker` processes) POST to a
real receiver (http.server on 127.0.0.1).

One stack for the module: a completed job notifies once with a signature that verifies with the owner's
secret; a failed try is tried again after the documented backoff (SQS holds the message back); a receiver that
fails twice shows the retries on the job; a cancelled job notifies; an API with RENDER_WEBHOOK_ALLOW_PRIVATE off
refuses a loopback callback. Then, on a stack of its own, a receiver that drips its answer a byte a second holds
at most two webhook workers of its owner's, and never the render worker: another owner's frame renders at once.
"""

from __future__ import annotations

import http.server
import json
import select
import threading
import time
import uuid

import pytest
import requests

from jobs.callbacks import signature_valid
from jobs.devstack.stack import ENTRYPOINT, free_port, wait_for_http
from tests.e2e.conftest import E2EStack

pytestmark = pytest.mark.e2e


BACKOFF = 2  # RENDER_WEBHOOK_BACKOFF_SECONDS of the module's stack: the first retry's delay


class Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[tuple[str, dict, bytes]] = []
    arrivals: list[tuple[str, float]] = []  # (path, time.monotonic() when the POST arrived)
    failures: dict[str, int] = {}  # path -> how many more times to answer 500

    def do_POST(self):
        Receiver.arrivals.append((self.path, time.monotonic()))
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
            "RENDER_WEBHOOK_BACKOFF_SECONDS": str(BACKOFF),
        }
    )
    stack.bootstrap()
    stack.key = stack.create_api_key("e2e", "--allow-high")
    stack.api = stack.start_api(workers=1, threads=4)
    made = requests.post(f"{stack.api}/api/webhook-secret", headers=stack.auth(), timeout=10)
    assert made.status_code == 201, made.text
    stack.secret = made.json()["secret"]
    stack.start_ready_worker()
    stack.start_ready_webhook_worker()
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


def test_a_failed_try_is_tried_again_after_the_documented_backoff(stack, receiver):
    Receiver.failures["/backoff"] = 1
    job = stack.submit(callback_url=f"{receiver}/backoff")
    final = stack.wait_for(job["id"], webhook_settled, timeout=30)
    assert [(d["attempt"], d["status_code"]) for d in final["webhook"]["deliveries"]] == [(1, 500), (2, 200)]
    first, second = [at for path, at in Receiver.arrivals if path == "/backoff"]
    # SQS held the retry back for the backoff (DelaySeconds); then a long poll of at most 1 s and one try.
    assert BACKOFF <= second - first < BACKOFF + 2, second - first
    worker_log = stack.log("webhooks")
    assert "try=1 state=pending code=500" in worker_log and "soft_time_limit must be" not in worker_log
    assert "received jobs.deliver_webhook" in worker_log
    assert "received jobs.deliver_webhook" not in stack.log("worker")  # the render worker never takes one


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


class Dripper(http.server.BaseHTTPRequestHandler):
    """Answers one byte a second, for ever (the sender cuts it off); counts the POSTs it holds at once."""

    lock = threading.Lock()
    open_now = 0
    most = 0
    seen = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with Dripper.lock:
            Dripper.open_now += 1
            Dripper.seen += 1
            Dripper.most = max(Dripper.most, Dripper.open_now)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 600:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                # A second between bytes, unless the sender hangs up (at its total timeout) meanwhile: then
                # the connection is readable (EOF) and it is counted closed at once, not at the next write.
                if select.select([self.connection], [], [], 1.0)[0] and not self.connection.recv(1):
                    break
        except OSError:
            pass
        finally:
            with Dripper.lock:
                Dripper.open_now -= 1
            self.close_connection = True

    def log_message(self, *args):
        pass


def test_a_dripping_receiver_holds_two_webhook_workers_and_never_delays_another_owners_render(make_stack):
    Dripper.open_now = Dripper.most = Dripper.seen = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dripper)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack = make_stack(
        RENDER_SQS_WAIT_SECONDS="1",
        RENDER_WEBHOOK_ALLOW_PRIVATE="1",
        RENDER_WEBHOOK_CONNECT_TIMEOUT="1",
        RENDER_WEBHOOK_READ_TIMEOUT="1",
        RENDER_WEBHOOK_TOTAL_TIMEOUT="3",  # each try is held 3 s, then cut off
        RENDER_WEBHOOK_BUSY_SECONDS="1",  # a delivery over its owner's limit comes back after 1 s
        RENDER_WEBHOOK_BACKOFF_SECONDS="60",  # a cut-off try is not tried again within this test
    )
    try:
        made = requests.post(f"{stack.api}/api/webhook-secret", headers=stack.auth(), timeout=10)
        assert made.status_code == 201, made.text
        other_key = stack.create_api_key("other-owner")
        # One render worker, as in production; a webhook pool larger than the limit, so the limit is what holds.
        render, hooks = stack.start_worker(), stack.start_webhook_worker(concurrency=3)
        stack.wait_ready(render, "worker")
        stack.wait_ready(hooks, "webhooks")
        url = f"http://127.0.0.1:{server.server_address[1]}/drip"
        for _ in range(4):
            stack.submit(callback_url=url)  # one frame each: rendered at once, then its delivery drips
        deadline = time.monotonic() + 20
        while Dripper.open_now < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Dripper.open_now == 2, "two deliveries are dripping"

        # Another owner's one-frame job renders at once while deliveries drip: the render worker holds none of
        # them (on the render queues, each would hold it until the sender cut the answer off, 3 s, one by one).
        stack.key = other_key
        started = time.monotonic()
        other = stack.submit()
        stack.wait_for_status(other["id"], "COMPLETED", timeout=10)
        assert time.monotonic() - started < 3

        deadline = time.monotonic() + 15
        while Dripper.seen < 4 and time.monotonic() < deadline:  # the other two, once the first two were cut off
            time.sleep(0.05)
        assert Dripper.seen == 4 and Dripper.most == 2, (Dripper.seen, Dripper.most)
        assert "deliveries in flight; again in 1 s" in stack.log("webhooks")  # they waited, not as a failed try
        assert "received jobs.deliver_webhook" not in stack.log("worker")
    finally:
        server.shutdown()
