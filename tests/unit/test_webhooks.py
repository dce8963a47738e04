"""Webhooks: the signature, the URL and address policy, the sender against a real local receiver, and the
delivery service on fakes (opened once per end, retried with backoff, never POSTed twice after a success)."""

import http.server
import ipaddress
import random
import re
import threading
from datetime import timedelta

import pytest

from jobs.adapters.webhook_sender import HttpWebhookSender
from jobs.callbacks import (
    REFUSED_IPV4,
    REFUSED_IPV6,
    CallbackRefused,
    check_address,
    check_callback_url,
    refusal,
    signature,
    signature_valid,
)
from jobs.domain import JobStatus
from jobs.errors import WebhookSecretMissing
from jobs.ports import SendResult
from jobs.services import job_cancel
from jobs.services.webhooks import WebhookNotifier, WebhookPolicy, webhook_deliver, webhooks_sweep
from tests.fakes import FakeDeliverySlots, FakeWebhooks, control
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


# Every range the policy refuses, with its reason and a public address just outside it (or, for blocks outside
# 2000::/3 whose neighbours are refused too, a public one). The range's first, middle and last addresses are
# refused (the middle one for this reason); the neighbour passes.
RANGES = [
    ("0.0.0.0/8", "this network", "1.0.0.1"),
    ("10.0.0.0/8", "private", "11.0.0.1"),
    ("100.64.0.0/10", "carrier-grade NAT", "100.128.0.1"),
    ("127.0.0.0/8", "loopback", "128.0.0.1"),
    ("169.254.0.0/16", "link-local", "169.255.0.1"),  # 169.254.169.254: the instance metadata service
    ("172.16.0.0/12", "private", "172.32.0.1"),
    ("192.0.0.0/24", "IETF protocol assignments", "192.0.1.1"),
    ("192.0.2.0/24", "documentation", "192.0.3.1"),
    ("192.88.99.0/24", "6to4 relay", "192.88.98.1"),
    ("192.168.0.0/16", "private", "192.169.0.1"),
    ("198.18.0.0/15", "benchmarking", "198.20.0.1"),
    ("198.51.100.0/24", "documentation", "198.51.101.1"),
    ("203.0.113.0/24", "documentation", "203.0.114.1"),
    ("224.0.0.0/4", "multicast", "223.255.255.1"),
    ("240.0.0.0/4", "reserved or broadcast", "223.1.1.1"),  # 255.255.255.255 is its last address
    ("::/128", "unspecified", "2606:4700:4700::1111"),
    ("::1/128", "loopback", "2606:4700:4700::1111"),
    ("::/96", "IPv4-compatible", "2606:4700:4700::1111"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "64:ff9b::808:808"),
    ("100::/64", "discard-only", "2606:4700:4700::1111"),
    ("100:0:0:1::/64", "dummy prefix", "2606:4700:4700::1111"),
    ("2001::/23", "Teredo", "2001:200::1"),
    ("2001:db8::/32", "documentation", "2001:db9::1"),
    ("3fff::/20", "documentation", "3fff:1000::1"),
    ("5f00::/16", "segment routing", "2606:4700:4700::1111"),
    ("fc00::/7", "unique local", "2606:4700:4700::1111"),
    ("fe80::/10", "link-local", "2606:4700:4700::1111"),
    ("fec0::/10", "site-local", "2606:4700:4700::1111"),
    ("ff00::/8", "multicast", "2606:4700:4700::1111"),
    ("4000::/2", "outside global unicast", "3fff:ffff::1"),  # IANA allocates global unicast from 2000::/3 only
]


