"""Celery tasks: take ids, call one service (which claims with a conditional write), handle retry."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django.conf import settings

from . import shutdown, wiring
from .domain import utcnow
from .errors import JobNotFound
from .services import Outcome, Worker, chunk_process, job_fanout

log = logging.getLogger(__name__)


def worker_id() -> str:
    """This pool process, as it appears in a chunk's `worker` field: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker() -> Worker:
    return Worker(
        repo=wiring.job_repository(),
        store=wiring.result_store(),
        renderer=wiring.renderer(),
        clock=utcnow,
        name=worker_id(),
        lease_seconds=settings.RENDER_LEASE_SECONDS,
        max_attempts=settings.RENDER_MAX_ATTEMPTS,
        retention=wiring.retention(),
        heartbeat_seconds=settings.RENDER_HEARTBEAT_SECONDS,
        grace_left=lambda: shutdown.grace_left(settings.RENDER_SHUTDOWN_GRACE_SECONDS),
    )


@shared_task(bind=True, name="jobs.render_chunk", max_retries=None)
def render_chunk(self, job_id: str, index: int | None, attempt: int) -> str:
    """Render one chunk (index None: a one-chunk job). Safe to run twice: a lost claim just returns."""
    try:
        outcome, failures = chunk_process(worker=_worker(), job_id=job_id, index=index, attempt=attempt)
    except JobNotFound:
        log.warning("job %s does not exist (withdrawn or expired); dropping its message", job_id)
        return Outcome.SKIPPED
    if outcome in (Outcome.RETRY, Outcome.RELEASED):
        # A retry after a failure waits with backoff; a chunk released at shutdown goes straight back.
        countdown = (
            0 if outcome is Outcome.RELEASED else min(settings.RENDER_RETRY_BACKOFF_SECONDS * 2 ** (failures - 1), 900)
        )
        queue = self.request.delivery_info.get("routing_key") or settings.RENDER_QUEUE_NAMES["normal"]
        raise self.retry(args=(job_id, index, attempt), countdown=countdown, queue=queue)
    return outcome


@shared_task(name="jobs.fanout_job")
def fanout_job(job_id: str, attempt: int) -> int:
    """Create a multi-chunk job's tasks and send one message per chunk (idempotent; see services.fanout)."""
    try:
        return job_fanout(
            repo=wiring.job_repository(), queue=wiring.task_queue(), job_id=job_id, attempt=attempt, now=utcnow()
        )
    except JobNotFound:
        log.warning("job %s does not exist; nothing to fan out", job_id)
        return 0
