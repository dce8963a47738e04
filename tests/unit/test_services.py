"""Use cases on the in-memory fakes: submit, fan-out, render, assemble, cancel, retry, and their guarantees."""

import json
from datetime import timedelta

import pytest

from jobs.domain import JobStatus, OutputFormat, Priority, Scene
from jobs.errors import IdempotencyKeyReused, JobNotFound, JobStateConflict, ServiceUnavailable
from jobs.selectors import job_get, job_result_links, job_tasks
from jobs.services import JobSpec, Outcome, Worker, chunk_process, job_cancel, job_create, job_fanout, job_retry
from tests.conftest import T0
from tests.fakes import FakeResultStore, FakeTaskQueue, InMemoryJobRepository, ScriptedRenderer

LEASE = 60
RETENTION = timedelta(days=1)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def repo():
    return InMemoryJobRepository()


@pytest.fixture
def queue():
    return FakeTaskQueue()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return FakeResultStore()


def make_worker(repo, store, clock, renderer=None, name="w1", max_attempts=3):
    return Worker(
        repo=repo,
        store=store,
        renderer=renderer or ScriptedRenderer(),
        clock=clock,
        name=name,
        lease_seconds=LEASE,
        max_attempts=max_attempts,
        retention=RETENTION,
    )


def spec(frames=(1, 1), chunk_size=5, priority=Priority.HIGH, name="shot"):
    scene = Scene(name=name, width=64, height=32, output_format=OutputFormat.PNG, samples=8)
    return JobSpec(scene=scene, frame_start=frames[0], frame_end=frames[1], chunk_size=chunk_size, priority=priority)


def submit(repo, queue, clock, key=None, **kwargs):
    job, _ = job_create(repo=repo, queue=queue, owner="alice", spec=spec(**kwargs), idempotency_key=key, now=clock())
    return job


def drain(repo, queue, worker, limit=1000):
    """Deliver every queued message (fan-outs first, as SQS would soon after) until none are left."""
    outcomes = []
    for _ in range(limit):
        if queue.fanouts:
            job_id, attempt, _ = queue.fanouts.pop(0)
            job_fanout(repo=repo, queue=queue, job_id=job_id, attempt=attempt, now=worker.clock())
        elif queue.chunks:
            job_id, index, attempt, _ = queue.chunks.pop(0)
            outcomes.append(chunk_process(worker=worker, job_id=job_id, index=index, attempt=attempt)[0])
        else:
            return outcomes
    raise AssertionError("queue never drained")


# --- submit -------------------------------------------------------------------------------------


def test_a_one_chunk_job_is_one_message_and_a_bigger_one_is_fanned_out(repo, queue, clock):
    one = submit(repo, queue, clock, frames=(1, 5))
    many = submit(repo, queue, clock, frames=(1, 24))
    assert queue.chunks == [(one.id, None, 1, Priority.HIGH)]
    assert queue.fanouts == [(many.id, 1, Priority.HIGH)]
    assert repo.tasks(many.id) == []  # off the request path


def test_the_queue_down_withdraws_the_job_and_raises_503(repo, clock):
    with pytest.raises(ServiceUnavailable):
        submit(repo, FakeTaskQueue(down=True), clock, key="k1")
    assert repo.jobs == {} and repo.idempotency == {}


def test_idempotent_submit_returns_the_original_job(repo, queue, clock):
    first, replayed = job_create(repo=repo, queue=queue, owner="alice", spec=spec(), idempotency_key="k", now=clock())
    again, replayed_again = job_create(
        repo=repo, queue=queue, owner="alice", spec=spec(), idempotency_key="k", now=clock()
    )
    assert (again.id, replayed, replayed_again) == (first.id, False, True)
    assert len(repo.jobs) == 1 and len(queue.chunks) == 1
    with pytest.raises(IdempotencyKeyReused):
        job_create(repo=repo, queue=queue, owner="alice", spec=spec(name="other"), idempotency_key="k", now=clock())
    other_owner, _ = job_create(repo=repo, queue=queue, owner="bob", spec=spec(), idempotency_key="k", now=clock())
    assert other_owner.id != first.id  # keys are per owner
    clock.advance(25 * 3600)
    later, replayed = job_create(repo=repo, queue=queue, owner="alice", spec=spec(), idempotency_key="k", now=clock())
    assert later.id != first.id and not replayed  # the record expired


