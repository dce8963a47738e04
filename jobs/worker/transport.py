"""The SQS transport, serving the render queues in priority order: high, then normal, then low.

SQS has no priorities, and kombu's SQS channel polls every queue on its own, so a worker fed from three
queues takes whatever answers first. Here a queue is polled only once every higher-priority queue the
worker consumes has had a (long) poll out for `quiet_seconds` with nothing back: SQS answers a long poll
at once when it has a message, so a poll still out after that long means the queue was empty. A backlog
of low-priority chunks therefore never holds up high-priority work by more than the chunk in progress
(and, rarely, one low message already received by an idle long poll). It costs no extra requests: each
queue still has at most one poll out at a time, and a waiting poll is reused, not repeated.
Selected with Celery's `broker_transport` setting; the order comes from the `queue_order` option.

A queue whose worker has no free prefetch slot is parked, and the ack (or reject) that frees one polls
the parked queues at once, highest first. kombu instead re-checked such a queue on every turn of its event
loop, and a re-check queued in the turn that freed the slot waited for the loop's next timer: a worker
process with a backlog sat up to a second idle between two tasks. An ack also frees its slot before its
DeleteMessage is answered, which goes out on the event loop beside the next receive (kombu's blocked the
loop for the round trip; it still serves while the worker shuts down). `make bench`, one worker process:
3.7 jobs/s before, 10.4-10.9 after (docs/developing/benchmark.md, "Idle between tasks").

The channels of one process also share one boto3 session (per set of credentials): kombu makes a session
for every SQS client, and each session loads botocore's endpoint and model data again (about 9 MiB), once
per channel: up to one per thread of an API process and its producer pool.

A receive that fails (no connection, a timeout, an SQS error answer) polls its queue again after
`POLL_RETRY_SECONDS`, doubled while it keeps failing (up to `POLL_RETRY_MAX_SECONDS`), and a failing queue
holds no lower one back: kombu 5.7 turns a 5xx or a timeout into an empty list that its own channel then
cannot read, and raises a 4xx into the event loop; either stopped the worker's loop or its queue's polling.
Every asynchronous request (the polls, the acks' deletes) ends within `ASYNC_REQUEST_SECONDS`: kombu's curl
client never applied a request's timeouts, so a poll whose connection hung was never answered. Its timers
are also taken in milliseconds, one at a time (kombu read curl's milliseconds as seconds). A delete that
failed is tried again with short timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

import boto3
import kombu
import pycurl
from botocore.config import Config
from kombu.asynchronous.http.curl import CurlClient
from kombu.transport import SQS, virtual
from vine import ensure_promise, promise, transform

from jobs.worker import shutdown

logger = logging.getLogger(__name__)

# The Channel below overrides kombu's private polling loop. These are the kombu versions it was written
# and tested against, and the internals it relies on; another version must be checked (tests/unit/
# test_transport.py) before this range is widened, or the priority order could silently stop holding.
KOMBU_TESTED = ((5, 7), (5, 7))  # oldest and newest (major, minor), inclusive
KOMBU_INTERNALS = (
    "_schedule_queue",
    "_get_bulk_async",
    "_loop1",
    "_new_boto_client",
    "asynsqs",
    "canonical_queue_name",
    "_on_messages_ready",
    "_new_release_client",
    "_get_async",
    "_get_from_sqs",
    "_new_queue",
)
CURL_INTERNALS = ("_setup_request", "_set_timeout", "_timeout_check")  # kombu's curl client, patched below


def check_kombu(version: str = kombu.__version__, channel: type = SQS.Channel) -> None:
    """Refuse to load on a kombu outside the tested range or without the internals overridden here."""
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    low, high = KOMBU_TESTED
    if not low <= major_minor <= high:
        raise ImportError(
            f"jobs.worker.transport was tested with kombu {low[0]}.{low[1]}-{high[0]}.{high[1]}, not {version}: "
            "check the priority polling (tests/unit/test_transport.py) and widen KOMBU_TESTED"
        )
    missing = [name for name in KOMBU_INTERNALS if not callable(getattr(channel, name, None))]
    missing += [f"CurlClient.{name}" for name in CURL_INTERNALS if not callable(getattr(CurlClient, name, None))]
    if missing:
        raise ImportError(f"kombu {version} lacks {', '.join(missing)}: the priority transport needs them")


check_kombu()

ASYNC_CONNECT_SECONDS = 10.0
ASYNC_REQUEST_SECONDS = 40.0  # SQS's longest long poll (20 s) and 20 s more
POLL_RETRY_SECONDS = 1.0  # a queue whose receive failed is polled again after this long, doubled while it fails
POLL_RETRY_MAX_SECONDS = 30.0
POLL_FAILED = -1  # what `_on_messages_ready` hands the poll chain for a receive that failed


def _setup_request_with_timeouts(self, curl, request, *args, **kwargs) -> None:
    """kombu's curl set-up, and the timeouts it leaves out (tornado's curl client, which it follows, sets
    them): without them a request whose connection hangs is never answered."""
    self._setup_request_without_timeouts(curl, request, *args, **kwargs)
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(ASYNC_CONNECT_SECONDS * 1000))
    curl.setopt(pycurl.TIMEOUT_MS, int(ASYNC_REQUEST_SECONDS * 1000))


def _set_timeout_in_seconds(self, msecs: int) -> None:
    """curl asks to be called in `msecs` milliseconds (-1: not at all). kombu passed the milliseconds to the hub
    as seconds: with the timeouts above, every request left a timer due hours later (a leak that grows with the
    traffic), and curl's timeouts waited for kombu's once-a-second check. One pending timer, replaced as curl
    asks, as tornado's client keeps."""
    pending = getattr(self, "_curl_timer", None)
    if pending is not None:
        pending.cancel()
        self._curl_timer = None
    if msecs >= 0:
        self._curl_timer = self.hub.call_later(msecs / 1000, self._timeout_check)


