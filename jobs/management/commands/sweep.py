"""`manage.py sweep`: one pass of the sweeper (run on a schedule; safe to run twice at once)."""

import json
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import sweep


class Command(BaseCommand):
    help = "Re-enqueue or finish overdue render work (lost messages, dead workers, stalled cancels)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", type=float, default=0, help="Repeat every N seconds (0: one pass).")

    def handle(self, *args, loop: float, **options):
        import time

        while True:
            done = sweep(
                repo=wiring.job_repository(),
                queue=wiring.task_queue(),
                now=utcnow(),
                queued_grace=timedelta(seconds=settings.RENDER_SWEEP_GRACE_SECONDS),
                retention=wiring.retention(),
            )
            self.stdout.write(json.dumps(dict(done) or {"nothing": 0}))
            if not loop:
                return
            time.sleep(loop)
