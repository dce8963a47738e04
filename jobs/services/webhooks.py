"""Webhooks: when a job ends, its owner's callback URL is POSTed the job, signed, off the request path.

- `WebhookNotifier.job_ended` runs right after the conditional write that ended a job: it opens the
  delivery record of (job, attempt, status) with a conditional write (a second notification finds it and
  stops) and sends a `deliver_webhook` message. The record is in gsi2 (`HOOK#PENDING`) until it is
  delivered or given up, so a message that was lost is sent again by the sweeper (`webhooks_sweep`).
- `webhook_deliver` takes one of the owner's slots of deliveries in flight (at most
  `max_in_flight_per_owner` at once: one owner's slow receiver cannot hold every webhook worker; a delivery
  over the limit comes back later, not counted as a try), takes the record's lease (a conditional write),
  POSTs, and records the try with its outcome (conditional on the lease): a duplicate message finds it
  delivered, or leased, and does not POST. Slot and lease both lapse on their own if the worker dies.
- Retries back off exponentially, up to `max_tries`; a refused address or URL is not tried again.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from jobs.domain import FINAL_STATES, Job, JobStatus
from jobs.errors import JobStateConflict
from jobs.ports import (
    Clock,
    DeliverySlots,
    DeliveryTry,
    SendResult,
    TaskQueue,
    WebhookDelivery,
    WebhookRepository,
    WebhookSender,
)
from jobs.ports.webhooks import DELIVERED, FAILED, PENDING
from jobs.services.sweep_counts import Swept

log = logging.getLogger(__name__)
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
USER_AGENT = "render-farm-webhooks/1"


@dataclass(frozen=True)
class WebhookPolicy:
    """Retry, lease and per-owner timings and limits (settings RENDER_WEBHOOK_*)."""

    max_tries: int = 6
    backoff_seconds: int = 15  # doubles after every failed try; at most 900 (SQS's longest delay)
    lease_seconds: int = 35  # outlasts a try's hard time limit: a live try never outlives its lease or slot
    grace_seconds: int = 300  # a pending delivery with no news this long after it was due is sent again
    max_in_flight_per_owner: int = 2  # the owner's deliveries POSTing at once, every worker together (0: no limit)
    busy_seconds: int = 5  # a delivery over that limit comes back after this long (not a try)

    def backoff(self, tries: int) -> int:
        return min(self.backoff_seconds * 2 ** max(tries - 1, 0), 900)


class WebhookNotifier:
    """The JobNotifier of every process: opens the delivery and sends its message (never raises)."""

    def __init__(
        self, *, hooks: WebhookRepository, queue: TaskQueue, clock: Clock, policy: WebhookPolicy, retention: timedelta
    ):
        self._hooks, self._queue, self._clock, self._policy, self._retention = hooks, queue, clock, policy, retention

    def job_ended(self, job: Job, status: JobStatus) -> None:
        if not job.callback_url or status not in FINAL_STATES:
            return
        delivery = WebhookDelivery(
            job_id=job.id,
            job_attempt=job.attempt,
            event=status,
            owner=job.owner,
            url=job.callback_url,
            priority=job.priority,
            created_at=self._clock(),
        )
        now = self._clock()
        try:
            if not self._hooks.open(
                delivery, due=now + timedelta(seconds=self._policy.grace_seconds), expires_at=now + self._retention
            ):
                return  # notified already (a duplicate message, a second path to the same end)
            self._queue.enqueue_webhook(job_id=job.id, attempt=job.attempt, event=str(status))
        except Exception:  # the job's end stands; an open delivery is found by the sweeper once due
            log.exception("job %s: webhook for %s not sent now; the sweeper will send it", job.id, status)


def webhook_secret_rotate(*, hooks: WebhookRepository, owner: str, now: datetime) -> str:
    """A new signing secret for the owner (the old one stops signing at once); returned once, to show once."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    hooks.put_secret(owner, secret, now=now)
    log.info("webhook secret rotated for owner %s", owner)
    return secret


def signed_headers(*, secret: str, body: bytes, timestamp: int, delivery: WebhookDelivery) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        DELIVERY_HEADER: f"{delivery.job_id}:{delivery.job_attempt}:{delivery.event}",
    }


def webhook_deliver(
    *,
    hooks: WebhookRepository,
    slots: DeliverySlots,
    sender: WebhookSender,
    body_of: Callable[[str], bytes],
    job_id: str,
    attempt: int,
    event: JobStatus,
    clock: Clock,
    policy: WebhookPolicy,
) -> int | None:
    """One try of a delivery. Returns the seconds after which its message should come back (a failed try's
    backoff; or `busy_seconds` when the owner has its limit of deliveries in flight, which is not a try), or
    None when there is nothing more to do (delivered, given up, or not ours: done, or another worker has it)."""
    delivery = hooks.get(job_id, attempt, event)
    if delivery is None or delivery.state != PENDING:
        return None
    now = clock()
    if delivery.lease_until is not None and delivery.lease_until >= now:
        log.info("job %s: webhook %s not ours to send now (another worker has it)", job_id, event)
        return None  # before taking a slot: a duplicate message costs the owner no slot
    token = secrets.token_hex(16)
    with _owner_slot(slots, policy, owner=delivery.owner, token=token, now=now) as held:
        if not held:
            log.info(
                "webhook job=%s event=%s: owner %s has %d deliveries in flight; again in %d s",
                job_id,
                event,
                delivery.owner,
                policy.max_in_flight_per_owner,
                policy.busy_seconds,
            )
            return policy.busy_seconds
        return _try(hooks, sender, body_of, delivery, token=token, clock=clock, policy=policy)