# --- one-chunk jobs -------------------------------------------------------------------------------


def test_one_frame_job_renders_once_and_keeps_its_result_on_the_item(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker = make_worker(repo, store, clock)
    assert drain(repo, queue, worker) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 1 and not done.has_preview
    assert list(store.objects) == [f"jobs/{job.id}/frames/00001.png"]  # one PUT: no manifest, no preview
    assert chunk_process(worker=worker, job_id=job.id, index=None, attempt=1)[0] is Outcome.SKIPPED


def test_a_lapsed_lease_is_taken_over_resuming_and_the_old_holder_is_fenced(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 4))
    dying = ScriptedRenderer()

    def die_on_third_frame(j, frame):
        if frame == 3:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs

    dying.on_render = die_on_third_frame
    with pytest.raises(KeyboardInterrupt):
        chunk_process(worker=make_worker(repo, store, clock, dying), job_id=job.id, index=None, attempt=1)
    assert repo.get(job.id).frames_done == 2
    assert (
        chunk_process(worker=make_worker(repo, store, clock, name="w2"), job_id=job.id, index=None, attempt=1)[0]
        is Outcome.SKIPPED
    )  # lease still live
    clock.advance(LEASE + 1)
    rescuer = ScriptedRenderer()
    assert (
        chunk_process(worker=make_worker(repo, store, clock, rescuer, name="w2"), job_id=job.id, index=None, attempt=1)[
            0
        ]
        is Outcome.DONE
    )
    assert rescuer.calls == [3, 4]  # resumed, not redone
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and [r.frame for r in done.results] == [1, 2, 3, 4]
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == [1, 2, 3, 4]
    assert done.has_preview and store.objects[f"jobs/{job.id}/preview.png"].startswith(b"\x89PNG")


def test_render_failures_retry_then_fail_with_the_error(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker = make_worker(repo, store, clock, ScriptedRenderer(fail_times=10))
    for expected in ((Outcome.RETRY, 1), (Outcome.RETRY, 2), (Outcome.FAILED, 3)):
        assert chunk_process(worker=worker, job_id=job.id, index=None, attempt=1) == expected
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and "boom" in failed.error and failed.render_failures == 3


# --- multi-chunk jobs -----------------------------------------------------------------------------


def test_chunks_complete_the_job_once_with_manifest_preview_and_progress(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 12), chunk_size=5)
    seen = []
    renderer = ScriptedRenderer(on_render=lambda j, f: seen.append(repo.get(j.id).frames_done))
    assert drain(repo, queue, make_worker(repo, store, clock, renderer)) == [Outcome.DONE] * 3
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 12 and done.chunks_done == 3
    assert seen == list(range(12))  # progress moved frame by frame
    tasks = repo.tasks(job.id)
    assert [(t.frame_start, t.frame_end, t.status) for t in tasks] == [
        (1, 5, JobStatus.COMPLETED),
        (6, 10, JobStatus.COMPLETED),
        (11, 12, JobStatus.COMPLETED),
    ]
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == list(range(1, 13))
    assert done.has_preview
    links = job_result_links(store=store, job=done, expires_in=60, offset=10, limit=5)
    assert [f["frame"] for f in links["frames"]] == [11, 12] and links["frames_next_offset"] is None
    assert links["preview_url"].endswith("preview.png?signed")


def test_assembly_runs_once_even_when_two_workers_try(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)
    drain(repo, queue, make_worker(repo, store, clock))
    puts = store.puts
    # A redelivered message of a finished chunk tries the assembly again: the job is COMPLETED, so no.
    assert (
        chunk_process(worker=make_worker(repo, store, clock, name="w2"), job_id=job.id, index=1, attempt=1)[0]
        is Outcome.SKIPPED
    )
    assert store.puts == puts and repo.get(job.id).status is JobStatus.COMPLETED
    with pytest.raises(JobStateConflict):
        repo.begin_assembly(job.id, attempt=1, worker="w3", token="t", now=clock(), lease_seconds=LEASE)


