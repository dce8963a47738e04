"""Celery tasks: take ids, call one service (which claims with a conditional write), handle retry.

Any error a service does not handle is still a failed attempt of the chunk, recorded with its error and
retried with backoff (see services.rendering.chunk_error); if even that cannot be written (DynamoDB
down), the message is not acknowledged (CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT is off), so SQS delivers
it again and, past the redrive count, the dead-letter handling fails the job.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from rest_framework.renderers import JSONRenderer

from jobs import wiring
from jobs.domain import JobStatus, utcnow
from jobs.errors import JobNotFound
from jobs.ports.values import FANOUT_JOB, INSPECT_ASSET, RENDER_CHUNK, RUN_STEP
from jobs.ports.webhooks import DELIVER_WEBHOOK
from jobs.presentation import job_detail
from jobs.services import Outcome, chunk_error, chunk_process, job_fanout
from jobs.services.assets import asset_inspect
from jobs.services.steps import step_error, step_process
from jobs.services.webhooks import webhook_deliver

log = logging.getLogger(__name__)


def _arrived_on(task) -> str:
    """The queue a message came on: its retry goes back there (the job's priority)."""
    return task.request.delivery_info.get("routing_key") or settings.RENDER_QUEUE_NAMES["normal"]


def backoff(failures: int) -> int:
    return min(settings.RENDER_RETRY_BACKOFF_SECONDS * 2 ** max(failures - 1, 0), 900)


@shared_task(bind=True, name=RENDER_CHUNK, max_retries=None)
def render_chunk(self, job_id: str, index: int | None, attempt: int) -> str:
    """Render one chunk (index None: a one-chunk job). Safe to run twice: a lost claim just returns."""
    try:
        outcome, failures = chunk_process(ctx=wiring.render_context(), job_id=job_id, index=index, attempt=attempt)
    except JobNotFound:
        log.warning("job %s does not exist (withdrawn or expired); dropping its message", job_id)
        return Outcome.SKIPPED
    except Exception as exc:
        log.exception("job %s chunk %s: unexpected error", job_id, index)
        outcome, failures = chunk_error(  # the renderer may be what is broken: this needs only the jobs
            jobs=wiring.job_control(),
            job_id=job_id,
            index=index,
            attempt=attempt,
            error=exc,
            now=utcnow(),
            max_attempts=settings.RENDER_MAX_ATTEMPTS,
            max_outage_attempts=settings.RENDER_MAX_OUTAGE_ATTEMPTS,
        )
    if outcome is Outcome.HELD:  # `failures` is the seconds until the live lease lapses
        raise self.retry(args=(job_id, index, attempt), countdown=failures, queue=_arrived_on(self))
    if outcome in (Outcome.RETRY, Outcome.RELEASED):
        # A retry after a failure waits with backoff; a chunk released at shutdown goes straight back.
        countdown = 0 if outcome is Outcome.RELEASED else backoff(failures)
        raise self.retry(args=(job_id, index, attempt), countdown=countdown, queue=_arrived_on(self))
    return outcome


@shared_task(bind=True, name=RUN_STEP, max_retries=None)
def run_step(self, job_id: str, attempt: int, index: int) -> str:
    """Run a job's step (an encode) once its frames are assembled. Safe to run twice: a lost claim returns."""
    try:
        outcome, failures = step_process(ctx=wiring.render_context(), job_id=job_id, attempt=attempt, index=index)
    except JobNotFound:
        log.warning("job %s does not exist (expired); dropping its step message", job_id)
        return Outcome.SKIPPED
    except Exception as exc:
        log.exception("job %s step %s: unexpected error", job_id, index)
        outcome, failures = step_error(
            jobs=wiring.job_control(),
            job_id=job_id,
            attempt=attempt,
            index=index,
            error=exc,
            now=utcnow(),
            max_attempts=settings.RENDER_MAX_ATTEMPTS,
            max_outage_attempts=settings.RENDER_MAX_OUTAGE_ATTEMPTS,
        )
    if outcome is Outcome.HELD:  # `failures` is the seconds until the live lease lapses
        raise self.retry(args=(job_id, attempt, index), countdown=failures, queue=_arrived_on(self))
    if outcome in (Outcome.RETRY, Outcome.RELEASED):
        # A retry after a failure waits with backoff; a step released at shutdown goes straight back.
        countdown = 0 if outcome is Outcome.RELEASED else backoff(failures)
        raise self.retry(args=(job_id, attempt, index), countdown=countdown, queue=_arrived_on(self))
    return outcome


@shared_task(name=FANOUT_JOB)
def fanout_job(job_id: str, attempt: int) -> int:
    """Create a multi-chunk job's chunks and send one message per chunk (idempotent; see services.fanout)."""
    try:
        return job_fanout(jobs=wiring.job_control(), job_id=job_id, attempt=attempt, now=utcnow())
    except JobNotFound:
        log.warning("job %s does not exist; nothing to fan out", job_id)
        return 0


@shared_task(name=INSPECT_ASSET)
def inspect_asset(sha256: str, owner: str) -> str:
    """Read an uploaded scene file's settings with this worker's Blender (sandboxed) and keep them on the
    asset; a duplicate finds them there. An error leaves it pending: the next look at the asset asks again."""
    try:
        inspection = asset_inspect(
            repo=wiring.asset_repository(),
            inspector=wiring.blender_renderer().inspect,
            owner=owner,
            sha256=sha256,
            now=utcnow(),
        )
    except Exception:
        log.exception("scene file %s of %s: inspection failed", sha256[:12], owner)
        return "error"
    return "gone" if inspection is None else inspection.state


def _job_body(job_id: str) -> bytes:
    """The job's JSON exactly as `GET /api/jobs/<id>` shows it (its URL from RENDER_PUBLIC_URL)."""
    job = wiring.job_repository().get(job_id)
    document = job_detail(job, url=f"{settings.RENDER_PUBLIC_URL}/api/jobs/{job.id}", now=utcnow())
    return JSONRenderer().render(document)


# Its own time limits, nested inside the delivery's lease (settings: the timings of one try). The soft one must
# be the task's too: Celery refuses to send a retry of a task whose soft limit is above its hard one.
@shared_task(
    bind=True,
    name=DELIVER_WEBHOOK,
    max_retries=None,
    soft_time_limit=settings.RENDER_WEBHOOK_SOFT_TIME_LIMIT,
    time_limit=settings.RENDER_WEBHOOK_TIME_LIMIT,
)
def deliver_webhook(self, job_id: str, attempt: int, event: str) -> str:
    """POST the job's end to its callback URL (one try); a failed try comes back after its backoff, a delivery
    over its owner's limit of deliveries in flight after a short wait."""
    if _arrived_on(self) in settings.RENDER_QUEUE_NAMES.values():
        # Sent before deliveries had their own queue: passed on untouched, so no render worker ever POSTs.
        raise self.retry(args=(job_id, attempt, event), queue=settings.RENDER_WEBHOOK_QUEUE_NAME, countdown=0)
    policy = wiring.webhook_policy()
    try:
        wait = webhook_deliver(
            hooks=wiring.webhook_repository(),
            slots=wiring.delivery_slots(),
            sender=wiring.webhook_sender(),
            body_of=_job_body,
            job_id=job_id,
            attempt=attempt,
            event=JobStatus(event),
            clock=utcnow,
            policy=policy,
        )
    except JobNotFound:
        log.warning("job %s does not exist; no webhook", job_id)
        return "gone"
    except SoftTimeLimitExceeded:  # a hung DynamoDB call: its slot is released; its lease must lapse first
        log.warning("job %s: webhook try over its time limit; tried again once its lease lapses", job_id)
        wait = policy.lease_seconds
    if wait is None:
        return "done"
    # SQS holds the message back (DelaySeconds, at most 900 s: the backoff's cap), so no worker sits on it.
    raise self.retry(
        args=(job_id, attempt, event), queue=settings.RENDER_WEBHOOK_QUEUE_NAME, countdown=0, delay_seconds=wait
    )
