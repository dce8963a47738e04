"""Webhooks at the ports: the delivery record, its store, the per-owner slots of deliveries in flight, the notifier
services call when a job ends, and the HTTP sender."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from jobs.domain import Job, JobStatus, Priority

# The message contract: (job id, job attempt, the final status it ended in).
DELIVER_WEBHOOK = "jobs.deliver_webhook"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_LISTED_TRIES = 10  # the delivery record keeps the last ten tries (the item stays small)


@dataclass(frozen=True)
class DeliveryTry:
    """One POST: when, which try (1, 2, ...), and the receiver's status code or why there was none."""

    at: datetime
    attempt: int
    status_code: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        out: dict = {"at": self.at, "attempt": self.attempt}
        if self.status_code is not None:
            out["status_code"] = self.status_code
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class WebhookDelivery:
    """The delivery of one end of a job: `pk=JOB#<id>, sk=HOOK#<attempt:05d>#<status>` (one per (job, attempt,
    status), so a duplicate message or notification finds it and changes nothing)."""

    job_id: str
    job_attempt: int
    event: JobStatus  # COMPLETED, FAILED or CANCELLED
    owner: str
    url: str
    priority: Priority
    state: str = PENDING
    tries: int = 0
    deliveries: tuple[DeliveryTry, ...] = ()
    lease_token: str | None = None
    lease_until: datetime | None = None
    created_at: datetime | None = None
    marker: tuple[str, str] | None = field(default=None, compare=False)  # gsi2 entry as read by the sweeper


@dataclass(frozen=True)
class SendResult:
    """What a POST came to: a status code, or an error (`permanent`: do not try again, e.g. a refused address)."""

    status_code: int | None = None
    error: str | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookRepository(Protocol):
    """Delivery records and per-owner webhook secrets (jobs/repository/webhooks.py)."""

    def open(self, delivery: WebhookDelivery, *, due: datetime, expires_at: datetime) -> bool: ...
    def get(self, job_id: str, job_attempt: int, event: JobStatus) -> WebhookDelivery | None: ...
    def latest(self, job_id: str) -> WebhookDelivery | None: ...
    def begin(self, delivery: WebhookDelivery, *, token: str, now: datetime, until: datetime) -> WebhookDelivery: ...
    def record(
        self, delivery: WebhookDelivery, *, token: str, entry: DeliveryTry, state: str, due: datetime | None
    ) -> WebhookDelivery: ...
    def overdue(self, *, now: datetime, limit: int) -> list[WebhookDelivery]: ...
    def postpone(self, delivery: WebhookDelivery, *, until: datetime) -> bool: ...
    def secret(self, owner: str) -> str | None: ...
    def put_secret(self, owner: str, secret: str, *, now: datetime) -> None: ...


class DeliverySlots(Protocol):
    """Each owner's deliveries in flight, at most `limit` at once across every webhook worker
    (jobs/repository/webhook_slots.py). A slot is a lease: one whose holder died frees itself at `until`."""

    def take(self, owner: str, *, limit: int, token: str, now: datetime, until: datetime) -> int | None:
        """The index of a slot now held under `token` until `until`, or None when all `limit` are held."""
        ...

    def release(self, owner: str, slot: int, *, token: str) -> None:
        """Free the slot if `token` still holds it (a lapsed one taken by someone else stays theirs)."""
        ...


class JobNotifier(Protocol):
    """Told right after a conditional write ended a job (COMPLETED, FAILED, CANCELLED); never fails the caller."""

    def job_ended(self, job: Job, status: JobStatus) -> None: ...


class NoNotifier:
    """Notifications that go nowhere (unit tests of other services, commands that end no job)."""

    def job_ended(self, job: Job, status: JobStatus) -> None:
        pass


class WebhookSender(Protocol):
    """POSTs a body to a callback URL under the address policy (jobs/adapters/webhook_sender.py)."""

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> SendResult: ...
