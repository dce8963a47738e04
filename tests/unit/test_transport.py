"""The priority transport at the level of kombu's channel: which queue is polled when.

The channel is built without a connection (its polling decisions need none); `_get_bulk_async` is
replaced by a recorder and the clock by a fake, so the order of polls is observed exactly.
"""

import threading

import pytest

from jobs.worker import transport
from jobs.worker.transport import Channel, check_kombu

ORDER = ["render-high", "render-normal", "render-low"]


class Timer:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Hub:
    def __init__(self):
        self.later: list[tuple[float, object, tuple]] = []
        self.soon: list[object] = []
        self.repeated: list[tuple[float, object, Timer]] = []
        self.timers: list[Timer] = []  # what call_later returned, in order

    def call_repeatedly(self, seconds, fn):
        self.repeated.append((seconds, fn, timer := Timer()))
        return timer

    def call_later(self, delay, fn, *args):
        self.later.append((delay, fn, args))
        self.timers.append(timer := Timer())
        return timer

    def call_soon(self, fn):
        self.soon.append(fn)


class QoS:
    def __init__(self):
        self.free = True
        self.delivered: dict[str, object] = {}

    def can_consume(self):
        return self.free

    def get(self, tag):
        return self.delivered[tag]  # a KeyError for a tag with no message, as kombu's

    def ack(self, tag):
        del self.delivered[tag]
        self.free = True


class BlockingSQS:
    """kombu's blocking boto3 SQS client: the deletes it made, or the error it raises."""

    def __init__(self):
        self.deletes: list[tuple[str, str]] = []
        self.error: Exception | None = None

    def delete_message(self, QueueUrl, ReceiptHandle):
        if self.error is not None:
            raise self.error
        self.deletes.append((QueueUrl, ReceiptHandle))


class AsyncSQS:
    """kombu's asynchronous SQS connection, recording the deletes it would send on the event loop."""

    def __init__(self):
        self.deletes: list[tuple[str, str, object]] = []

    def delete_message(self, queue_url, receipt_handle, callback=None):
        self.deletes.append((queue_url, receipt_handle, callback))


@pytest.fixture
def now(monkeypatch):
    clock = {"t": 100.0}
    monkeypatch.setattr(transport.time, "monotonic", lambda: clock["t"])
    return clock


class Probe(Channel):
    """The channel with plain attributes where kombu has properties that need a connection."""

    qos = None
    hub = None
    transport_options = {"queue_order": ORDER}


@pytest.fixture
def sqs_calls(monkeypatch):
    """kombu's SQS channel's ack, reject and qos, recorded instead of sent (they need a connection)."""
    calls = []

    def ack(self, tag, multiple=False):
        calls.append(("ack", tag))
        self.qos.free = True  # the delivery's slot is released

    def reject(self, tag, requeue=False):
        calls.append(("reject", tag, requeue))
        self.qos.free = True

    sqs = transport.SQS.Channel
    monkeypatch.setattr(sqs, "basic_ack", ack)
    monkeypatch.setattr(sqs, "basic_reject", reject)
    monkeypatch.setattr(sqs, "basic_qos", lambda self, prefetch_count=0, **kw: calls.append(("qos", prefetch_count)))
    return calls


@pytest.fixture
def channel(now):
    ch = Probe.__new__(Probe)  # no connection: only the polling decisions are under test
    ch._start_polling_state()
    ch._active_queues = list(reversed(ORDER))  # consumed in any order; the rank comes from queue_order
    ch._tag_to_queue = {}
    ch.qos = QoS()
    ch.hub = Hub()
    ch.polled: list[str] = []
    ch.waited: list[str] = []
    ch._get_bulk_async = lambda queue, callback: ch.polled.append(queue)
    ch.async_sqs = AsyncSQS()
    ch.asynsqs = lambda queue=None: ch.async_sqs
    ch.blocking_sqs = BlockingSQS()
    ch.sqs = lambda queue=None: ch.blocking_sqs
    ch.short_clients = []  # the clients copied with kombu's short timeouts (`_new_release_client`)
    ch._new_release_client = lambda client: ch.short_clients.append(client) or client
    ch._loop1 = lambda queue, fetched=None: ch.waited.append(queue)
    return ch