@pytest.mark.parametrize(("network", "reason", "public"), RANGES, ids=[r[0] for r in RANGES])
def test_every_non_global_range_is_refused_and_its_public_neighbour_passes(network, reason, public):
    net = ipaddress.ip_network(network)
    with pytest.raises(CallbackRefused, match=re.escape(reason)):
        check_address(net[net.num_addresses // 2], allow_private=False)
    for address in (net[0], net[-1]):  # the edges (::/96 starts with ::, refused as unspecified)
        with pytest.raises(CallbackRefused):
            check_address(address, allow_private=False)
        check_address(address, allow_private=True)
    check_address(public, allow_private=False)


def test_the_table_covers_every_range_the_policy_names():
    listed = {ipaddress.ip_network(r[0]) for r in RANGES}
    assert {net for net, _ in (*REFUSED_IPV4, *REFUSED_IPV6)} <= listed


@pytest.mark.parametrize(
    ("refused", "why", "public"),
    [
        ("::ffff:127.0.0.1", "IPv4-mapped of 127.0.0.1: loopback", "::ffff:8.8.8.8"),
        ("::ffff:169.254.169.254", "link-local", "::ffff:93.184.216.34"),
        ("64:ff9b::a00:1", "NAT64 of 10.0.0.1: private", "64:ff9b::808:808"),
        ("64:ff9b::c058:6301", "NAT64 of 192.88.99.1: deprecated 6to4", "64:ff9b::5db8:d822"),
        ("2002:7f00:1::1", "6to4 of 127.0.0.1: loopback", "2002:808:808::1"),
        ("2002:c612:1::1", "6to4 of 198.18.0.1: benchmarking", "2002:5db8:d822::1"),
    ],
)
def test_ipv4_inside_ipv6_is_judged_as_ipv4(refused, why, public):
    with pytest.raises(CallbackRefused, match=re.escape(why)):
        check_address(refused, allow_private=False)
    check_address(public, allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "192.31.196.1", "2606:4700:4700::1111", "2a00::1"])
def test_public_addresses_pass(address):
    check_address(address, allow_private=False)


def test_a_zone_id_does_not_hide_a_link_local_address():
    with pytest.raises(CallbackRefused, match="link-local"):
        check_address("fe80::1%eth0", allow_private=False)


def test_the_policy_is_at_least_as_strict_as_this_pythons_is_global():
    # is_global changes between Python releases; whatever this one calls non-global is refused here too,
    # except that IPv4 inside IPv6 (NAT64's 64:ff9b::/96, 6to4) is judged by its IPv4 address, as the policy says.
    rng = random.Random(18)
    samples = [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(20_000)]
    samples += [ipaddress.IPv6Address((1 << 125) | rng.getrandbits(125)) for _ in range(5_000)]  # 2000::/3
    samples += [ipaddress.IPv6Address((0x2002 << 112) | rng.getrandbits(112)) for _ in range(2_000)]  # 6to4
    nat64 = ipaddress.ip_network("64:ff9b::/96")
    samples += [nat64[rng.getrandbits(32)] for _ in range(2_000)]

    def python_says_global(ip) -> bool:
        if ip in nat64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF).is_global
        if ip.version == 6 and ip.sixtofour is not None:
            return ip.sixtofour.is_global
        return ip.is_global

    missed = [ip for ip in samples if not python_says_global(ip) and refusal(ip) is None]
    assert missed == []
    assert any(refusal(ip) is None for ip in samples[20_000:])  # the IPv6 samples are not all refused anyway


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
        ("https://[fec0::1]/hook", "site-local"),
        ("https://192.88.99.1/hook", "6to4 relay"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", "NAT64 of 169.254.169.254"),
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


@pytest.mark.parametrize("resolved", ["fec0::1", "3fff::1", "192.88.99.1", "198.18.0.1", "64:ff9b::a9fe:a9fe"])
def test_the_sender_refuses_a_host_that_resolves_into_a_special_purpose_range(resolved):
    sender = HttpWebhookSender(https_only=False, allow_private=False, resolver=lambda host, port: [resolved])
    result = sender.post("http://hook.example/", body=b"{}", headers={})
    assert result.permanent and "not public" in result.error and result.status_code is None


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
    job_cancel(jobs=control(repo, notifier=notifier(hooks, queue, clock)), job=job, now=clock())
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
    job_cancel(jobs=control(repo, notifier=notifier(hooks, queue, clock)), job=job, now=clock())
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
    job_cancel(jobs=control(repo, notifier=notifier(hooks, down, clock)), job=job, now=clock())
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
