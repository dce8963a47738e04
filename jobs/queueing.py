"""The task queue adapter: Celery messages carrying ids only, on the queue of the job's priority."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from kombu.exceptions import OperationalError

from .domain import Priority
from .errors import ServiceUnavailable


class CeleryTaskQueue:
    def enqueue_chunk(self, *, job_id: str, index: int | None, attempt: int, priority: Priority) -> None:
        from .tasks import render_chunk

        self._send(render_chunk, (job_id, index, attempt), priority)

    def enqueue_fanout(self, *, job_id: str, attempt: int, priority: Priority) -> None:
        from .tasks import fanout_job

        self._send(fanout_job, (job_id, attempt), priority)

    def _send(self, task, args: tuple, priority: Priority) -> None:
        try:
            task.apply_async(args=args, queue=settings.RENDER_QUEUE_NAMES[str(priority)])
        except (BotoCoreError, ClientError, OperationalError, OSError) as exc:
            raise ServiceUnavailable("The job queue (SQS) is unreachable; try again shortly.") from exc
