"""Job control: cancel (at once, or between frames) and retry (only unfinished chunks run again)."""

import pytest

from jobs.domain import JobStatus
from jobs.errors import JobStateConflict, RenderError
from jobs.services import Outcome, chunk_process, job_cancel, job_fanout, job_retry
from tests.fakes import ScriptedRenderer, control, scene_files
from tests.unit.conftest import drain, make_worker, submit

# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_a_queued_job_at_once_and_its_messages_are_dropped(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    cancelled = job_cancel(jobs=control(repo), job=repo.get(job.id), now=clock())
    assert cancelled.status is JobStatus.CANCELLED
    renderer = ScriptedRenderer()
    assert drain(repo, queue, make_worker(repo, store, clock, renderer)) == [Outcome.SKIPPED] * 2
    assert renderer.calls == [] and store.objects == {}
    assert {t.status for t in repo.chunks.list(job.id)} == {JobStatus.CANCELLED}


def test_cancel_while_processing_stops_between_frames(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)

    def cancel_at_frame_3(j, frame):
        if frame == 3:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())

    worker = make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_at_frame_3))
    outcomes = drain(repo, queue, worker)
    assert outcomes == [Outcome.STOPPED, Outcome.SKIPPED]
    final = repo.get(job.id)
    assert final.status is JobStatus.CANCELLED and final.frames_done == 2
    # frame 3 was rendering when cancel came; it is the last object written, nothing after it
    assert sorted(store.objects) == [f"jobs/{job.id}/frames/0000{f}.png" for f in (1, 2, 3)]
    with pytest.raises(JobStateConflict):
        job_cancel(jobs=control(repo), job=final, now=clock())


def test_cancel_a_one_chunk_job_mid_render(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))

    def cancel_at_frame_2(j, frame):
        if frame == 2:
            assert job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock()).status is JobStatus.CANCELLING

    drain(repo, queue, make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_at_frame_2)))
    assert repo.get(job.id).status is JobStatus.CANCELLED


# --- failure and retry ----------------------------------------------------------------------------


def test_a_chunk_out_of_attempts_fails_the_job_and_retry_reruns_only_unfinished_chunks(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 15), chunk_size=5)
    flaky = ScriptedRenderer()

    def chunk_two_always_fails(j, frame):
        if 6 <= frame <= 10:
            raise RenderError(f"bad frame {frame}")

    flaky.on_render = chunk_two_always_fails
    worker = make_worker(repo, store, clock, flaky, max_attempts=2)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    first = queue.chunks.pop(0)
    assert chunk_process(ctx=worker, job_id=job.id, index=first[1], attempt=1)[0] is Outcome.DONE
    assert chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.RETRY
    assert chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.FAILED
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and "chunk 1" in failed.error and "bad frame 6" in failed.error
    assert chunk_process(ctx=worker, job_id=job.id, index=2, attempt=1)[0] is Outcome.SKIPPED
    queue.chunks.clear()

    retried = job_retry(jobs=control(repo, queue), job=failed, now=clock(), scene_files=scene_files())
    assert retried.status is JobStatus.QUEUED and retried.attempt == 2 and retried.error is None
    healthy = ScriptedRenderer()
    drain(repo, queue, make_worker(repo, store, clock, healthy))
    assert sorted(healthy.calls) == list(range(6, 16))  # chunk 0 was not rendered again
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 15
    assert [t.attempt for t in repo.chunks.list(job.id)] == [1, 2, 2]
    # A message of the old attempt that still arrives is ignored.
    assert chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)[0] is Outcome.SKIPPED
    with pytest.raises(JobStateConflict):
        job_retry(jobs=control(repo, queue), job=done, now=clock(), scene_files=scene_files())


def test_retry_of_a_cancelled_one_chunk_job_resumes(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))
    cancelled = job_cancel(jobs=control(repo), job=job, now=clock())
    queue.chunks.clear()
    job_retry(jobs=control(repo, queue), job=cancelled, now=clock(), scene_files=scene_files())
    drain(repo, queue, make_worker(repo, store, clock))
    assert repo.get(job.id).status is JobStatus.COMPLETED


def test_a_multi_chunk_job_cancelled_before_its_fanout_and_retried_renders_every_chunk(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 15), chunk_size=5)
    cancelled = job_cancel(jobs=control(repo), job=job, now=clock())
    assert drain(repo, queue, make_worker(repo, store, clock)) == []  # the late fan-out of attempt 1 is skipped
    assert repo.chunks.list(job.id) == []
    job_retry(jobs=control(repo, queue), job=cancelled, now=clock(), scene_files=scene_files())
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE] * 3
    done = repo.get(job.id)
    assert (done.status, done.attempt, done.frames_done) == (JobStatus.COMPLETED, 2, 15)


def test_a_cancel_met_by_a_chunks_last_write_is_finished_by_that_worker(repo, queue, clock, store):
    """The last write completes the chunk item, its count meets the cancel: no message is left to finish the
    cancel (every chunk was claimed), so the worker whose count was refused finishes it."""
    job = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    first, second = queue.chunks.pop(0), queue.chunks.pop(0)
    assert chunk_process(ctx=make_worker(repo, store, clock), job_id=job.id, index=second[1], attempt=1)[0] is (
        Outcome.DONE
    )

    def cancel_on_the_last_frame(j, frame):
        if frame == 2:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())

    worker = make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_on_the_last_frame))
    assert chunk_process(ctx=worker, job_id=job.id, index=first[1], attempt=1)[0] is Outcome.STOPPED
    assert queue.chunks == [] and repo.get(job.id).status is JobStatus.CANCELLED


def test_a_chunk_whose_last_frame_met_a_cancel_is_kept_by_the_retry(repo, queue, clock, store):
    """The chunk's last frame write applies to the chunk item, and its count on the job is refused (the job
    stopped): the chunk completed, its job did not count it; the retry keeps it and renders the rest."""
    job = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)

    def cancel_on_the_last_frame_of_chunk_0(j, frame):
        if frame == 2:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())

    drain(repo, queue, make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_on_the_last_frame_of_chunk_0)))
    cancelled = repo.get(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.chunks_done == 0
    stopped = repo.chunks.list(job.id)[0]
    assert stopped.status is JobStatus.COMPLETED and stopped.frames_done == 2  # frame 2 recorded on the chunk
    job_retry(jobs=control(repo, queue), job=cancelled, now=clock(), scene_files=scene_files())
    renderer = ScriptedRenderer()
    drain(repo, queue, make_worker(repo, store, clock, renderer))
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 4 and done.chunks_done == 2
    assert renderer.calls == [3, 4]  # chunk 0 was kept
