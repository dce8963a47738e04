"""The Celery app: settings come from Django settings under the CELERY_ namespace."""

import os
from pathlib import Path

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")

app = Celery("renderproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class LivenessFile(bootsteps.StartStopStep):
    """Touches a file from the worker's own timer, so a container health check can tell a stuck worker."""

    requires = {"celery.worker.components:Timer"}

    def start(self, worker):
        from jobs.healthcheck import LIVENESS_FILE

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
        from django.conf import settings

        from jobs.broker import VisibilityKeeper

        keeper = VisibilityKeeper(visibility_timeout=settings.RENDER_VISIBILITY_TIMEOUT)

        def tick():
            task_consumer = getattr(consumer, "task_consumer", None)
            if task_consumer is not None:
                keeper.tick(task_consumer.channel)

        self.tref = consumer.timer.call_repeatedly(max(1.0, settings.RENDER_HEARTBEAT_SECONDS), tick)

    def stop(self, consumer):
        if getattr(self, "tref", None):
            self.tref.cancel()


app.steps["worker"].add(LivenessFile)
app.steps["consumer"].add(KeepMessagesInvisible)


@signals.worker_shutting_down.connect
def _shutting_down(**kwargs):
    """SIGTERM (ECS stop, Spot interruption): running chunks finish within the grace period or release."""
    from jobs import shutdown

    shutdown.request()


@signals.celeryd_init.connect
def _refuse_a_broken_configuration(**kwargs):
    """A worker that could not render anything refuses to start, with one clear line, instead of taking
    messages and failing every one of them."""
    from jobs import wiring

    try:
        wiring.renderer()
    except Exception as exc:  # an import error, a missing class, a bad setting: all equally fatal here
        raise SystemExit(f"render worker refuses to start: RENDER_RENDERER cannot be loaded ({exc})") from None
