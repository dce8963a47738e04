"""`manage.py devstack_worker [--concurrency N]` (`make worker`): one more worker for the stack `make run` has up."""

import os
import signal
import subprocess
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.devstack import envfile
from jobs.devstack.stack import ENTRYPOINT, ROOT, Stack

STOP_SECONDS = 30  # a warm shutdown lets a running chunk finish or release; then the worker is killed


class Command(BaseCommand):
    help = (
        "Start a worker in this terminal that joins the local stack `make run` has up (manage.py has loaded its "
        "settings from .devstack/env); it stops with Ctrl-C or when the stack stops. Refused when none is up."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.CELERY_WORKER_CONCURRENCY,
            help="Pool processes: chunks this worker renders at once (default RENDER_WORKER_CONCURRENCY).",
        )

    def handle(self, *args, concurrency: int, **options):
        path = envfile.env_path()
        if envfile.read(path) is None:
            raise CommandError(f"No local stack is running ({path} is missing or stale): start one with `make run`.")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        name = f"joined-{os.getpid()}"
        env = Stack().merged_env()  # the venv's scripts first on PATH: the entry point runs `celery` by name
        env.setdefault("RENDER_WEBHOOK_ALLOW_PRIVATE", "1")  # as make run's processes (devstack)
        alive = path.parent / f"{name}.alive"  # next to the stack's file; removed when the worker stops
        env["RENDER_LIVENESS_FILE"] = str(alive)
        argv = [str(ENTRYPOINT), "worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
        self.stderr.write(f"Worker {name} (concurrency {concurrency}) joins the local stack; Ctrl-C stops it.")
        # In this terminal's process group, so Ctrl-C reaches the worker itself: a warm shutdown, waited for here.
        worker = subprocess.Popen(argv, cwd=ROOT, env=env)
        stopped = []  # a stop asked for here: then the worker's exit status (1 after Ctrl-C, Celery's) is no error

        def stop(signum, frame):
            stopped.append(signum)
            if signum == signal.SIGTERM:
                worker.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            code = self._supervise(worker, path, stopped)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            alive.unlink(missing_ok=True)
        if code and not stopped:
            raise CommandError(f"The worker exited with status {code}.", returncode=code)

    def _supervise(self, worker: subprocess.Popen, path, stopped: list) -> int:
        """The worker's exit status. Once the stack it joined has stopped, the worker is stopped too (SIGTERM: a
        warm shutdown), before the emulator under it goes away."""
        deadline = None
        while True:
            try:
                return worker.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if deadline is None and envfile.read(path) is None:
                self.stderr.write("The local stack stopped; stopping this worker.")
                stopped.append("stack")
                worker.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + STOP_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                worker.kill()
