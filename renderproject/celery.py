"""The Celery app: settings come from Django settings under the CELERY_ namespace."""

import os

from celery import Celery, signals

from jobs.repository import usage
from jobs.worker import signals as worker_signals
from jobs.worker.bootsteps import KeepMessagesInvisible, LivenessFile

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")

app = Celery("renderproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(LivenessFile)
app.steps["consumer"].add(KeepMessagesInvisible)


@signals.worker_shutting_down.connect
def _shutting_down(**kwargs):
    """SIGTERM (ECS stop, Spot interruption): running chunks finish within the grace period or release."""
    from jobs.worker import shutdown

    shutdown.request()


@signals.worker_init.connect
def _share_with_the_pool(**kwargs):
    """Before the pool forks: load the AWS service models the pool processes' clients will use, and freeze
    what is loaded so far out of the garbage collector's reach, so the processes keep sharing those pages
    with this one instead of each copying them."""
    import gc

    from jobs.adapters import aws

    aws.load_models(("dynamodb", "sqs", "s3"))
    gc.freeze()


@signals.worker_process_init.connect
def _start_heartbeat(**kwargs):
    """Each pool process (one render at a time) records its heartbeat and batches the usage of the jobs it ends;
    a process start is a metric too.

    Not a webhook worker's: the farm status and the crash-loop alarm are about render workers."""
    from django.conf import settings

    from jobs import wiring
    from jobs.worker.heartbeat import Heartbeat

    if settings.RENDER_ROLE == "webhooks":
        return
    wiring.metrics().worker_started()
    Heartbeat(wiring.farm_registry(), every=settings.RENDER_WORKER_HEARTBEAT_SECONDS, version=version()).start()
    usage.batch_settles(settings.RENDER_USAGE_FLUSH_SECONDS)


@signals.worker_process_shutdown.connect
def _settle_the_usage(**kwargs):
    """A pool process that stops (a warm shutdown, a recycled process) writes the usage it has summed."""
    usage.flush_settles()


def version() -> str:
    """The running build: RENDER_VERSION when the deployment sets it (nothing does yet), else "dev"."""
    return os.environ.get("RENDER_VERSION") or "dev"


signals.task_received.connect(worker_signals.on_task_received, weak=False)
signals.task_prerun.connect(worker_signals.on_task_prerun, weak=False)
signals.task_postrun.connect(worker_signals.on_task_postrun, weak=False)


@signals.celeryd_init.connect
def _logs_from_the_first_line(instance, **kwargs):
    """The project's logging before Celery's start-up checks warn (their warnings become log lines); with JSON
    logs no banner, whose lines are no JSON (the ` ready.` line is a log line and stays)."""
    import django
    from django.conf import settings

    django.setup()
    if settings.RENDER_LOG_FORMAT == "json":
        instance.quiet = True


@signals.celeryd_init.connect
def _refuse_a_broken_configuration(**kwargs):
    """A worker that could not render anything refuses to start, with one clear line, instead of taking
    messages and failing every one of them."""
    from django.conf import settings

    from jobs import wiring

    if settings.RENDER_ROLE == "webhooks":
        return  # it renders nothing
    try:
        wiring.renderer()
    except Exception as exc:  # an import error, a missing class, a bad setting: all equally fatal here
        raise SystemExit(f"render worker refuses to start: RENDER_RENDERER cannot be loaded ({exc})") from None
