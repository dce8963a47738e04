"""Webhook deliveries apart from renders: at most N of one owner's deliveries in flight (slots with a lease, on
fakes), and the `deliver_webhook` task scheduling its next try on the webhook queue with the documented delay.

Concurrent tries are modelled by a sender that, in the middle of one POST, starts the next delivery: the
inner try runs while the outer one holds its slot, as a second worker's would.
"""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.conf import settings

from jobs import tasks, wiring
from jobs.domain import JobStatus
from jobs.ports import SendResult
from jobs.services import job_cancel, job_create
from jobs.services.api_keys import SCOPE_HIGH
from jobs.services.webhooks import WebhookNotifier, WebhookPolicy, webhook_deliver
from tests.fakes import FakeDeliverySlots, FakeWebhooks, control, scene_files, spending
from tests.unit.conftest import RETENTION, spec

POLICY = WebhookPolicy(
    max_tries=3, backoff_seconds=10, lease_seconds=30, grace_seconds=60, max_in_flight_per_owner=2, busy_seconds=4
)


@pytest.fixture
def hooks():
    fake = FakeWebhooks()
    for owner in ("alice", "bob"):
        fake.put_secret(owner, f"whsec_{owner}", now=None)
    return fake


@pytest.fixture
def slots():
    return FakeDeliverySlots()


def ended(repo, queue, clock, hooks, owner="alice"):
    """A job of `owner` with a callback, cancelled: its delivery is pending."""
    job, _ = job_create(
        jobs=control(repo, queue),
        owner=owner,
        spec=spec(callback_url=f"https://example.com/{owner}"),
        idempotency_key=None,
        now=clock(),
        hooks=hooks,
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        spending=spending(repo),
    )
    notifier = WebhookNotifier(hooks=hooks, queue=queue, clock=clock, policy=POLICY, retention=RETENTION)
    job_cancel(jobs=control(repo, notifier=notifier), job=job, now=clock())
    return job


class NestingSender:
    """POSTs in order; during POST n it runs `during[n]` (another delivery's try, as a second worker would)."""

    def __init__(self, slots, clock, during=None):
        self.slots, self.clock, self.during = slots, clock, dict(during or {})
        self.posts: list[tuple[str, int]] = []  # (url, the owner's deliveries in flight during this POST)
        self.inner: list = []

    def post(self, url, *, body, headers):
        owner = url.rsplit("/", 1)[1]
        self.posts.append((url, self.slots.in_flight(owner, self.clock())))
        step = self.during.pop(len(self.posts), None)
        if step is not None:
            self.inner.append(step())
        return SendResult(status_code=204)


def deliver(hooks, slots, sender, clock, job, policy=POLICY):
    return webhook_deliver(
        hooks=hooks,
        slots=slots,
        sender=sender,
        body_of=lambda _: b"{}",
        job_id=job.id,
        attempt=job.attempt,
        event=JobStatus.CANCELLED,
        clock=clock,
        policy=policy,
    )


def test_an_owner_has_at_most_two_deliveries_in_flight_and_the_third_waits_without_a_try(
    repo, queue, clock, hooks, slots
):
    first, second, third = (ended(repo, queue, clock, hooks) for _ in range(3))
    other = ended(repo, queue, clock, hooks, owner="bob")
    sender = NestingSender(slots, clock)
    sender.during = {
        1: lambda: deliver(hooks, slots, sender, clock, second),  # while the first POSTs
        2: lambda: (deliver(hooks, slots, sender, clock, third), deliver(hooks, slots, sender, clock, other)),
    }
    assert deliver(hooks, slots, sender, clock, first) is None
    # innermost first: (the third: back in 4 s, bob's: delivered), then the second: delivered
    assert sender.inner == [(POLICY.busy_seconds, None), None]
    assert [(url.rsplit("/", 1)[1], busy) for url, busy in sender.posts] == [("alice", 1), ("alice", 2), ("bob", 1)]
    waiting = hooks.get(third.id, 1, JobStatus.CANCELLED)
    assert waiting.state == "pending" and waiting.tries == 0 and waiting.deliveries == ()  # not a failed try
    assert waiting.lease_token is None  # it never leased the delivery
    assert slots.in_flight("alice", clock()) == 0  # every slot released when its try ended

    assert deliver(hooks, slots, sender, clock, third) is None  # back after its wait: a slot is free
    assert [hooks.get(j.id, 1, JobStatus.CANCELLED).state for j in (first, second, third, other)] == ["delivered"] * 4
    assert hooks.get(third.id, 1, JobStatus.CANCELLED).tries == 1


