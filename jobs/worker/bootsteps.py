"""Celery bootsteps of the render worker: the liveness file and the keeper of message visibility."""

from __future__ import annotations

from pathlib import Path

from celery import bootsteps
from django.conf import settings

from jobs.worker.healthcheck import LIVENESS_FILE
from jobs.worker.transport import VisibilityKeeper


class LivenessFile(bootsteps.StartStopStep):
    """Touches a file from the worker's own timer, so a container health check can tell a stuck worker."""

    requires = {"celery.worker.components:Timer"}

    def start(self, worker):
        path = Path(LIVENESS_FILE)
        path.touch()
        self.tref = worker.timer.call_repeatedly(10.0, path.touch)

    def stop(self, worker):
        if getattr(self, "tref", None):
            self.tref.cancel()


class KeepMessagesInvisible(bootsteps.StartStopStep):
    """Extends the visibility of the SQS messages the worker holds, for as long as it works on them."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer):
        keeper = VisibilityKeeper(visibility_timeout=settings.RENDER_VISIBILITY_TIMEOUT)

        def tick():
            task_consumer = getattr(consumer, "task_consumer", None)
            if task_consumer is not None:
                keeper.tick(task_consumer.channel)

        self.tref = consumer.timer.call_repeatedly(keeper.tick_seconds, tick)

    def stop(self, consumer):
        if getattr(self, "tref", None):
            self.tref.cancel()
