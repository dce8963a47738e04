"""`manage.py dlq list|replay|purge`: the render dead-letter queue, for operators.

list: one JSON line per dead letter (job, chunk, attempt, deliveries, when sent).
replay: retry the job of each dead letter (a new attempt re-runs its unfinished chunks; the old
message itself is stale, its attempt fenced off) and delete the letter.
purge: delete every dead letter.
"""

import json

from django.core.management.base import BaseCommand

from jobs import wiring
from jobs.domain import JobStatus, utcnow
from jobs.errors import JobNotFound, JobStateConflict
from jobs.services import job_retry


class Command(BaseCommand):
    help = "List, replay (retry their jobs) or purge the render dead-letter queue."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "replay", "purge"])
        parser.add_argument("--limit", type=int, default=100)

    def handle(self, *args, action: str, limit: int, **options):
        dlq = wiring.dead_letter_queue()
        if action == "purge":
            dlq.purge()
            self.stdout.write(json.dumps({"purged": True}))
            return
        # list peeks (the letters stay visible); replay hides them while it works
        letters = dlq.receive(limit=limit, hide_seconds=0 if action == "list" else 60)
        if action == "list":
            for letter in letters:
                self.stdout.write(
                    json.dumps(
                        {
                            "message_id": letter.message_id,
                            "task": letter.task,
                            "args": letter.args,
                            "deliveries": letter.receive_count,
                            "sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
                        }
                    )
                )
            return
        repo, queue = wiring.job_repository(), wiring.task_queue()
        retried = set()
        for letter in letters:
            job_id = letter.job_id
            if job_id and job_id not in retried:
                try:
                    job = repo.get(job_id)
                    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                        job_retry(repo=repo, queue=queue, job=job, now=utcnow())
                        retried.add(job_id)
                except (JobNotFound, JobStateConflict):
                    pass
            dlq.delete(letter)
        self.stdout.write(json.dumps({"letters": len(letters), "jobs_retried": sorted(retried)}))
