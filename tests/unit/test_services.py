"""Use cases on the in-memory fakes: submit, claim, render, fail, and the guarantees around them."""

import json
from datetime import timedelta

import pytest

from jobs.domain import JobStatus, OutputFormat, Priority, Scene
from jobs.errors import JobNotFound, JobStateConflict, ServiceUnavailable
from jobs.selectors import job_get, job_result_links
from jobs.services import job_claim, job_create, job_record_failure, job_render
from tests.conftest import T0
from tests.fakes import FakeResultStore, FakeTaskQueue, InMemoryJobRepository, ScriptedRenderer

LEASE = 60
RETENTION = timedelta(days=1)


@pytest.fixture
def repo():
    return InMemoryJobRepository()


def create(repo, queue, frames=(1, 1)):
    return job_create(
        repo=repo,
        queue=queue,
        owner="alice",
        scene=Scene(name="shot", width=64, height=32, output_format=OutputFormat.PNG, samples=8),
        frame_start=frames[0],
        frame_end=frames[1],
        priority=Priority.HIGH,
        now=T0,
    )


def claim(repo, job, *, now=T0, worker="w1"):
    return job_claim(repo=repo, job_id=job.id, attempt=job.attempt, worker=worker, lease_seconds=LEASE, now=now)


def render(repo, store, renderer, job, token, now=T0):
    return job_render(
        repo=repo, store=store, renderer=renderer, job=job, token=token, clock=lambda: now, retention=RETENTION
    )


def test_create_stores_a_queued_job_and_sends_one_message(repo):
    queue = FakeTaskQueue()
    job = create(repo, queue)
    assert repo.get(job.id).status is JobStatus.QUEUED
    assert queue.sent == [(job.id, 1, Priority.HIGH)]


def test_create_with_the_queue_down_withdraws_the_job_and_raises_503(repo):
    with pytest.raises(ServiceUnavailable):
        create(repo, FakeTaskQueue(down=True))
    assert repo.jobs == {}


def test_a_second_claim_of_a_live_job_loses(repo):
    job = create(repo, FakeTaskQueue())
    assert claim(repo, job) is not None
    assert claim(repo, job, now=T0 + timedelta(seconds=LEASE - 1), worker="w2") is None


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_cannot_complete(repo):
    store, renderer = FakeResultStore(), ScriptedRenderer()
    job = create(repo, FakeTaskQueue())
    _, old_token = claim(repo, job)
    later = T0 + timedelta(seconds=LEASE + 1)
    taken, new_token = claim(repo, job, now=later, worker="w2")
    assert taken.worker == "w2"
    done = render(repo, store, renderer, taken, new_token, now=later)
    assert done.status is JobStatus.COMPLETED
    with pytest.raises(JobStateConflict):
        render(repo, store, renderer, job, old_token, now=later)
    assert repo.get(job.id).status is JobStatus.COMPLETED


def test_completed_job_cannot_be_claimed_again(repo):
    job = create(repo, FakeTaskQueue())
    claimed, token = claim(repo, job)
    render(repo, FakeResultStore(), ScriptedRenderer(), claimed, token)
    assert claim(repo, job, now=T0 + timedelta(hours=1)) is None


def test_claim_of_another_attempt_loses(repo):
    job = create(repo, FakeTaskQueue())
    assert job_claim(repo=repo, job_id=job.id, attempt=2, worker="w", lease_seconds=LEASE, now=T0) is None


def test_one_frame_job_keeps_its_result_on_the_item(repo):
    store = FakeResultStore()
    job = create(repo, FakeTaskQueue())
    claimed, token = claim(repo, job)
    done = render(repo, store, ScriptedRenderer(), claimed, token)
    assert done.result.key == f"jobs/{job.id}/frames/00001.png"
    assert done.frames_done == 1
    assert list(store.objects) == [done.result.key]  # no manifest: one PUT only


def test_multi_frame_job_writes_frames_and_a_manifest_with_checksums(repo):
    store, renderer = FakeResultStore(), ScriptedRenderer()
    job = create(repo, FakeTaskQueue(), frames=(3, 5))
    seen_progress = []
    renderer.on_render = lambda j, f: seen_progress.append(repo.get(j.id).frames_done)
    claimed, token = claim(repo, job)
    done = render(repo, store, renderer, claimed, token)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 3
    assert seen_progress == [0, 1, 2]
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == [3, 4, 5]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["frames"])
    links = job_result_links(store=store, job=done, expires_in=60)
    assert links["manifest_url"].endswith("manifest.json?signed")
    assert [f["frame"] for f in links["frames"]] == [3, 4, 5]


def test_failures_release_the_lease_then_fail_the_job_after_max_attempts(repo):
    job = create(repo, FakeTaskQueue())
    now = T0
    for attempt in (1, 2, 3):
        claimed, token = claim(repo, job, now=now)
        with pytest.raises(RuntimeError):
            render(repo, FakeResultStore(), ScriptedRenderer(fail_times=1), claimed, token)
        after = job_record_failure(
            repo=repo, job=claimed, token=token, error="boom", max_attempts=3, now=now, retention=RETENTION
        )
        expected = JobStatus.FAILED if attempt == 3 else JobStatus.PROCESSING
        assert after.status is expected
        assert after.render_failures == attempt
        now += timedelta(seconds=1)  # the retry claims right away: the lease was released
    assert repo.get(job.id).error == "boom"
    assert claim(repo, job, now=now + timedelta(hours=1)) is None


def test_results_are_hidden_until_completed_and_other_owners_get_404(repo):
    job = create(repo, FakeTaskQueue())
    assert job_result_links(store=FakeResultStore(), job=job, expires_in=60) is None
    with pytest.raises(JobNotFound):
        job_get(repo=repo, owner="mallory", job_id=job.id)