def test_a_lower_queue_waits_until_every_higher_one_has_had_a_quiet_long_poll(channel, now):
    channel._schedule_queue("render-low")
    assert channel.polled == [] and len(channel.hub.later) == 1  # nothing above it has polled yet

    channel._schedule_queue("render-high")
    assert channel.polled == ["render-high"]  # the top queue never waits

    now["t"] += 0.05
    channel._schedule_queue("render-normal")
    assert channel.polled == ["render-high"]  # high's poll is too young to mean "empty"

    now["t"] += 0.1
    channel._schedule_queue("render-normal")
    channel._schedule_queue("render-low")
    assert channel.polled == ["render-high", "render-normal"]  # normal's own poll is still young

    now["t"] += 0.11
    channel._schedule_queue("render-low")
    assert channel.polled == ["render-high", "render-normal", "render-low"]


def test_work_on_a_higher_queue_holds_the_lower_ones_back_again(channel, now):
    for queue in ORDER:
        now["t"] += 0.2
        channel._schedule_queue(queue)
    assert channel.polled == ORDER

    channel._polled("render-high", messages_fetched=1)  # high answered: it had work
    assert channel.waited == ["render-high"]  # kombu's loop carries on for it
    channel.polled.clear()
    now["t"] += 1.0
    channel._schedule_queue("render-low")
    assert channel.polled == []  # high has no poll out: it may have more, so low waits


def test_a_full_worker_parks_its_queues_and_an_ack_polls_them_at_once_highest_first(channel, now, sqs_calls):
    """No spin on kombu's loop while every slot is taken (its re-check could wait a second for the loop's next
    timer): the queues wait parked, and the ack that frees a slot polls them from within the ack."""
    channel.qos.free = False
    for queue in ORDER:
        channel._schedule_queue(queue)
    assert channel.polled == [] and channel.waited == [] and channel.hub.later == []

    channel.basic_ack("tag-1")
    assert sqs_calls == [("ack", "tag-1")]
    assert channel.polled == ["render-high"]  # the lower ones wait for its quiet poll, as always
    assert len(channel.hub.later) == 2 and not channel._parked


def delivered(channel, tag: str, queue: str = "render-normal"):
    url = f"https://sqs.example/123/{queue}"
    info = {"routing_key": queue, "sqs_queue": url, "sqs_message": {"ReceiptHandle": f"handle-{tag}"}}
    channel.qos.delivered[tag] = type("Message", (), {"delivery_info": info})()
    channel.qos.free = False
    return url


def test_an_ack_frees_the_slot_at_once_and_deletes_beside_the_next_receive(channel, sqs_calls):
    """The DeleteMessage goes out on the event loop (no round trip blocking the worker's loop), and the queue
    is polled in the same turn: one worker process waits for one round trip between two tasks, not two."""
    url = delivered(channel, "tag-1")
    channel._schedule_queue("render-high")
    channel.basic_ack("tag-1")
    assert sqs_calls == []  # kombu's blocking delete is not used
    assert [(u, h) for u, h, _ in channel.async_sqs.deletes] == [(url, "handle-tag-1")]
    assert channel.polled == ["render-high"] and "tag-1" not in channel.qos.delivered


def test_a_delete_that_fails_is_tried_again_with_a_short_timeout_client_then_logged(channel, sqs_calls, caplog):
    for tag in ("tag-1", "tag-2"):
        url = delivered(channel, tag)
        channel._schedule_queue("render-high")
        channel.basic_ack(tag)
    for _, _, answered in channel.async_sqs.deletes:
        if answered is channel.async_sqs.deletes[1][2]:
            channel.blocking_sqs.error = ConnectionError("still unreachable")
        try:
            raise ConnectionError("SQS unreachable")
        except ConnectionError:
            answered.throw()  # as kombu's HTTP client reports a failed request to the callback
    assert channel.blocking_sqs.deletes == [(url, "handle-tag-1")]  # the second try of the first delete
    assert channel.short_clients == [channel.blocking_sqs] * 2  # on the event loop: short timeouts, not minutes
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # the second delete failed twice
    assert f"could not delete an acked message from {url}" in caplog.text and "still unreachable" in caplog.text


def test_an_ack_whose_delete_cannot_even_be_sent_still_polls(channel, sqs_calls):
    """A failure before the request is out (credentials, signing) must not leave the queues parked with a free
    slot: Celery logs the ack's error and goes on, and nothing else would poll them."""
    delivered(channel, "tag-1")
    channel._schedule_queue("render-high")

    def unsignable(queue_url, receipt_handle, callback=None):
        raise RuntimeError("no credentials")

    channel.async_sqs.delete_message = unsignable
    with pytest.raises(RuntimeError):
        channel.basic_ack("tag-1")
    assert channel.polled == ["render-high"]


