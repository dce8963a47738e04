"""`manage.py sweep`: one pass of the sweeper (run on a schedule; safe to run twice at once).

It gets overdue work moving (see jobs/services/sweeper.py) and fails the jobs of dead-lettered messages.
Prints one line per pass: a summary for people, or with `--json` the counts as one JSON object (keys as
the services name them; the dead-letter ones prefixed `dlq_`; only non-zero counts).
"""

import dataclasses
import json
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings

from jobs import wiring
from jobs.adapters import logs
from jobs.domain import utcnow
from jobs.management.base import OperatorCommand
from jobs.services import dead_letters_fail_jobs, sweep
from jobs.services.sweep_counts import DLQ_PREFIX, DeadLettered, Swept


def as_counts(result) -> dict[str, int]:
    """The non-zero counts of a service's result: a mapping (Counter) or an object with int attributes."""
    if isinstance(result, Mapping):
        items = result.items()
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        items = ((f.name, getattr(result, f.name)) for f in dataclasses.fields(result))
    else:
        items = vars(result).items()
    return {str(k): int(v) for k, v in items if isinstance(v, int) and not isinstance(v, bool) and v}


def _parts(counts: dict[str, int], labels: dict[str, str]) -> str:
    listed = [f"{counts[k]} {label}" for k, label in labels.items() if counts.get(k)]
    return f" ({', '.join(listed)})" if listed else ""


_REQUEUED = {
    Swept.JOB_REQUEUED: "one-chunk jobs",
    Swept.CHUNK_REQUEUED: "chunks",
    Swept.FANOUT_REQUEUED: "fan-outs",
    Swept.ASSEMBLY_REQUEUED: "assemblies",
    Swept.STEP_REQUEUED: "steps",
}
_DLQ = {
    DeadLettered.ALREADY_FINAL.counted_as: "already final",
    DeadLettered.WEBHOOK.counted_as: "webhook letters, their jobs untouched",
    DeadLettered.UNKNOWN.counted_as: "unreadable letters",
}
_DLQ_FAILED = DeadLettered.JOB_FAILED.counted_as
_KNOWN = {*_REQUEUED, *_DLQ, Swept.CANCEL_FINISHED, Swept.CANCEL_WAITING, _DLQ_FAILED, Swept.SKIPPED, Swept.GONE}


def summary(counts: dict[str, int]) -> str:
    """One line for people, e.g. `sweep: re-enqueued 2 (2 chunks), finished 1 cancel, failed 0 dead-lettered jobs,
    skipped 3`."""
    requeued = sum(counts.get(k, 0) for k in _REQUEUED)
    line = (
        f"sweep: re-enqueued {requeued}{_parts(counts, _REQUEUED)}, "
        f"finished {counts.get(Swept.CANCEL_FINISHED, 0)} cancel(s)"
        f"{_parts(counts, {Swept.CANCEL_WAITING: 'still waiting for a worker'})}, "
        f"failed {counts.get(_DLQ_FAILED, 0)} dead-lettered job(s){_parts(counts, _DLQ)}, "
        f"skipped {counts.get(Swept.SKIPPED, 0)}"
    )
    if counts.get(Swept.GONE):
        line += f", {counts[Swept.GONE]} gone (deleted meanwhile)"
    other = {k: v for k, v in counts.items() if k not in _KNOWN}
    if other:  # kinds this summary does not know yet: shown rather than hidden
        line += ", other: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
    return line


class Command(OperatorCommand):
    help = "Re-enqueue or finish overdue render work (lost messages, dead workers, stalled cancels, poison work)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", type=float, default=0, help="Repeat every N seconds (0: one pass).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Counts as JSON.")

    def handle(self, *args, loop: float, as_json: bool, **options):
        while True:
            counts = self._pass()
            self.stdout.write(json.dumps(counts, sort_keys=True) if as_json else summary(counts))
            if not loop:
                return
            time.sleep(loop)

    def _pass(self) -> dict[str, int]:
        # Every line of a pass carries its id and the sweeper's name; each item's, its job, chunk and attempt.
        with logs.scope(request_id=f"sweep-{uuid.uuid4().hex[:12]}", worker=f"sweeper-{socket.gethostname()}"):
            return self._sweep()

    def _sweep(self) -> dict[str, int]:
        now = utcnow()
        # Poison work first: a job whose message was dead-lettered fails rather than being re-enqueued.
        letters = wiring.dead_letter_queue().receive(limit=100)
        jobs = wiring.job_control()
        failed = dead_letters_fail_jobs(jobs=jobs, letters=letters, now=now, log_context=logs.within)
        swept = sweep(
            jobs=jobs,
            hooks=wiring.webhook_repository(),
            now=now,
            queued_grace=timedelta(seconds=settings.RENDER_SWEEP_GRACE_SECONDS),
            log_context=logs.within,
        )
        counts = {DLQ_PREFIX + k: v for k, v in as_counts(failed).items()}
        for kind, n in as_counts(swept).items():
            counts[kind] = counts.get(kind, 0) + n
        return counts
