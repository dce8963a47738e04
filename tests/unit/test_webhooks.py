"""Webhooks: the signature, the URL and address policy, the sender against a real local receiver, and the
delivery service on fakes (opened once per end, retried with backoff, never POSTed twice after a success)."""

import http.server
import threading
from datetime import timedelta

import pytest

from jobs.adapters.webhook_sender import HttpWebhookSender
from jobs.callbacks import CallbackRefused, check_address, check_callback_url, signature, signature_valid
from jobs.domain import JobStatus
from jobs.errors import WebhookSecretMissing
from jobs.ports import SendResult
from jobs.services import job_cancel
from jobs.services.webhooks import WebhookNotifier, WebhookPolicy, webhook_deliver, webhooks_sweep
from tests.fakes import FakeDeliverySlots, FakeWebhooks
from tests.unit.conftest import RETENTION, drain, make_worker, submit

# --- signing ---------------------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"id": "x"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_k", 1700000000, body) == f"v1={expected}"
    assert signature_valid("whsec_k", 1700000000, body, f"v1={expected}")
    assert not signature_valid("whsec_other", 1700000000, body, f"v1={expected}")
    assert not signature_valid("whsec_k", 1700000001, body, f"v1={expected}")
    assert not signature_valid("whsec_k", 1700000000, body + b" ", f"v1={expected}")


# --- address and URL policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the instance metadata service
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4 inside IPv6
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address):
    with pytest.raises(CallbackRefused):
        check_address(address, allow_private=False)
    check_address(address, allow_private=True)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    check_address(address, allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http"),
        ("/relative/path", "http"),
        ("https://", "host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/" + "a" * 2100, "2048"),
        ("https://exa mple.com/", "spaces"),
        ("https://127.0.0.1/hook", "not public"),
        ("https://[::1]:8443/hook", "not public"),
        ("https://example.com:99999/", "valid"),
    ],
)
def test_bad_callback_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(CallbackRefused, match=why):
        check_callback_url(url, https_only=False, allow_private=False)


def test_https_only_in_production_and_loopback_when_allowed():
    with pytest.raises(CallbackRefused, match="https"):
        check_callback_url("http://example.com/hook", https_only=True, allow_private=False)
    assert check_callback_url("https://example.com/hook", https_only=True, allow_private=False)
    assert check_callback_url("http://127.0.0.1:9/hook", https_only=False, allow_private=True)


# --- the sender against a real receiver on 127.0.0.1 ------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[tuple[str, dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, dict(self.headers), body))
        code = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.end_headers()
        self.wfile.write(b"x" * 100_000)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.answers, _Receiver.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def test_the_sender_connects_to_the_checked_address_with_the_host_header(receiver):
    resolved = []

    def resolver(host, port):
        resolved.append(host)
        return ["127.0.0.1"]

    sender = HttpWebhookSender(https_only=False, allow_private=True, resolver=resolver)
    result = sender.post(receiver + "/hook?x=1", body=b"{}", headers={"X-Render-Signature": "v1=ab"})
    assert result == SendResult(status_code=200)
    path, headers, body = _Receiver.seen[0]
    assert resolved == ["localhost"] and path == "/hook?x=1" and body == b"{}"
    assert headers["Host"].startswith("localhost:") and headers["X-Render-Signature"] == "v1=ab"


def test_the_sender_follows_no_redirect_and_refuses_private_addresses(receiver):
    _Receiver.answers = [302]
    sender = HttpWebhookSender(https_only=False, allow_private=True)
    assert sender.post(receiver, body=b"{}", headers={}).status_code == 302
    assert len(_Receiver.seen) == 1  # the Location was not followed
    strict = HttpWebhookSender(https_only=False, allow_private=False)
    refused = strict.post(receiver, body=b"{}", headers={})  # localhost resolves to loopback
    assert refused.permanent and "not public" in refused.error and len(_Receiver.seen) == 1
    rebinding = HttpWebhookSender(https_only=False, allow_private=False, resolver=lambda h, p: ["8.8.8.8", "10.0.0.1"])
    assert rebinding.post("http://mixed.example/", body=b"{}", headers={}).permanent


def test_the_sender_times_out_quickly():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    sender = HttpWebhookSender(https_only=False, allow_private=True, connect_timeout=0.5, read_timeout=0.5)
    result = sender.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", body=b"{}", headers={})
    listener.close()
    assert result.status_code is None and result.error == "Timed out."


# --- the delivery service --------------------------------------------------------------------------


class ScriptedSender:
    def __init__(self, *results: SendResult):
        self.results = list(results)
        self.posts: list[tuple[str, bytes, dict]] = []

    def post(self, url, *, body, headers):
        self.posts.append((url, body, headers))
        return self.results.pop(0) if self.results else SendResult(status_code=204)


POLICY = WebhookPolicy(max_tries=3, backoff_seconds=10, lease_seconds=30, grace_seconds=60)


@pytest.fixture
def hooks():
    fake = FakeWebhooks()
    fake.put_secret("alice", "whsec_test", now=None)
    return fake


def notifier(hooks, queue, clock):
    return WebhookNotifier(hooks=hooks, queue=queue, clock=clock, policy=POLICY, retention=RETENTION)