@contextmanager
def _owner_slot(
    slots: DeliverySlots, policy: WebhookPolicy, *, owner: str, token: str, now: datetime
) -> Iterator[bool]:
    """Holds one of the owner's slots for the try (True), or finds them all held (False). Released however the
    try ends (a soft time limit included); a worker that dies leaves it to lapse with the delivery's lease."""
    if not policy.max_in_flight_per_owner:
        yield True
        return
    until = now + timedelta(seconds=policy.lease_seconds)
    slot = slots.take(owner, limit=policy.max_in_flight_per_owner, token=token, now=now, until=until)
    if slot is None:
        yield False
        return
    try:
        yield True
    finally:
        try:
            slots.release(owner, slot, token=token)
        except Exception:  # it lapses at `until`; the delivery's outcome is recorded already
            log.warning("owner %s: webhook slot %d not released; it frees itself at its lease", owner, slot)


def _try(
    hooks: WebhookRepository,
    sender: WebhookSender,
    body_of: Callable[[str], bytes],
    delivery: WebhookDelivery,
    *,
    token: str,
    clock: Clock,
    policy: WebhookPolicy,
) -> int | None:
    """Lease the delivery, POST once, record the outcome; the wait before the next try, or None."""
    job_id, event, now = delivery.job_id, delivery.event, clock()
    try:
        delivery = hooks.begin(delivery, token=token, now=now, until=now + timedelta(seconds=policy.lease_seconds))
    except JobStateConflict:
        log.info("job %s: webhook %s not ours to send now (delivered, or another worker has it)", job_id, event)
        return None
    result = _post(hooks, sender, body_of, delivery, now)
    tries = delivery.tries + 1
    entry = DeliveryTry(at=clock(), attempt=tries, status_code=result.status_code, error=result.error)
    if result.ok:
        state, wait = DELIVERED, None
    elif result.permanent or tries >= policy.max_tries:
        state, wait = FAILED, None
    else:
        state, wait = PENDING, policy.backoff(tries)
    due = clock() + timedelta(seconds=wait + policy.grace_seconds) if wait is not None else None
    try:
        hooks.record(delivery, token=token, entry=entry, state=state, due=due)
    except JobStateConflict:
        log.warning("job %s: webhook lease lost before its try was recorded", job_id)
        return None
    log.info("webhook job=%s event=%s try=%d state=%s code=%s", job_id, event, tries, state, result.status_code)
    return wait


def _post(
    hooks: WebhookRepository,
    sender: WebhookSender,
    body_of: Callable[[str], bytes],
    delivery: WebhookDelivery,
    now: datetime,
) -> SendResult:
    secret = hooks.secret(delivery.owner)
    if secret is None:
        return SendResult(error="The owner has no webhook secret; nothing could sign the delivery.", permanent=True)
    body = body_of(delivery.job_id)
    headers = signed_headers(secret=secret, body=body, timestamp=int(now.timestamp()), delivery=delivery)
    try:
        return sender.post(delivery.url, body=body, headers=headers)
    except Exception as exc:  # a sender bug is a failed try, not a lost delivery
        log.exception("job %s: webhook sender failed", delivery.job_id)
        return SendResult(error=f"The sender failed ({type(exc).__name__}).")


def webhooks_sweep(
    *, hooks: WebhookRepository, queue: TaskQueue, now: datetime, grace: timedelta, limit: int = 500
) -> Counter:
    """Pending deliveries with no news since they were due (a lost message, a worker that died in the POST)
    get their message again; postponed first, so two sweepers send it once."""
    done: Counter = Counter()
    for delivery in hooks.overdue(now=now, limit=limit):
        if not hooks.postpone(delivery, until=now + grace):
            continue
        queue.enqueue_webhook(job_id=delivery.job_id, attempt=delivery.job_attempt, event=str(delivery.event))
        done[Swept.WEBHOOK_REQUEUED] += 1
    return done


def webhook_resend(*, hooks: WebhookRepository, queue: TaskQueue, job_id: str, attempt: int, event: JobStatus) -> bool:
    """Send a delivery's message again if it is still pending (`dlq replay` of a dead delivery message); False
    when it is delivered, failed or gone, so there is nothing to send."""
    delivery = hooks.get(job_id, attempt, event)
    if delivery is None or delivery.state != PENDING:
        return False
    queue.enqueue_webhook(job_id=job_id, attempt=attempt, event=str(event))
    return True