def test_fanout_is_idempotent(repo, queue, clock):
    job = submit(repo, queue, clock, frames=(1, 120), chunk_size=5)
    queue.fanouts.clear()
    assert job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock()) == 24
    assert job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock()) == 0
    assert [c[1] for c in queue.chunks] == list(range(24))
    assert len(repo.tasks(job.id)) == 24


def test_fanout_that_died_after_a_send_resends_only_that_batch(repo, queue, clock):
    job = submit(repo, queue, clock, frames=(1, 60), chunk_size=5)
    queue.fanouts.clear()
    real_advance = repo.advance_fanout
    calls = []

    def dies_on_second_advance(job_id, **kw):
        calls.append(kw)
        if len(calls) == 2:
            raise SystemExit("worker died")
        return real_advance(job_id, **kw)

    repo.advance_fanout = dies_on_second_advance
    with pytest.raises(SystemExit):
        job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock())
    repo.advance_fanout = real_advance
    job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock())
    indexes = [c[1] for c in queue.chunks]
    assert sorted(set(indexes)) == list(range(12))
    assert len(indexes) == 12 + 2  # chunks 10 and 11 went out twice; their duplicates lose the claim


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_a_queued_job_at_once_and_its_messages_are_dropped(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    cancelled = job_cancel(repo=repo, job=repo.get(job.id), now=clock(), retention=RETENTION)
    assert cancelled.status is JobStatus.CANCELLED
    renderer = ScriptedRenderer()
    assert drain(repo, queue, make_worker(repo, store, clock, renderer)) == [Outcome.SKIPPED] * 2
    assert renderer.calls == [] and store.objects == {}
    assert {t.status for t in repo.tasks(job.id)} == {JobStatus.CANCELLED}


def test_cancel_while_processing_stops_between_frames(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)

    def cancel_at_frame_3(j, frame):
        if frame == 3:
            job_cancel(repo=repo, job=repo.get(j.id), now=clock(), retention=RETENTION)

    worker = make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_at_frame_3))
    outcomes = drain(repo, queue, worker)
    assert outcomes == [Outcome.STOPPED, Outcome.SKIPPED]
    final = repo.get(job.id)
    assert final.status is JobStatus.CANCELLED and final.frames_done == 2
    # frame 3 was rendering when cancel came; it is the last object written, nothing after it
    assert sorted(store.objects) == [f"jobs/{job.id}/frames/0000{f}.png" for f in (1, 2, 3)]
    with pytest.raises(JobStateConflict):
        job_cancel(repo=repo, job=final, now=clock(), retention=RETENTION)


def test_cancel_a_one_chunk_job_mid_render(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))

    def cancel_at_frame_2(j, frame):
        if frame == 2:
            assert (
                job_cancel(repo=repo, job=repo.get(j.id), now=clock(), retention=RETENTION).status
                is JobStatus.CANCELLING
            )

    drain(repo, queue, make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_at_frame_2)))
    assert repo.get(job.id).status is JobStatus.CANCELLED


# --- failure and retry ----------------------------------------------------------------------------


