"""Poison work: a message SQS dead-lettered (its worker crashed on it every time) fails its chunk and job.

A webhook delivery's message has a DLQ of its own; one found here (sent before deliveries had their own
queue) is counted and left alone: a dead delivery never fails its job, and the sweeper sends a delivery
that is still pending again (`webhooks_sweep`).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from jobs.domain import Failure
from jobs.ports import DeadLetter, JobControl, LogContext
from jobs.services.control import job_fail
from jobs.services.sweep_counts import DeadLettered

log = logging.getLogger(__name__)
DEAD_LETTERED = Failure(
    "dead_lettered", "A message of this job was dead-lettered: every worker that took it crashed (poison work)."
)


def dead_letters_fail_jobs(
    *, jobs: JobControl, letters: list[DeadLetter], now: datetime, log_context: LogContext
) -> Counter:
    """Mark the jobs of dead-lettered messages FAILED with the reason; the letters stay for operators."""
    done: Counter = Counter()
    for letter in letters:
        target = letter.target()
        if target is None:
            done[DeadLettered.WEBHOOK if letter.webhook() else DeadLettered.UNKNOWN] += 1
            continue
        job_id, index, attempt = target
        with log_context(job_id=job_id, chunk=index, attempt=attempt):
            jobs.repo.chunks.fail(job_id, index, attempt=attempt, failure=DEAD_LETTERED, now=now)
            failed = job_fail(jobs=jobs, job_id=job_id, attempt=attempt, failure=DEAD_LETTERED, now=now)
            log.warning("dead-lettered message: job %s", "failed" if failed else "already final")
        done[DeadLettered.JOB_FAILED if failed else DeadLettered.ALREADY_FINAL] += 1
    return done