def test_a_slot_held_by_a_dead_worker_frees_itself_when_its_lease_lapses(repo, queue, clock, hooks, slots):
    job = ended(repo, queue, clock, hooks)
    until = clock() + timedelta(seconds=POLICY.lease_seconds)
    for token in ("killed-1", "killed-2"):  # two workers took a slot each, then were SIGKILLed
        assert slots.take("alice", limit=2, token=token, now=clock(), until=until) is not None
    sender = NestingSender(slots, clock)
    assert deliver(hooks, slots, sender, clock, job) == POLICY.busy_seconds
    clock.advance(POLICY.lease_seconds - 1)
    assert deliver(hooks, slots, sender, clock, job) == POLICY.busy_seconds  # still within their lease
    clock.advance(2)
    assert deliver(hooks, slots, sender, clock, job) is None
    assert hooks.get(job.id, 1, JobStatus.CANCELLED).state == "delivered" and len(sender.posts) == 1


def test_a_duplicate_message_of_a_leased_delivery_takes_no_slot(repo, queue, clock, hooks, slots):
    job = ended(repo, queue, clock, hooks)
    pending = hooks.get(job.id, 1, JobStatus.CANCELLED)
    hooks.begin(pending, token="first", now=clock(), until=clock() + timedelta(seconds=POLICY.lease_seconds))
    slots.take("alice", limit=2, token="first", now=clock(), until=clock() + timedelta(seconds=POLICY.lease_seconds))
    sender = NestingSender(slots, clock)
    assert deliver(hooks, slots, sender, clock, job) is None  # SQS delivered its message twice: no second POST
    assert sender.posts == [] and slots.in_flight("alice", clock()) == 1


def test_a_try_that_raises_still_frees_its_slot(repo, queue, clock, hooks, slots):
    job = ended(repo, queue, clock, hooks)

    class Broken(FakeWebhooks):
        def record(self, *args, **kwargs):
            raise TimeoutError("DynamoDB hung; the soft time limit struck here")

    broken = Broken()
    broken.__dict__.update(hooks.__dict__)
    with pytest.raises(TimeoutError):
        deliver(broken, slots, NestingSender(slots, clock), clock, job)
    assert slots.in_flight("alice", clock()) == 0


def test_no_limit_takes_no_slot(repo, queue, clock, hooks, slots):
    job = ended(repo, queue, clock, hooks)
    unlimited = WebhookPolicy(max_tries=3, backoff_seconds=10, lease_seconds=30, max_in_flight_per_owner=0)
    for token in ("a", "b"):
        slots.take("alice", limit=2, token=token, now=clock(), until=clock() + timedelta(seconds=30))
    assert deliver(hooks, slots, NestingSender(slots, clock), clock, job, policy=unlimited) is None
    assert hooks.get(job.id, 1, JobStatus.CANCELLED).state == "delivered"


# --- the task: where and when the next try is sent --------------------------------------------------


class Answers:
    def __init__(self, *codes):
        self.codes = list(codes)

    def post(self, url, *, body, headers):
        return SendResult(status_code=self.codes.pop(0))


@pytest.fixture
def sent(monkeypatch, repo, queue, clock, hooks, slots):
    """The task on the fakes; what it sends (task name, options) is recorded instead of reaching SQS."""
    monkeypatch.setattr(wiring, "webhook_repository", lambda: hooks)
    monkeypatch.setattr(wiring, "delivery_slots", lambda: slots)
    monkeypatch.setattr(wiring, "job_repository", lambda: repo)
    monkeypatch.setattr(wiring, "webhook_policy", lambda: POLICY)
    monkeypatch.setattr(tasks, "utcnow", clock)
    messages: list[tuple[str, dict]] = []

    def send_task(name, args=None, kwargs=None, **options):
        messages.append((name, options))

    monkeypatch.setattr(tasks.deliver_webhook.app, "send_task", send_task)
    return messages


