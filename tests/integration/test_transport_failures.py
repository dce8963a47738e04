"""The worker's SQS transport when a receive fails: SQS answers with an error, or never answers.

A real kombu channel (jobs.worker.transport) on a real event loop and curl client polls a queue of the
session's emulator through a proxy that fails the first receives, then passes every request through.
With kombu 5.7 alone, an error answer stopped the event loop or the queue's polling, and a silent one was
waited for forever.
"""

import time
import uuid
from urllib.parse import urlsplit

import kombu
import pytest
from kombu.asynchronous import Hub, set_event_loop

from jobs.worker import transport
from tests.support.flaky_sqs import FlakyProxy

DEADLINE_SECONDS = 15


def receive_through(proxy: FlakyProxy, queue: str) -> tuple[list, float]:
    """Consume `queue` through the proxy on a new event loop until a message arrives (or the deadline): the
    message bodies delivered and the seconds it took. An error out of the loop fails the test."""
    hub = Hub()
    set_event_loop(hub)
    conn = kombu.Connection(
        f"sqs://x:y@{urlsplit(proxy.url).netloc}",
        transport=transport.Transport,
        transport_options={"region": "us-east-1", "is_secure": False, "wait_time_seconds": 1, "polling_interval": 0},
    )
    delivered = []
    started = time.monotonic()
    try:
        channel = conn.channel()
        take = [lambda body, _message: delivered.append(body)]
        kombu.Consumer(channel, [kombu.Queue(queue)], no_ack=True, callbacks=take).consume()
        conn.transport.register_with_event_loop(conn.connection, hub)
        loop = hub.create_loop()
        while not delivered and time.monotonic() - started < DEADLINE_SECONDS:
            next(loop)
    finally:
        hub.close()
        set_event_loop(None)
        conn.release()
    return delivered, time.monotonic() - started


@pytest.fixture
def queue(emulator):
    """A new queue holding one message, sent by kombu straight to the emulator."""
    name = f"render-flaky-{uuid.uuid4().hex[:8]}"
    endpoint = urlsplit(emulator.env["AWS_ENDPOINT_URL"])
    options = {"region": "us-east-1", "is_secure": False}
    with (
        kombu.Connection(f"sqs://x:y@{endpoint.netloc}", transport_options=options) as conn,
        conn.SimpleQueue(name) as q,
    ):
        q.put("the chunk")
    return name


def test_a_receive_answered_with_a_server_error_is_polled_again_and_delivers(emulator, queue):
    with FlakyProxy(emulator.env["AWS_ENDPOINT_URL"], failures=2) as proxy:
        delivered, seconds = receive_through(proxy, queue)
    assert proxy.failed == 2
    assert delivered == ["the chunk"]
    assert seconds >= 3 * transport.POLL_RETRY_SECONDS  # a pause after each failure (1 s, then 2 s), no busy loop


def test_a_receive_answered_with_a_client_error_is_logged_and_polled_again(emulator, queue, caplog):
    """A 4xx (throttled, credentials, a queue gone) was raised into the event loop: now it is logged, and the
    queue is polled again after a pause, so the worker picks up again once the cause is gone."""
    with FlakyProxy(emulator.env["AWS_ENDPOINT_URL"], failures=1, statuses=(400,)) as proxy:
        delivered, _ = receive_through(proxy, queue)
    assert proxy.failed == 1 and delivered == ["the chunk"]
    assert f"receive from {queue} failed" in caplog.text and "HTTP 400" in caplog.text


def test_a_receive_that_is_never_answered_times_out_and_is_polled_again(emulator, queue, monkeypatch):
    monkeypatch.setattr(transport, "ASYNC_REQUEST_SECONDS", 2.0)
    with FlakyProxy(emulator.env["AWS_ENDPOINT_URL"], failures=1, hang=True) as proxy:
        delivered, seconds = receive_through(proxy, queue)
    assert proxy.failed == 1
    assert delivered == ["the chunk"]
    assert seconds >= 2.0