def test_a_poll_that_fails_to_start_parks_the_rest_again_for_the_timer(channel, now):
    channel.qos.free = False
    for queue in ORDER:
        channel._schedule_queue(queue)
    assert len(channel.hub.repeated) == 1  # one safety-net timer, armed at the first park

    def broken(queue, callback):
        raise ConnectionError("no route")

    channel._get_bulk_async = broken
    channel.qos.free = True
    with pytest.raises(ConnectionError):
        channel._unpark()
    assert channel._parked == set(ORDER) and "render-high" not in channel._polls_out

    channel._get_bulk_async = lambda queue, callback: channel.polled.append(queue)
    _, tick, _ = channel.hub.repeated[0]
    tick()  # the timer's next turn
    assert channel.polled == ["render-high"]


def test_a_cancelled_queue_leaves_the_parked_set_and_close_stops_the_timer(channel, monkeypatch):
    channel.qos.free = False
    channel._schedule_queue("render-low")
    channel._tag_to_queue["ctag"] = "render-low"
    monkeypatch.setattr(transport.SQS.Channel, "basic_cancel", lambda self, tag: None)
    channel.basic_cancel("ctag")
    assert channel._parked == set()

    monkeypatch.setattr(transport.SQS.Channel, "close", lambda self: None)
    channel.close()
    assert channel.hub.repeated[0][2].cancelled and channel._unpark_timer is None


def test_an_ack_while_shutting_down_or_with_no_queue_consumed_deletes_before_it_returns(
    channel, sqs_calls, monkeypatch
):
    """A warm shutdown acks the last tasks as the loop closes, which could drop an answer in flight."""
    channel._schedule_queue("render-high")
    monkeypatch.setattr(transport.shutdown, "requested", lambda: True)
    delivered(channel, "tag-1")
    channel.basic_ack("tag-1")
    monkeypatch.setattr(transport.shutdown, "requested", lambda: False)
    channel._active_queues = []
    delivered(channel, "tag-2")
    channel.basic_ack("tag-2")
    assert sqs_calls == [("ack", "tag-1"), ("ack", "tag-2")] and channel.async_sqs.deletes == []


def test_a_reject_and_a_larger_prefetch_free_slots_too(channel, sqs_calls):
    channel.qos.free = False
    channel._schedule_queue("render-high")
    channel.basic_reject("tag-1", requeue=True)
    assert channel.polled == ["render-high"]

    channel.qos.free = False
    channel._schedule_queue("render-high")
    channel.basic_reject("tag-2")
    assert channel.polled == ["render-high", "render-high"]

    channel.qos.free = False
    channel._schedule_queue("render-high")
    channel.basic_qos(prefetch_count=1)
    assert channel._parked == {"render-high"}  # no slot yet: stays parked
    channel.qos.free = True
    channel.basic_qos(prefetch_count=2)  # Celery raises the prefetch for a task with an ETA
    assert channel.polled == ["render-high", "render-high", "render-high"]
    assert sqs_calls == [("reject", "tag-1", True), ("reject", "tag-2", False), ("qos", 1), ("qos", 2)]


def test_a_failed_delete_still_polls_the_parked_queues_and_raises(channel, sqs_calls, monkeypatch):
    def failing_ack(self, tag, multiple=False):
        self.qos.free = True  # kombu releases the slot, then re-raises
        raise ConnectionError("SQS unreachable")

    monkeypatch.setattr(transport.SQS.Channel, "basic_ack", failing_ack)
    channel.qos.free = False
    channel._schedule_queue("render-high")
    with pytest.raises(ConnectionError):
        channel.basic_ack("tag-1")
    assert channel.polled == ["render-high"]


def test_an_ack_from_another_thread_hands_the_polls_to_the_loop(channel, sqs_calls):
    channel.qos.free = False
    channel._schedule_queue("render-high")  # on the loop's thread
    worker = threading.Thread(target=channel.basic_ack, args=("tag-1",))
    worker.start()
    worker.join()
    assert channel.polled == [] and channel.hub.soon == [channel._unpark]
    channel.hub.soon.pop()()  # the loop runs it
    assert channel.polled == ["render-high"]


def test_a_queue_no_longer_consumed_is_not_polled(channel):
    channel._schedule_queue("render-elsewhere")
    assert channel.polled == [] and channel.hub.later == []


