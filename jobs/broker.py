"""The SQS transport, serving the render queues in priority order: high, then normal, then low.

SQS has no priorities, and kombu's SQS channel polls every queue on its own, so a worker fed from three
queues takes whatever answers first. Here a queue is polled only once every higher-priority queue the
worker consumes has had a (long) poll out for `quiet_seconds` with nothing back: SQS answers a long poll
at once when it has a message, so a poll still out after that long means the queue was empty. A backlog
of low-priority chunks therefore never holds up high-priority work by more than the chunk in progress
(and, rarely, one low message already received by an idle long poll). It costs no extra requests: each
queue still has at most one poll out at a time, and a waiting poll is reused, not repeated.
Selected with Celery's `broker_transport` setting; the order comes from the `queue_order` option.
"""

from __future__ import annotations

import time

from kombu.transport import SQS
from vine import promise


class Channel(SQS.Channel):
    quiet_seconds = 0.1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._polls_out: dict[str, float] = {}  # queue -> when its outstanding poll was sent

    def _rank(self, queue: str) -> int:
        order = self.transport_options.get("queue_order") or []
        return order.index(queue) if queue in order else len(order)

    def _schedule_queue(self, queue: str) -> None:
        if queue not in self._active_queues:
            return
        if not self.qos.can_consume():
            self._loop1(queue)  # kombu's own wait for a free slot
            return
        now = time.monotonic()
        for other in self._active_queues:
            if self._rank(other) < self._rank(queue):
                sent = self._polls_out.get(other)
                if sent is None or now - sent < self.quiet_seconds:
                    # A higher queue may have work: look again once it has had time to answer.
                    self.hub.call_later(self.quiet_seconds / 4, self._schedule_queue, queue)
                    return
        self._polls_out[queue] = now
        self._get_bulk_async(queue, callback=promise(self._polled, (queue,)))

    def _polled(self, queue: str, messages_fetched=None) -> None:
        self._polls_out.pop(queue, None)
        self._loop1(queue, messages_fetched)


class Transport(SQS.Transport):
    Channel = Channel
