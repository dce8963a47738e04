"""The task queue adapter: Celery messages carrying ids only, on the render queue of the job's priority, or on
the webhook queue for deliveries.

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
from jobs.ports.values import FANOUT_JOB, INSPECT_ASSET, RENDER_CHUNK, RUN_STEP
from jobs.ports.webhooks import DELIVER_WEBHOOK


class CeleryTaskQueue:
    def enqueue_chunk(self, *, job_id: str, index: int | None, attempt: int, priority: Priority) -> None:
        self._send(RENDER_CHUNK, (job_id, index, attempt), settings.RENDER_QUEUE_NAMES[str(priority)], job_id)

    def enqueue_fanout(self, *, job_id: str, attempt: int, priority: Priority) -> None:
        self._send(FANOUT_JOB, (job_id, attempt), settings.RENDER_QUEUE_NAMES[str(priority)], job_id)

    def enqueue_step(self, *, job_id: str, attempt: int, index: int, priority: Priority) -> None:
        # A step is render work (ffmpeg in the render sandbox): the job's render queue, so render workers run it.
        self._send(RUN_STEP, (job_id, attempt, index), settings.RENDER_QUEUE_NAMES[str(priority)], job_id)

    def enqueue_webhook(self, *, job_id: str, attempt: int, event: str) -> None:
        # Only webhook workers consume this queue: a slow receiver never holds a render worker.
        self._send(DELIVER_WEBHOOK, (job_id, attempt, event), settings.RENDER_WEBHOOK_QUEUE_NAME, job_id)

    def enqueue_inspection(self, *, owner: str, sha256: str, priority: Priority = Priority.HIGH) -> None:
        # High priority where a person (or a client) waits for it: it takes a worker a second or two.
        self._send(INSPECT_ASSET, (sha256, owner), settings.RENDER_QUEUE_NAMES[str(priority)], None)

    def _send(self, name: str, args: tuple, queue: str, job_id: str | None) -> None:
        # The job id (and the request that sent it) travel in the message headers, so the worker's log
        # lines about this message carry them from the moment it is received (jobs/worker/signals.py).
        headers = {"job_id": job_id, "request_id": logs.current().get("request_id")}
        try:
            current_app.send_task(name, args=args, queue=queue, headers=headers)
        except (BotoCoreError, ClientError, OperationalError, OSError) as exc:
            raise ServiceUnavailable(
                "The job queue (SQS) is unreachable; try again shortly.", component="job queue"
            ) from exc
