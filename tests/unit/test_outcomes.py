"""Jobs by outcome are counted where jobs end (the notifier), whichever process ends them, once each."""

from collections import Counter

from jobs.domain import JobStatus
from jobs.errors import RenderError
from jobs.services import job_cancel
from jobs.services.outcomes import CountingNotifier
from tests.fakes import RecordingNotifier, ScriptedRenderer, control
from tests.unit.conftest import drain, make_worker, submit


class Recorded(RecordingNotifier):
    """The notifier behind the counting one, and the metrics it counts into."""

    def __init__(self):
        super().__init__()
        self.finished = Counter()

    def job_finished(self, *, outcome, seconds):
        self.finished[outcome] += 1


def test_every_end_is_counted_once_and_passed_on(repo, queue, clock, store):
    recorded = Recorded()
    notifier = CountingNotifier(recorded, metrics=recorded, clock=clock)
    worker = make_worker(repo, store, clock, notifier=notifier)
    done = submit(repo, queue, clock)  # a one-chunk job: the render loop ends it
    several = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)  # the assembly ends it
    drain(repo, queue, worker)

    def always_fails(job, frame):
        raise RenderError("no")

    failing = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)  # a chunk out of attempts fails the job
    failer = make_worker(
        repo, store, clock, ScriptedRenderer(on_render=always_fails), max_attempts=1, notifier=notifier
    )
    drain(repo, queue, failer)
    queued = submit(repo, queue, clock)
    job_cancel(jobs=control(repo, notifier=notifier), job=repo.get(queued.id), now=clock())

    assert recorded.finished == Counter({"COMPLETED": 2, "FAILED": 1, "CANCELLED": 1})
    assert sorted(recorded.ended) == sorted(
        [
            (done.id, JobStatus.COMPLETED),
            (several.id, JobStatus.COMPLETED),
            (failing.id, JobStatus.FAILED),
            (queued.id, JobStatus.CANCELLED),
        ]
    )
