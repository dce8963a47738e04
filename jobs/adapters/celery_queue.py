"""The task queue adapter: Celery messages carrying ids only, on the queue of the job's priority.

Tasks are sent by their registered names, so this adapter does not import the task module (which
imports the wiring, which imports this adapter).
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from celery import current_app
from django.conf import settings
from kombu.exceptions import OperationalError

from jobs.adapters import logs
from jobs.domain import Priority
from jobs.errors import ServiceUnavailable
from jobs.ports.values import FANOUT_JOB, INSPECT_ASSET, RENDER_CHUNK
from jobs.ports.webhooks import DELIVER_WEBHOOK


class CeleryTaskQueue:
    def enqueue_chunk(self, *, job_id: str, index: int | None, attempt: int, priority: Priority) -> None:
        self._send(RENDER_CHUNK, (job_id, index, attempt), priority, job_id)

    def enqueue_fanout(self, *, job_id: str, attempt: int, priority: Priority) -> None:
        self._send(FANOUT_JOB, (job_id, attempt), priority, job_id)

    def enqueue_webhook(self, *, job_id: str, attempt: int, event: str, priority: Priority, countdown: int = 0) -> None:
        self._send(DELIVER_WEBHOOK, (job_id, attempt, event), priority, job_id, countdown=countdown)

    def enqueue_inspection(self, *, owner: str, sha256: str) -> None:
        self._send(INSPECT_ASSET, (sha256, owner), Priority.HIGH, None)

    def _send(self, name: str, args: tuple, priority: Priority, job_id: str | None, *, countdown: int = 0) -> None:
        # The job id (and the request that sent it) travel in the message headers, so the worker's log
        # lines about this message carry them from the moment it is received (jobs/worker/signals.py).
        headers = {"job_id": job_id, "request_id": logs.current().get("request_id")}
        try:
            current_app.send_task(
                name,
                args=args,
                queue=settings.RENDER_QUEUE_NAMES[str(priority)],
                headers=headers,
                countdown=countdown or None,
            )
        except (BotoCoreError, ClientError, OperationalError, OSError) as exc:
            raise ServiceUnavailable(
                "The job queue (SQS) is unreachable; try again shortly.", component="job queue"
            ) from exc
