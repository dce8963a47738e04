"""Celery tasks: take ids, claim with a conditional write, call one service, handle retry and failure."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django.conf import settings

from . import wiring
from .domain import JobStatus, utcnow
from .errors import JobNotFound, JobStateConflict
from .services import job_claim, job_record_failure, job_render

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@shared_task(bind=True, name="jobs.render_job", max_retries=None)
def render_job(self, job_id: str, attempt: int) -> None:
    """Render one job. Safe to run twice: a claim that loses (done, or held elsewhere) just returns."""
    repo = wiring.job_repository()
    try:
        claimed = job_claim(
            repo=repo,
            job_id=job_id,
            attempt=attempt,
            worker=WORKER_ID,
            lease_seconds=settings.RENDER_LEASE_SECONDS,
            now=utcnow(),
        )
    except JobNotFound:
        log.warning("job %s does not exist (withdrawn or expired); dropping its message", job_id)
        return
    if claimed is None:
        return
    job, token = claimed
    try:
        done = job_render(
            repo=repo,
            store=wiring.result_store(),
            renderer=wiring.renderer(),
            job=job,
            token=token,
            clock=utcnow,
            retention=wiring.retention(),
        )
        log.info("job %s %s", job_id, done.status)
    except JobStateConflict as exc:
        log.warning("job %s: lease lost while rendering (%s); leaving it to its new holder", job_id, exc.message)
    except Exception as exc:
        log.exception("job %s: render failed", job_id)
        after = job_record_failure(
            repo=repo,
            job=job,
            token=token,
            error=f"{type(exc).__name__}: {exc}",
            max_attempts=settings.RENDER_MAX_ATTEMPTS,
            now=utcnow(),
            retention=wiring.retention(),
        )
        if after.status is JobStatus.PROCESSING:
            countdown = settings.RENDER_RETRY_BACKOFF_SECONDS * 2 ** (after.render_failures - 1)
            queue = settings.RENDER_QUEUE_NAMES[str(job.priority)]
            raise self.retry(args=(job_id, attempt), countdown=min(countdown, 900), queue=queue, exc=exc) from exc
