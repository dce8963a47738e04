"""The task queue adapter: one Celery message per job, ids only, on the queue of its priority."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from kombu.exceptions import OperationalError

from .domain import Priority
from .errors import ServiceUnavailable


class CeleryTaskQueue:
    def enqueue(self, *, job_id: str, attempt: int, priority: Priority) -> None:
        from .tasks import render_job

        try:
            render_job.apply_async(args=(job_id, attempt), queue=settings.RENDER_QUEUE_NAMES[str(priority)])
        except (BotoCoreError, ClientError, OperationalError, OSError) as exc:
            raise ServiceUnavailable("The job queue (SQS) is unreachable; try again shortly.") from exc