def run_task(job, *, routing_key: str) -> Retry | str:
    """One delivery of the message, as a worker runs it (a request that came from `routing_key`)."""
    task = tasks.deliver_webhook
    task.push_request(id="m1", called_directly=False, delivery_info={"routing_key": routing_key}, retries=0)
    try:
        return task.run(job.id, job.attempt, "CANCELLED")
    except Retry as retry:
        return retry
    finally:
        task.pop_request()


def test_a_failed_try_is_sent_again_to_the_webhook_queue_after_its_backoff_doubling(
    sent, monkeypatch, repo, queue, clock, hooks
):
    job = ended(repo, queue, clock, hooks)
    answers = Answers(500, 503, 200)
    monkeypatch.setattr(wiring, "webhook_sender", lambda: answers)
    assert isinstance(run_task(job, routing_key=settings.RENDER_WEBHOOK_QUEUE_NAME), Retry)
    assert isinstance(run_task(job, routing_key=settings.RENDER_WEBHOOK_QUEUE_NAME), Retry)
    assert run_task(job, routing_key=settings.RENDER_WEBHOOK_QUEUE_NAME) == "done"
    assert [name for name, _ in sent] == ["jobs.deliver_webhook"] * 2
    assert [opts["queue"] for _, opts in sent] == [settings.RENDER_WEBHOOK_QUEUE_NAME] * 2
    # SQS holds each one back (DelaySeconds): the backoff, doubling; no ETA for a worker to sit on.
    assert [opts["delay_seconds"] for _, opts in sent] == [10, 20]
    assert all(not opts.get("countdown") and not opts.get("eta") for _, opts in sent)
    assert [t.status_code for t in hooks.get(job.id, 1, JobStatus.CANCELLED).deliveries] == [500, 503, 200]


def test_a_delivery_found_on_a_render_queue_is_passed_on_to_the_webhook_queue_untouched(
    sent, monkeypatch, repo, queue, clock, hooks, slots
):
    """A message sent before deliveries had their own queue reaches a render worker once: it POSTs nothing."""
    job = ended(repo, queue, clock, hooks)
    answers = Answers(200)
    monkeypatch.setattr(wiring, "webhook_sender", lambda: answers)
    assert isinstance(run_task(job, routing_key=settings.RENDER_QUEUE_NAMES["high"]), Retry)
    [(name, opts)] = sent
    assert name == "jobs.deliver_webhook" and opts["queue"] == settings.RENDER_WEBHOOK_QUEUE_NAME
    assert not opts.get("delay_seconds") and not opts.get("countdown")
    assert answers.codes == [200] and slots.in_flight("alice", clock()) == 0
    assert hooks.get(job.id, 1, JobStatus.CANCELLED).tries == 0


def test_a_delivery_over_its_owners_limit_is_sent_again_after_the_busy_wait_not_as_a_try(
    sent, monkeypatch, repo, queue, clock, hooks, slots
):
    job = ended(repo, queue, clock, hooks)
    answers = Answers(200)
    monkeypatch.setattr(wiring, "webhook_sender", lambda: answers)
    for token in ("w1", "w2"):
        slots.take("alice", limit=2, token=token, now=clock(), until=clock() + timedelta(seconds=30))
    assert isinstance(run_task(job, routing_key=settings.RENDER_WEBHOOK_QUEUE_NAME), Retry)
    assert [(opts["queue"], opts["delay_seconds"]) for _, opts in sent] == [
        (settings.RENDER_WEBHOOK_QUEUE_NAME, POLICY.busy_seconds)
    ]
    assert hooks.get(job.id, 1, JobStatus.CANCELLED).tries == 0


def test_the_timings_of_one_try_nest_inside_each_other():
    task = tasks.deliver_webhook
    assert settings.RENDER_WEBHOOK_TOTAL_TIMEOUT < task.soft_time_limit < task.time_limit
    assert task.time_limit < settings.RENDER_WEBHOOK_LEASE_SECONDS == wiring.webhook_policy().lease_seconds
    # The global limits (a chunk's six hours) do not reach it: Celery refuses a retry whose soft limit is above
    # its hard one.
    assert task.soft_time_limit < settings.CELERY_TASK_SOFT_TIME_LIMIT