def test_a_completed_job_with_a_callback_is_delivered_once_signed(repo, queue, clock, store, hooks):
    job = submit(repo, queue, clock, frames=(1, 2), callback_url="https://example.com/h", hooks=hooks)
    drain(repo, queue, make_worker(repo, store, clock, notifier=notifier(hooks, queue, clock)))
    assert queue.webhooks == [(job.id, 1, "COMPLETED")]
    sender = ScriptedSender()
    args = dict(
        hooks=hooks, slots=FakeDeliverySlots(), sender=sender, body_of=lambda _: b'{"a":1}', clock=clock, policy=POLICY
    )
    assert webhook_deliver(job_id=job.id, attempt=1, event=JobStatus.COMPLETED, **args) is None
    url, body, headers = sender.posts[0]
    assert url == "https://example.com/h" and body == b'{"a":1}'
    assert signature_valid("whsec_test", int(headers["X-Render-Timestamp"]), body, headers["X-Render-Signature"])
    # a duplicate message, and a second notification of the same end, change nothing
    assert webhook_deliver(job_id=job.id, attempt=1, event=JobStatus.COMPLETED, **args) is None
    notifier(hooks, queue, clock).job_ended(repo.get(job.id), JobStatus.COMPLETED)
    assert len(sender.posts) == 1 and len(queue.webhooks) == 1
    delivery = hooks.latest(job.id)
    assert delivery.state == "delivered" and [t.status_code for t in delivery.deliveries] == [204]


def test_failed_tries_back_off_then_give_up(repo, queue, clock, hooks):
    job = submit(repo, queue, clock, frames=(1, 1), callback_url="https://example.com/h", hooks=hooks)
    job_cancel(repo=repo, job=job, now=clock(), retention=RETENTION, notifier=notifier(hooks, queue, clock))
    assert queue.webhooks == [(job.id, 1, "CANCELLED")]
    sender = ScriptedSender(SendResult(status_code=500), SendResult(error="Timed out."), SendResult(status_code=503))
    args = dict(
        hooks=hooks, slots=FakeDeliverySlots(), sender=sender, body_of=lambda _: b"{}", clock=clock, policy=POLICY
    )
    waits = [webhook_deliver(job_id=job.id, attempt=1, event=JobStatus.CANCELLED, **args) for _ in range(3)]
    assert waits == [10, 20, None]
    delivery = hooks.latest(job.id)
    assert delivery.state == "failed" and delivery.tries == 3
    assert [(t.attempt, t.status_code, t.error) for t in delivery.deliveries] == [
        (1, 500, None),
        (2, None, "Timed out."),
        (3, 503, None),
    ]


def test_a_refused_address_is_not_retried_and_a_live_lease_blocks_a_duplicate(repo, queue, clock, hooks):
    job = submit(repo, queue, clock, frames=(1, 1), callback_url="https://example.com/h", hooks=hooks)
    job_cancel(repo=repo, job=job, now=clock(), retention=RETENTION, notifier=notifier(hooks, queue, clock))
    pending = hooks.get(job.id, 1, JobStatus.CANCELLED)
    hooks.begin(pending, token="other", now=clock(), until=clock() + timedelta(seconds=30))
    sender = ScriptedSender(SendResult(error="The address 10.0.0.1 is not public", permanent=True))
    args = dict(
        hooks=hooks, slots=FakeDeliverySlots(), sender=sender, body_of=lambda _: b"{}", clock=clock, policy=POLICY
    )
    assert webhook_deliver(job_id=job.id, attempt=1, event=JobStatus.CANCELLED, **args) is None
    assert sender.posts == []  # another worker holds it
    clock.advance(31)
    assert webhook_deliver(job_id=job.id, attempt=1, event=JobStatus.CANCELLED, **args) is None
    assert hooks.latest(job.id).state == "failed" and len(sender.posts) == 1


def test_a_lost_message_is_sent_again_by_the_sweeper_once(repo, hooks, clock):
    from tests.fakes import FakeTaskQueue

    down = FakeTaskQueue(down=True)
    job = submit(repo, FakeTaskQueue(), clock, frames=(1, 1), callback_url="https://example.com/h", hooks=hooks)
    job_cancel(repo=repo, job=job, now=clock(), retention=RETENTION, notifier=notifier(hooks, down, clock))
    assert hooks.latest(job.id).state == "pending"  # the end stands; the message was lost
    queue = FakeTaskQueue()
    assert webhooks_sweep(hooks=hooks, queue=queue, now=clock(), grace=timedelta(seconds=60)) == {}
    clock.advance(61)
    for _ in range(2):
        webhooks_sweep(hooks=hooks, queue=queue, now=clock(), grace=timedelta(seconds=60))
    assert queue.webhooks == [(job.id, 1, "CANCELLED")]


def test_a_callback_needs_the_owners_secret(repo, queue, clock):
    with pytest.raises(WebhookSecretMissing):
        submit(repo, queue, clock, frames=(1, 1), callback_url="https://example.com/h", hooks=FakeWebhooks())


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_total_limit():
    """httpx's read timeout is per read: a byte every 0.2 s never trips it. The whole exchange is limited."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def drip():
        conn, _ = listener.accept()
        conn.recv(65536)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            pass  # the sender hung up
        finally:
            conn.close()

    threading.Thread(target=drip, daemon=True).start()
    sender = HttpWebhookSender(https_only=False, allow_private=True, read_timeout=1.0, total_timeout=1.5)
    started = time.monotonic()
    result = sender.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", body=b"{}", headers={})
    listener.close()
    assert time.monotonic() - started < 4
    assert result.status_code is None and "Timed out" in result.error