def test_a_chunk_out_of_attempts_fails_the_job_and_retry_reruns_only_unfinished_chunks(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 15), chunk_size=5)
    flaky = ScriptedRenderer()

    def chunk_two_always_fails(j, frame):
        if 6 <= frame <= 10:
            raise RuntimeError(f"bad frame {frame}")

    flaky.on_render = chunk_two_always_fails
    worker = make_worker(repo, store, clock, flaky, max_attempts=2)
    job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    first = queue.chunks.pop(0)
    assert chunk_process(worker=worker, job_id=job.id, index=first[1], attempt=1)[0] is Outcome.DONE
    assert chunk_process(worker=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.RETRY
    assert chunk_process(worker=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.FAILED
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and "chunk 1" in failed.error and "bad frame 6" in failed.error
    assert chunk_process(worker=worker, job_id=job.id, index=2, attempt=1)[0] is Outcome.SKIPPED
    queue.chunks.clear()

    retried = job_retry(repo=repo, queue=queue, job=failed, now=clock())
    assert retried.status is JobStatus.QUEUED and retried.attempt == 2 and retried.error is None
    healthy = ScriptedRenderer()
    drain(repo, queue, make_worker(repo, store, clock, healthy))
    assert sorted(healthy.calls) == list(range(6, 16))  # chunk 0 was not rendered again
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 15
    assert [t.attempt for t in repo.tasks(job.id)] == [1, 2, 2]
    # A message of the old attempt that still arrives is ignored.
    assert chunk_process(worker=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.SKIPPED
    with pytest.raises(JobStateConflict):
        job_retry(repo=repo, queue=queue, job=done, now=clock())


def test_retry_of_a_cancelled_one_chunk_job_resumes(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))
    cancelled = job_cancel(repo=repo, job=job, now=clock(), retention=RETENTION)
    queue.chunks.clear()
    job_retry(repo=repo, queue=queue, job=cancelled, now=clock())
    drain(repo, queue, make_worker(repo, store, clock))
    assert repo.get(job.id).status is JobStatus.COMPLETED


# --- reads ----------------------------------------------------------------------------------------


def test_eta_from_the_measured_rate_and_tasks_of_a_one_chunk_job(repo, queue, clock, store, make_job):
    job = make_job(frame_start=1, frame_end=10).replace(status=JobStatus.PROCESSING, started_at=T0, frames_done=4)
    assert job.eta_seconds(T0 + timedelta(seconds=8)) == 12.0
    assert job.replace(frames_done=0).eta_seconds(T0) is None
    single = submit(repo, queue, clock, frames=(1, 3))
    page = job_tasks(repo=repo, job=single, cursor=None, limit=10)
    assert [(t.index, t.frame_start, t.frame_end) for t in page.tasks] == [(0, 1, 3)]


def test_other_owners_get_404(repo, queue, clock):
    job = submit(repo, queue, clock)
    with pytest.raises(JobNotFound):
        job_get(repo=repo, owner="mallory", job_id=job.id)


def test_shutdown_releases_a_chunk_that_will_not_fit_in_the_grace_period(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(repo=repo, queue=queue, job_id=job.id, attempt=1, now=clock())
    rendered = ScriptedRenderer()
    grace = {"left": None}
    rendered.on_render = lambda j, f: grace.update(left=0.0) if f == 2 else None  # SIGTERM during frame 2
    leaving = Worker(
        repo=repo,
        store=store,
        renderer=rendered,
        clock=clock,
        name="leaving",
        lease_seconds=LEASE,
        max_attempts=3,
        retention=RETENTION,
        grace_left=lambda: grace["left"],
    )
    assert chunk_process(worker=leaving, job_id=job.id, index=0, attempt=1) == (Outcome.RELEASED, 0)
    assert rendered.calls == [1, 2]
    task = repo.tasks(job.id)[0]
    assert task.status is JobStatus.PROCESSING and task.frames_done == 2 and task.lease_token is None
    staying = ScriptedRenderer()
    assert (
        chunk_process(
            worker=make_worker(repo, store, clock, staying, name="staying"), job_id=job.id, index=0, attempt=1
        )[0]
        is Outcome.DONE
    )  # claimed at once: the lease was released
    assert staying.calls == [3, 4, 5]


def test_shutdown_with_enough_grace_finishes_the_chunk(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))
    worker = Worker(
        repo=repo,
        store=store,
        renderer=ScriptedRenderer(),
        clock=clock,
        name="w",
        lease_seconds=LEASE,
        max_attempts=3,
        retention=RETENTION,
        grace_left=lambda: 60.0,
    )
    queue.chunks.clear()
    # No frame timed yet in this run: with no estimate the chunk is handed back at once.
    assert chunk_process(worker=worker, job_id=job.id, index=None, attempt=1)[0] is Outcome.RELEASED
    roomy = Worker(
        repo=repo,
        store=store,
        renderer=ScriptedRenderer(),
        clock=clock,
        name="w2",
        lease_seconds=LEASE,
        max_attempts=3,
        retention=RETENTION,
        grace_left=lambda: None if not repo.get(job.id).frames_done else 60.0,
    )
    assert chunk_process(worker=roomy, job_id=job.id, index=None, attempt=1)[0] is Outcome.DONE
