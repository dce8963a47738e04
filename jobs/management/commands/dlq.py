"""`manage.py dlq list|replay|purge`: the render dead-letter queue, for operators.

list: the dead letters (job, task, arguments, deliveries, when sent), a peek: they stay in the queue.
replay: retry the job of each dead letter (a new attempt re-runs its unfinished chunks; the old
message itself is stale, its attempt fenced off) and delete the letter.
purge: delete every dead letter; only with --yes (without it, says how many it would delete and exits 1).

Output is for people; `--json` prints JSON instead (list: one object per letter, nothing when empty).
"""

import json

from django.core.management.base import CommandError

from jobs import wiring
from jobs.domain import JobStatus, utcnow
from jobs.errors import JobNotFound, JobStateConflict
from jobs.management.base import OperatorCommand
from jobs.services import job_retry

EMPTY = "The dead-letter queue is empty."


def _crashes(letter) -> int | None:
    """How many times holders of the letter's chunk died, as counted on the chunk itself.

    SQS's receive count is not shown: every read of the dead-letter queue (this command included) adds
    to it, and messages the sweeper sent again have counts of their own.
    """
    from jobs import wiring
    from jobs.errors import DomainError

    target = letter.target()
    if target is None:
        return None
    job_id, index, _attempt = target
    repo = wiring.job_repository()
    try:
        job = repo.get(job_id)
        if index is None:
            return job.crashes
        return next((c.crashes for c in repo.chunks.list(job_id) if c.index == index), None)
    except DomainError:
        return None


def _record(letter) -> dict:
    return {
        "message_id": letter.message_id,
        "task": letter.task,
        "args": letter.args,
        "crashes": _crashes(letter),
        "sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
    }


def _line(letter) -> str:
    sent = letter.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC") if letter.sent_at else "sent at ?"
    crashes = _crashes(letter)
    counted = f"its workers died {crashes} times" if crashes is not None else "job or chunk gone"
    return (
        f"{sent}  job {letter.job_id or '?'}  {letter.task or 'unreadable message'} {json.dumps(letter.args)}"
        f"  {counted}  (message {letter.message_id})"
    )


class Command(OperatorCommand):
    help = "List, replay (retry their jobs) or purge the render dead-letter queue."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "replay", "purge"])
        parser.add_argument("--limit", type=int, default=100, help="At most this many letters (list, replay).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="JSON output, for scripts.")
        parser.add_argument("--yes", action="store_true", help="purge: really delete the letters.")

    def handle(self, *args, action: str, limit: int, as_json: bool, yes: bool, **options):
        getattr(self, f"_{action}")(wiring.dead_letter_queue(), limit=limit, as_json=as_json, yes=yes)

    def _list(self, dlq, *, limit: int, as_json: bool, **_):
        letters = dlq.receive(limit=limit, hide_seconds=0)  # a peek: the letters stay visible
        if as_json:
            for letter in letters:
                self.stdout.write(json.dumps(_record(letter)))
            return
        if not letters:
            self.stdout.write(EMPTY)
            return
        for letter in letters:
            self.stdout.write(_line(letter))
        more = f" (the first {limit}; --limit for more)" if len(letters) >= limit else ""
        self.stdout.write(f"{len(letters)} dead letter(s){more}. `dlq replay` retries their jobs.")

    def _replay(self, dlq, *, limit: int, as_json: bool, **_):
        letters = dlq.receive(limit=limit, hide_seconds=60)  # hidden from others while this works
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
        if as_json:
            self.stdout.write(json.dumps({"letters": len(letters), "jobs_retried": sorted(retried)}))
        elif not letters:
            self.stdout.write(EMPTY)
        else:
            jobs = f": {', '.join(sorted(retried))}" if retried else " (none was FAILED or CANCELLED)"
            self.stdout.write(f"dlq replay: deleted {len(letters)} dead letter(s); retried {len(retried)} job(s){jobs}")

    def _purge(self, dlq, *, as_json: bool, yes: bool, **_):
        count = dlq.count()  # approximate, as SQS counts
        if not yes:
            raise CommandError(
                f"dlq purge would delete about {count} message(s) from {dlq.url}; nothing deleted. "
                "Run it again with --yes to delete them (`dlq list` shows them, `dlq replay` retries their jobs)."
            )
        dlq.purge()
        if as_json:
            self.stdout.write(json.dumps({"purged": True, "messages": count}))
        else:
            self.stdout.write(f"Purged the dead-letter queue (about {count} message(s)).")