def test_a_webhook_worker_polls_its_one_queue_at_once_and_again_after_each_answer(channel, now):
    """A queue outside the priority order (the webhook queue) ranks below every render queue; alone on a
    worker it has nothing above it, so it is polled at once, every time."""
    channel._active_queues = ["webhooks"]
    channel._schedule_queue("webhooks")
    channel._polled("webhooks", messages_fetched=1)
    channel._schedule_queue("webhooks")
    assert channel.polled == ["webhooks", "webhooks"] and channel.hub.later == []


def test_kombu_outside_the_tested_range_is_refused_at_import():
    check_kombu("5.7.0")
    with pytest.raises(ImportError, match=r"tested with kombu 5\.7-5\.7, not 6\.0\.0"):
        check_kombu("6.0.0")
    with pytest.raises(ImportError, match="lacks _schedule_queue"):
        check_kombu("5.7.0", channel=type("Bare", (), {"_get_bulk_async": print, "_loop1": print}))


def test_every_channel_of_a_process_makes_its_sqs_clients_from_one_session(monkeypatch):
    """kombu makes a boto3 session per client (each loads botocore's data again, ~9 MiB); ours share one per
    set of credentials, and the clients keep kombu's endpoint and client config."""
    from jobs.worker import transport

    monkeypatch.setattr(transport, "_sessions", {})

    class Bare(transport.Channel):  # no connection: only the client making is under test
        is_secure, endpoint_url = False, "http://127.0.0.1:9"
        transport_options = {"client-config": {"max_pool_connections": 3}}

    channels = [Bare.__new__(Bare) for _ in range(3)]
    clients = [ch._new_boto_client("sqs", "us-east-1", "k", "s") for ch in channels]
    assert len(transport._sessions) == 1 and clients[0] is not clients[1]
    assert clients[0]._loader is clients[1]._loader is clients[2]._loader  # botocore's data, loaded once
    assert clients[0].meta.endpoint_url == "http://127.0.0.1:9"
    assert clients[0].meta.config.max_pool_connections == 3 and clients[0].meta.region_name == "us-east-1"
    other = channels[0]._new_boto_client("sqs", "us-east-1", "k2", "s2")
    assert len(transport._sessions) == 2 and other._request_signer._credentials.access_key == "k2"


def test_a_failed_receive_polls_its_queue_again_later_and_holds_no_lower_queue_back(channel):
    """kombu hands the channel `[]` for a receive that failed (a timeout, a 5xx, no connection): the queue is
    polled again after a pause that doubles while it keeps failing, and its failures do not stop the queues
    below it (which wait for a quiet long poll on every higher queue)."""
    assert channel._on_messages_ready("https://sqs.example/123/render-high", "render-high", []) == transport.POLL_FAILED
    channel._schedule_queue("render-high")
    waits = []
    for _ in range(7):
        channel._polled("render-high", messages_fetched=transport.POLL_FAILED)
        delay, retry, args = channel.hub.later[-1]
        waits.append(delay)
        assert (retry, args) == (channel._schedule_queue, ("render-high",))
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    assert channel.waited == []  # no immediate re-poll: kombu's `_loop1` never saw the failures

    channel.hub.later.clear()
    channel._schedule_queue("render-normal")  # high fails and has no poll out: normal goes ahead
    assert channel.polled == ["render-high", "render-normal"] and channel.hub.later == []

    channel._schedule_queue("render-high")
    channel._polled("render-high", messages_fetched=0)  # high answers again (empty): back to the usual rules
    assert channel.waited == ["render-high"] and channel._failing == {}
    channel._schedule_queue("render-low")
    assert "render-low" not in channel.polled  # it waits for high's next quiet long poll again
    assert channel.hub.later[-1][1:] == (channel._schedule_queue, ("render-low",))


def test_curls_timers_are_taken_in_milliseconds_one_at_a_time():
    """kombu's curl client passed curl's milliseconds to the hub as seconds, and never dropped a timer: with the
    request timeouts set, every request left one due hours later."""
    client = transport.CurlClient.__new__(transport.CurlClient)  # the timer logic alone: no curl handles
    client.hub = Hub()
    client._set_timeout(250)
    client._set_timeout(1000)
    (first, second), (soon, later) = client.hub.timers, client.hub.later
    assert (soon[0], later[0]) == (0.25, 1.0) and soon[1] == client._timeout_check
    assert first.cancelled and not second.cancelled  # the one pending timer is the newest
    client._set_timeout(-1)  # curl: no timer wanted
    assert second.cancelled and len(client.hub.later) == 2
