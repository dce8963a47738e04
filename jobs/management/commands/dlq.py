"""`manage.py dlq list|replay|purge [--queue render|webhooks]`: a dead-letter queue, for operators.

Two DLQs: `render` (the default: render and fan-out messages, poison work) and `webhooks` (webhook delivery
messages no webhook worker could finish). A dead delivery message never fails or retries its job.

list: the dead letters, a peek: they stay in the queue. A render letter shows its job, task, arguments and how
often the chunk's holders died; a webhook letter its job, the end it reports and the delivery's state.
replay: a render letter retries its job (a new attempt re-runs its unfinished chunks; the old message itself
is stale, its attempt fenced off); a webhook letter sends its delivery's message again if the delivery is still
pending. Either way the letter is deleted.
purge: delete every dead letter; only with --yes (without it, says how many it would delete and exits 1).

Output is for people; `--json` prints JSON instead (list: one object per letter, nothing when empty).
"""

import json

from django.core.management.base import CommandError

from jobs import wiring
from jobs.domain import JobStatus, utcnow
from jobs.errors import DomainError, JobNotFound, JobStateConflict
from jobs.management.base import OperatorCommand
from jobs.services import job_retry
from jobs.services.webhooks import webhook_resend

LABELS = {"render": "the dead-letter queue", "webhooks": "the webhook dead-letter queue"}


def _crashes(letter) -> int | None:
    """How many times holders of the letter's chunk died, as counted on the chunk itself.

    SQS's receive count is not shown: every read of the dead-letter queue (this command included) adds
    to it, and messages the sweeper sent again have counts of their own.
    """
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


def _delivery(letter):
    """The delivery a webhook letter is about, as it stands (None: not a webhook letter, or the delivery is gone)."""
    hook = letter.webhook()
    if hook is None:
        return None
    job_id, attempt, event = hook
    try:
        return wiring.webhook_repository().get(job_id, attempt, JobStatus(event))
    except (DomainError, ValueError):
        return None


def _record(letter) -> dict:
    record = {
        "message_id": letter.message_id,
        "task": letter.task,
        "args": letter.args,
        "sent_at": letter.sent_at.isoformat() if letter.sent_at else None,
    }
    if letter.webhook():
        delivery = _delivery(letter)
        record["delivery"] = {"state": delivery.state, "tries": delivery.tries} if delivery else None
    else:
        record["crashes"] = _crashes(letter)
    return record


def _line(letter) -> str:
    sent = letter.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC") if letter.sent_at else "sent at ?"
    hook = letter.webhook()
    if hook:
        delivery = _delivery(letter)
        state = f"delivery {delivery.state} after {delivery.tries} tries" if delivery else "delivery gone"
        job_id, attempt, event = hook
        return (
            f"{sent}  job {job_id}  webhook of its {event} (attempt {attempt})  {state}  (message {letter.message_id})"
        )
    crashes = _crashes(letter)
    counted = f"its workers died {crashes} times" if crashes is not None else "job or chunk gone"
    return (
        f"{sent}  job {letter.job_id or '?'}  {letter.task or 'unreadable message'} {json.dumps(letter.args)}"
        f"  {counted}  (message {letter.message_id})"
    )


class Command(OperatorCommand):
    help = "List, replay (retry their jobs, resend their webhooks) or purge a dead-letter queue."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "replay", "purge"])
        parser.add_argument(
            "--queue",
            choices=sorted(LABELS),
            default="render",
            help="render (default): render work; webhooks: webhook deliveries.",
        )
        parser.add_argument("--limit", type=int, default=100, help="At most this many letters (list, replay).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="JSON output, for scripts.")
        parser.add_argument("--yes", action="store_true", help="purge: really delete the letters.")

    def handle(self, *args, action: str, queue: str, limit: int, as_json: bool, yes: bool, **options):
        dlq = wiring.webhook_dead_letter_queue() if queue == "webhooks" else wiring.dead_letter_queue()
        getattr(self, f"_{action}")(dlq, label=LABELS[queue], limit=limit, as_json=as_json, yes=yes)

    def _list(self, dlq, *, label: str, limit: int, as_json: bool, **_):
        letters = dlq.receive(limit=limit, hide_seconds=0)  # a peek: the letters stay visible
        if as_json:
            for letter in letters:
                self.stdout.write(json.dumps(_record(letter)))
            return
        if not letters:
            self.stdout.write(f"{label.capitalize()} is empty.")
            return
        for letter in letters:
            self.stdout.write(_line(letter))
        more = f" (the first {limit}; --limit for more)" if len(letters) >= limit else ""
        does = "resends their pending deliveries" if any(x.webhook() for x in letters) else "retries their jobs"
        self.stdout.write(f"{len(letters)} dead letter(s){more}. `dlq replay` {does}.")

    def _replay(self, dlq, *, label: str, limit: int, as_json: bool, **_):
        letters = dlq.receive(limit=limit, hide_seconds=60)  # hidden from others while this works
        jobs = wiring.job_control()
        repo, queue = jobs.repo, jobs.queue
        retried, resent = set(), 0
        for letter in letters:
            hook, target = letter.webhook(), letter.target()
            if hook:
                job_id, attempt, event = hook
                hooks = wiring.webhook_repository()
                resent += webhook_resend(
                    hooks=hooks, queue=queue, job_id=job_id, attempt=attempt, event=JobStatus(event)
                )
            elif target and target[0] not in retried:
                try:
                    job = repo.get(target[0])
                    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                        job_retry(jobs=jobs, job=job, now=utcnow(), scene_files=wiring.scene_files())
                        retried.add(job.id)
                except (JobNotFound, JobStateConflict):
                    pass
            dlq.delete(letter)
        hooks = sum(1 for letter in letters if letter.webhook())
        if as_json:
            done = {"letters": len(letters), "jobs_retried": sorted(retried)}
            self.stdout.write(json.dumps({**done, "webhooks_resent": resent} if hooks else done))
        elif not letters:
            self.stdout.write(f"{label.capitalize()} is empty.")
        else:
            parts = [f"deleted {len(letters)} dead letter(s)"]
            if len(letters) > hooks:
                jobs = f": {', '.join(sorted(retried))}" if retried else " (none was FAILED or CANCELLED)"
                parts.append(f"retried {len(retried)} job(s){jobs}")
            if hooks:
                settled = f" ({hooks - resent} delivered, failed or gone)" if resent < hooks else ""
                parts.append(f"resent {resent} of {hooks} webhook delivery(ies){settled}")
            self.stdout.write("dlq replay: " + "; ".join(parts))

    def _purge(self, dlq, *, label: str, as_json: bool, yes: bool, **_):
        count = dlq.count()  # approximate, as SQS counts
        if not yes:
            raise CommandError(
                f"dlq purge would delete about {count} message(s) from {dlq.url}; nothing deleted. "
                "Run it again with --yes to delete them (`dlq list` shows them, `dlq replay` retries or resends them)."
            )
        dlq.purge()
        if as_json:
            self.stdout.write(json.dumps({"purged": True, "messages": count}))
        else:
            self.stdout.write(f"Purged {label} (about {count} message(s)).")
