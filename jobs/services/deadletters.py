"""Poison work: a message SQS dead-lettered (its worker crashed on it every time) fails its chunk and job."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from datetime import datetime, timedelta

from ..deadletters import DeadLetter
from ..errors import JobNotFound, JobStateConflict
from ..repository import JobRepository

log = logging.getLogger(__name__)


def dead_letters_fail_jobs(
    *, repo: JobRepository, letters: list[DeadLetter], now: datetime, retention: timedelta
) -> Counter:
    """Mark the jobs of dead-lettered messages FAILED with the reason; the letters stay for operators."""
    done: Counter = Counter()
    for letter in letters:
        target = _target(letter)
        if target is None:
            done["unknown"] += 1
            continue
        job_id, index, attempt = target
        error = "a message of this job was dead-lettered: every worker that took it crashed (poison work)"
        if index is not None:
            with contextlib.suppress(JobStateConflict, JobNotFound):
                repo.fail_unfinished_task(job_id, index, attempt=attempt, error=error, now=now)
        try:
            repo.fail_unfinished(job_id, attempt=attempt, error=error, now=now, expires_at=now + retention)
        except (JobStateConflict, JobNotFound):
            done["already_final"] += 1
            continue
        log.warning("job_failed job=%s error=%s", job_id, error)
        done["job_failed"] += 1
    return done


def _target(letter: DeadLetter) -> tuple[str, int | None, int] | None:
    args = letter.args
    if letter.task == "jobs.render_chunk" and len(args) == 3:
        return args[0], args[1], int(args[2])
    if letter.task == "jobs.fanout_job" and len(args) == 2:
        return args[0], None, int(args[1])
    return None
