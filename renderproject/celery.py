"""The Celery app: settings come from Django settings under the CELERY_ namespace."""

import os
from pathlib import Path

from celery import Celery, bootsteps

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


app.steps["worker"].add(LivenessFile)