if not hasattr(CurlClient, "_setup_request_without_timeouts"):  # once, however often this module is loaded
    CurlClient._setup_request_without_timeouts = CurlClient._setup_request
    CurlClient._setup_request = _setup_request_with_timeouts
    CurlClient._set_timeout = _set_timeout_in_seconds


_sessions: dict[tuple, boto3.Session] = {}
_sessions_lock = threading.Lock()  # a boto3 session is not safe to make clients from in two threads at once


def shared_session(region, access_key_id, secret_access_key, session_token) -> boto3.Session:
    """This process's boto3 session for these credentials (None: the default chain), made once."""
    key = (region, access_key_id, secret_access_key, session_token)
    if key not in _sessions:
        _sessions[key] = boto3.Session(
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
        )
    return _sessions[key]


UNPARK_SECONDS = 1.0


class Channel(SQS.Channel):
    quiet_seconds = 0.1
    # kombu's client for calls on the event loop that must not hold it long (releasing messages; here also a
    # delete tried again): 5 s to connect and to read, as kombu's, and three tries where kombu's makes one.
    release_client_config = Config(connect_timeout=5, read_timeout=5, retries={"total_max_attempts": 3})

    def _new_boto_client(
        self, service, region, access_key_id, secret_access_key, session_token=None, config=None
    ):  # kombu's, with a shared session instead of a new one per client
        is_secure = self.is_secure if self.is_secure is not None else True
        client_kwargs = {"use_ssl": is_secure}
        if self.endpoint_url is not None:
            client_kwargs["endpoint_url"] = self.endpoint_url
        client_config = Config(**(self.transport_options.get("client-config") or {}))
        if config is not None:
            client_config = client_config.merge(config)
        with _sessions_lock:
            session = shared_session(region, access_key_id, secret_access_key, session_token)
            return session.client(service, config=client_config, **client_kwargs)

    def __init__(self, *args, **kwargs):
        self._start_polling_state()
        super().__init__(*args, **kwargs)

    def _start_polling_state(self) -> None:
        self._polls_out: dict[str, float] = {}  # queue -> when its outstanding poll was sent
        self._parked: set[str] = set()  # queues waiting for a free prefetch slot, polled again when one frees
        self._loop_thread: int | None = None  # the event loop's thread, where queues are scheduled
        self._unpark_timer = None  # the hub's repeating `_unpark`, once a queue has been parked
        self._failing: dict[str, int] = {}  # queue -> its receives that failed in a row, until one answers

    def _rank(self, queue: str) -> int:
        order = self.transport_options.get("queue_order") or []
        return order.index(queue) if queue in order else len(order)

    def _schedule_queue(self, queue: str) -> None:
        if queue not in self._active_queues:
            return
        self._loop_thread = threading.get_ident()
        if not self.qos.can_consume():
            # Parked until an ack, a reject or a larger prefetch frees a slot (`_unpark`). kombu's own wait
            # re-queued the queue with `call_soon` on every turn of the event loop, which from the loop's own
            # thread does not wake the poller: when the same turn freed the slot after the re-queue (ready
            # callbacks run in a set's order), the next poll waited for the loop's next timer, up to 1 s.
            self._park(queue)
            return
        now = time.monotonic()
        for other in self._active_queues:
            if self._rank(other) < self._rank(queue) and other not in self._failing:  # a failing queue holds none back
                sent = self._polls_out.get(other)
                if sent is None or now - sent < self.quiet_seconds:
                    # A higher queue may have work: look again once it has had time to answer.
                    self.hub.call_later(self.quiet_seconds / 4, self._schedule_queue, queue)
                    return
        self._polls_out[queue] = now
        self._get_bulk_async(queue, callback=promise(self._polled, (queue,)))

    def _polled(self, queue: str, messages_fetched=None) -> None:
        self._polls_out.pop(queue, None)
        if messages_fetched == POLL_FAILED:
            failures = self._failing[queue] = self._failing.get(queue, 0) + 1
            wait = min(POLL_RETRY_MAX_SECONDS, POLL_RETRY_SECONDS * 2 ** (failures - 1))
            logger.warning(
                "could not receive from %s (%d time(s) in a row): polling it again in %.0f s", queue, failures, wait
            )
            self.hub.call_later(wait, self._schedule_queue, queue)
            return
        self._failing.pop(queue, None)
        self._loop1(queue, messages_fetched)

    def _get_async(self, queue, count=1, callback=None):
        """kombu's receive, with an error answer (a 4xx: throttled, credentials, a queue gone) handed to the poll
        chain as a failed receive instead of raised into the event loop, where it stopped the worker's loop
        or its queue's polling. The queue is polled again after a pause (`_polled`); the error is logged."""
        q_url = self._new_queue(queue)
        qname = self.canonical_queue_name(queue)
        ready = transform(self._on_messages_ready, callback, q_url, queue)
        ready.on_error = partial(self._receive_raised, queue, ensure_promise(callback))
        return self._get_from_sqs(
            queue_name=qname, queue_url=q_url, count=count, connection=self.asynsqs(queue=qname), callback=ready
        )

    def _receive_raised(self, queue: str, callback, *arguments) -> None:
        """The receive's on_error (vine passes the promise's own arguments first, then the error): an error
        answer, or an error while its messages were handed on, after which the poll chain goes on the same way."""
        logger.error("receive from %s failed: %r", queue, arguments[-1])
        callback(POLL_FAILED)

    def _on_messages_ready(self, queue, qname, messages):
        if not isinstance(messages, dict):  # kombu's `[]` for a receive that failed: a timeout, a 5xx, no connection
            return POLL_FAILED
        return super()._on_messages_ready(queue, qname, messages)

    def _on_the_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _park(self, queue: str) -> None:
        self._parked.add(queue)
        if self._unpark_timer is None:  # the safety net: a slot freed by a path not seen here waits 1 s at most
            self._unpark_timer = self.hub.call_repeatedly(UNPARK_SECONDS, self._unpark)

    def _unpark(self) -> None:
        """Poll the parked queues again, highest first, if a slot is free (each queue keeps one poll chain:
        a parked queue has no poll out and nothing scheduled, so this cannot double one)."""
        if not self._parked:
            return
        if not self._on_the_loop():  # let the loop do it (a call from another thread wakes it)
            self.hub.call_soon(self._unpark)
            return
        if not self.qos.can_consume():
            return
        queues = sorted(self._parked, key=self._rank)
        self._parked.clear()
        for at, queue in enumerate(queues):
            try:
                self._schedule_queue(queue)
            except BaseException:  # parked again (the timer tries again), and the error goes on to be logged
                self._polls_out.pop(queue, None)
                self._parked.update(queues[at:])
                raise

    def basic_cancel(self, consumer_tag):
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        self._parked.discard(queue)  # consumed again later: a new chain starts; this one must not
        return result

    def close(self):
        if self._unpark_timer is not None:
            self._unpark_timer.cancel()
            self._unpark_timer = None
        super().close()

    def basic_ack(self, delivery_tag, multiple=False):
        try:
            delete = self._deletable_without_blocking(delivery_tag)
            if delete is None:
                super().basic_ack(delivery_tag, multiple)  # kombu's: a blocking DeleteMessage, then the slot
                return
            queue, url, handle = delete
            virtual.Channel.basic_ack(self, delivery_tag)  # the slot, before the delete is answered
            failed = partial(self._delete_again, queue, url, handle)
            self.asynsqs(queue=queue).delete_message(url, handle, callback=promise(on_error=failed))
        finally:  # the slot is free even when the delete fails: the next receive goes out (beside the delete)
            self._unpark()

    def _delete_again(self, queue: str, url: str, handle: str, exc: BaseException) -> None:
        """The asynchronous delete failed (one try): once more with a blocking client with short timeouts and a
        few tries (it runs on the event loop, which botocore's 60 s defaults could hold for minutes). A message
        still not deleted comes back after its visibility timeout; its task runs again and changes nothing
        (every task is safe to run twice), and the redrive policy ends one that keeps failing."""
        try:
            self._new_release_client(self.sqs(queue=queue)).delete_message(QueueUrl=url, ReceiptHandle=handle)
        except Exception as again:
            logger.error(
                "could not delete an acked message from %s (%s, then %s); it will be delivered again",
                url,
                exc,
                again,
            )

    def _deletable_without_blocking(self, delivery_tag) -> tuple[str, str, str] | None:
        """(queue, queue URL, receipt handle) when the ack's DeleteMessage can go out on the event loop beside
        the next receive; None when kombu's blocking one must serve: not on the loop's thread, or no queue
        consumed any more, or the worker shutting down (its loop may close before an answer), or no SQS
        message behind the tag."""
        if self.hub is None or not self._active_queues or not self._on_the_loop():
            return None
        if shutdown.requested():
            return None
        try:
            info = self.qos.get(delivery_tag).delivery_info
            return (
                self.canonical_queue_name(info["routing_key"]),
                info["sqs_queue"],
                info["sqs_message"]["ReceiptHandle"],
            )
        except KeyError:
            return None

    def basic_reject(self, delivery_tag, requeue=False):
        try:
            super().basic_reject(delivery_tag, requeue=requeue)
        finally:
            self._unpark()

    def basic_qos(self, *args, **kwargs):
        super().basic_qos(*args, **kwargs)
        self._unpark()  # Celery raises the prefetch count for a task with an ETA


