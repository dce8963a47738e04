"""`manage.py sweep`: one pass of the sweeper (run on a schedule; safe to run twice at once).

It gets overdue work moving (see jobs/services/sweeper.py) and fails the jobs of dead-lettered messages.
"""

import json
import time
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import dead_letters_fail_jobs, sweep


class Command(BaseCommand):
    help = "Re-enqueue or finish overdue render work (lost messages, dead workers, stalled cancels, poison work)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", type=float, default=0, help="Repeat every N seconds (0: one pass).")

    def handle(self, *args, loop: float, **options):
        while True:
            now = utcnow()
            # Poison work first: a job whose message was dead-lettered fails rather than being re-enqueued.
            letters = wiring.dead_letter_queue().receive(limit=100)
            failed = dead_letters_fail_jobs(
                repo=wiring.job_repository(), letters=letters, now=now, retention=wiring.retention()
            )
            done = Counter({f"dlq_{k}": v for k, v in failed.items()})
            done.update(
                sweep(
                    repo=wiring.job_repository(),
                    queue=wiring.task_queue(),
                    now=now,
                    queued_grace=timedelta(seconds=settings.RENDER_SWEEP_GRACE_SECONDS),
                    retention=wiring.retention(),
                )
            )
            self.stdout.write(json.dumps(dict(done) or {"nothing": 0}, sort_keys=True))
            if not loop:
                return
            time.sleep(loop)
