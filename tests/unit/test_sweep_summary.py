"""`manage.py sweep` output: one readable line from the services' counts, whatever their shape."""

from collections import Counter
from dataclasses import dataclass

from jobs.management.commands.sweep import as_counts, summary


@dataclass
class SweepResult:  # the shape the sweeper's result may take
    chunk_requeued: int = 0
    cancel_finished: int = 0
    skipped: int = 0


class Plain:
    def __init__(self):
        self.job_requeued = 2
        self.skipped = 0


def test_counts_from_a_mapping_a_dataclass_or_an_object():
    assert as_counts(Counter(chunk_requeued=2, skipped=0)) == {"chunk_requeued": 2}
    assert as_counts(SweepResult(chunk_requeued=1, cancel_finished=1)) == {"chunk_requeued": 1, "cancel_finished": 1}
    assert as_counts(Plain()) == {"job_requeued": 2}


def test_summary_of_nothing():
    assert summary({}) == "sweep: re-enqueued 0, finished 0 cancel(s), failed 0 dead-lettered job(s), skipped 0"


def test_summary_of_everything_hides_nothing():
    counts = {
        "job_requeued": 1,
        "chunk_requeued": 2,
        "cancel_finished": 1,
        "cancel_waiting": 2,
        "dlq_job_failed": 1,
        "dlq_unknown": 1,
        "skipped": 3,
        "gone": 1,
        "something_new": 4,
    }
    assert summary(counts) == (
        "sweep: re-enqueued 3 (1 one-chunk jobs, 2 chunks), finished 1 cancel(s) (2 still waiting for a worker),"
        " failed 1 dead-lettered job(s) (1 unreadable letters), skipped 3, 1 gone (deleted meanwhile),"
        " other: something_new 4"
    )
