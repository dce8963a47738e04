"""Every job end, told once by the write that made it: counted in the metrics and passed on (webhooks).

Services call `notifier.job_ended(job, status)` right after the conditional write that ended a job (the
render loop, the assembly, cancel, fail; so also the sweeper, dead letters and the API's cancel). Counting
there, rather than where a worker happens to finish, puts every outcome in the jobs-by-outcome metric
whichever process ended the job, and never counts one end twice.
"""

from __future__ import annotations

from jobs.domain import Job, JobStatus
from jobs.ports import Clock, JobNotifier, Metrics


class CountingNotifier:
    def __init__(self, inner: JobNotifier, *, metrics: Metrics, clock: Clock):
        self._inner, self._metrics, self._clock = inner, metrics, clock

    def job_ended(self, job: Job, status: JobStatus) -> None:
        seconds = (self._clock() - job.created_at).total_seconds() if status is JobStatus.COMPLETED else None
        try:
            self._metrics.job_finished(outcome=str(status), seconds=seconds)
        finally:
            self._inner.job_ended(job, status)