class Transport(SQS.Transport):
    Channel = Channel


class VisibilityKeeper:
    """Keeps the SQS messages this worker holds invisible while it works on them.

    A consumer bootstep (jobs/worker/bootsteps.py) calls `tick` every `tick_seconds` from the worker's
    timer (a local check, no request): a message gets a fresh visibility timeout (ChangeMessageVisibility)
    only when `margin` seconds of its current one are left. So a message costs one request per
    `visibility_timeout - margin` seconds held (none for a chunk shorter than that), a long render is
    never handed to a second worker, and a dead worker's message reappears within one visibility timeout.
    """

    def __init__(self, *, visibility_timeout: int):
        self.visibility_timeout = visibility_timeout
        self.margin = min(3.0, visibility_timeout / 2)  # covers a late tick and a slow request
        self.tick_seconds = min(1.0, visibility_timeout / 4)
        self._extended_at: dict[str, float] = {}  # receipt handle -> when it was received or last extended

    def tick(self, channel) -> int:
        qos = getattr(channel, "qos", None)
        delivered = getattr(qos, "_delivered", None) or {}
        acked = set(getattr(qos, "_dirty", None) or ())  # acked, not yet flushed from _delivered
        now = time.monotonic()
        live, extended = set(), 0
        for tag, message in list(delivered.items()):
            if tag in acked:
                continue
            info = getattr(message, "delivery_info", {}) or {}
            sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
            if not sqs_message or not queue_url:
                continue
            handle = sqs_message["ReceiptHandle"]
            live.add(handle)
            since = self._extended_at.setdefault(handle, now)
            if now - since < self.visibility_timeout - self.margin:
                continue
            try:
                channel.sqs().change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=self.visibility_timeout
                )
                self._extended_at[handle] = now
                extended += 1
            except Exception:  # the message may be gone (acked meanwhile); the next tick sees
                logger.warning("could not extend the visibility of a message on %s", queue_url, exc_info=True)
        for handle in set(self._extended_at) - live:
            del self._extended_at[handle]
        return extended
