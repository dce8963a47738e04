"""Frames recorded in batches (services/progress.py): what waits, what is kept when a chunk stops early."""

import secrets

import pytest

from jobs.domain import FrameResult, JobStatus
from jobs.errors import JobNotRunning, LeaseLost
from jobs.services import Outcome, chunk_process, job_cancel, job_fanout
from jobs.services.progress import ChunkProgress
from tests.fakes import RecordingNotifier, ScriptedRenderer, control
from tests.unit.conftest import LEASE, make_worker, submit


def _result(frame: int) -> FrameResult:
    return FrameResult(frame=frame, key=f"k{frame}", size=1, sha256="0" * 64, content_type="image/png")


def _claimed(repo, queue, clock, store, *, frames=(1, 10), chunk_size=5, progress_seconds=100.0):
    job = submit(repo, queue, clock, frames=frames, chunk_size=chunk_size)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    ctx = make_worker(repo, store, clock, progress_seconds=progress_seconds)
    token = secrets.token_hex(4)
    _, chunk = repo.chunks.claim(job.id, 0, attempt=1, worker="w", token=token, now=clock(), lease_seconds=LEASE)
    return job, ctx, ChunkProgress(ctx, chunk, token=token, claimed_at=clock())


def test_frames_wait_until_a_write_is_due_then_one_write_records_them_all(repo, queue, clock, store):
    job, _, progress = _claimed(repo, queue, clock, store, progress_seconds=2.0)
    assert not progress.add(_result(1), 0.5)
    clock.advance(1)
    assert not progress.add(_result(2), 0.5)
    assert repo.chunks.list(job.id)[0].frames_done == 0 and progress.frames_rendered == 2
    clock.advance(1)
    assert progress.add(_result(3), 0.5)  # two seconds since the claim: frames 1-3 in one write
    stored = repo.chunks.list(job.id)[0]
    assert stored.frames_done == 3 and [r.frame for r in stored.results] == [1, 2, 3]
    assert stored.render_seconds == 1.5 and repo.get(job.id).frames_done == 3  # published on the job
    assert not progress.add(_result(4), 0.5)
    assert progress.add(_result(5), 0.5)  # the chunk's last frame is written at once
    assert repo.chunks.list(job.id)[0].status is JobStatus.COMPLETED


def test_the_lease_keeper_records_waiting_frames_or_renews_the_lease_alone(repo, queue, clock, store):
    job, ctx, progress = _claimed(repo, queue, clock, store)
    clock.advance(LEASE - 1)
    progress.keep_alive()  # nothing waits: a renewal
    renewed = repo.chunks.list(job.id)[0]
    assert renewed.frames_done == 0 and renewed.lease_expires_at == ctx.lease_until()
    progress.add(_result(1), 1.0)
    progress.keep_alive()  # a frame waits: recorded, which renews the lease too
    assert repo.chunks.list(job.id)[0].frames_done == 1 and repo.get(job.id).frames_done == 1


def test_a_refusal_met_by_the_keeper_is_raised_to_the_render_loop(repo, queue, clock, store):
    job, _, progress = _claimed(repo, queue, clock, store)
    progress.add(_result(1), 1.0)
    job_cancel(jobs=control(repo), job=repo.get(job.id), now=clock())
    with pytest.raises(JobNotRunning):
        progress.keep_alive()  # the job refused the write (the chunk item with it: one transaction)
    with pytest.raises(JobNotRunning):  # and so does every later call, whichever thread makes it
        progress.add(_result(2), 1.0)
    with pytest.raises(JobNotRunning):
        progress.raise_refusal()


def test_a_lost_lease_is_kept_as_the_refusal(repo, queue, clock, store):
    job, _, progress = _claimed(repo, queue, clock, store)
    clock.advance(LEASE + 1)
    repo.chunks.claim(job.id, 0, attempt=1, worker="other", token="theirs", now=clock(), lease_seconds=LEASE)
    with pytest.raises(LeaseLost):
        progress.keep_alive()
    with pytest.raises(LeaseLost):
        progress.flush()


def test_a_failed_frame_keeps_the_frames_waiting_before_it_for_the_retry(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    failing = ScriptedRenderer()
    failing.on_render = lambda j, f: setattr(failing, "fail_times", 1) if f == 3 else None
    worker = make_worker(repo, store, clock, failing, progress_seconds=100.0)
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.RETRY, 1)
    assert repo.chunks.list(job.id)[0].frames_done == 2  # frames 1 and 2 were recorded before the release
    again = ScriptedRenderer()
    assert chunk_process(ctx=make_worker(repo, store, clock, again), job_id=job.id, index=0, attempt=1)[0] is (
        Outcome.DONE
    )
    assert again.calls == [3, 4, 5]


def _quick_retries(monkeypatch):
    monkeypatch.setattr("jobs.services.progress.time.sleep", lambda seconds: None)


def test_a_write_whose_response_was_lost_is_tried_again_as_the_same_write(repo, queue, clock, store, monkeypatch):
    """The last write of a one-chunk job applied but its response was lost: the retry (same write id) counts
    as done, and the job ends COMPLETED with its preview, told to the notifier once."""
    _quick_retries(monkeypatch)
    job = submit(repo, queue, clock, frames=(1, 3))
    queue.chunks.clear()
    notes = RecordingNotifier()
    repo.chunks.lost_responses = 1
    worker = make_worker(repo, store, clock, notifier=notes, progress_seconds=100.0)
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1)[0] is Outcome.DONE
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 3 and done.has_preview
    assert notes.ended == [(job.id, JobStatus.COMPLETED)]


@pytest.mark.parametrize("index", [None, 0], ids=["one_chunk", "chunk_item"])
def test_a_last_write_that_keeps_failing_is_recorded_by_the_flush_and_the_chunk_completes(
    repo, queue, clock, store, monkeypatch, index
):
    """AWS unreachable for every try of the last write, then back: the flush on the error path records it,
    and the chunk ends as completed (not as a failed render of a finished chunk)."""
    _quick_retries(monkeypatch)
    job = submit(repo, queue, clock, frames=(1, 3) if index is None else (1, 6), chunk_size=3)
    if index is not None:
        job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    queue.chunks.clear()
    notes = RecordingNotifier()
    repo.chunks.failing_writes = 3  # every try of the one write (the last frame's: progress_seconds is long)
    worker = make_worker(repo, store, clock, notifier=notes, progress_seconds=100.0)
    assert chunk_process(ctx=worker, job_id=job.id, index=index, attempt=1) == (Outcome.DONE, 0)
    chunk = repo.chunks.get(job.id, index)
    assert chunk.status is JobStatus.COMPLETED and chunk.render_failures == 0
    if index is None:
        assert notes.ended == [(job.id, JobStatus.COMPLETED)] and repo.get(job.id).has_preview


def test_a_shutdown_that_meets_a_cancel_ends_the_chunk_cancelled(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    rendered = ScriptedRenderer()
    grace = {"left": None}

    def cancel_then_sigterm(j, frame):
        if frame == 2:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())
            grace["left"] = 0.0

    rendered.on_render = cancel_then_sigterm
    leaving = make_worker(repo, store, clock, rendered, grace_left=lambda: grace["left"], progress_seconds=100.0)
    assert chunk_process(ctx=leaving, job_id=job.id, index=0, attempt=1) == (Outcome.STOPPED, 0)
    assert repo.chunks.list(job.id)[0].status is JobStatus.CANCELLED
    assert repo.get(job.id).status is JobStatus.CANCELLED  # no other chunk holds a lease: the cancel finished


def test_a_last_write_that_applied_while_every_try_failed_is_recognised_by_the_flush(
    repo, queue, clock, store, monkeypatch
):
    """The first try applied but its response was lost, and the two retries never reached DynamoDB: the error
    path's flush writes the same batch with the same write id, so it counts as done, not as a lost lease."""
    _quick_retries(monkeypatch)
    job = submit(repo, queue, clock, frames=(1, 3))
    queue.chunks.clear()
    notes = RecordingNotifier()
    repo.chunks.lost_responses = 1

    def unreachable_after_one(original=repo.chunks.record_frames, calls=[]):  # noqa: B006 - a call counter
        def record(chunk, **kwargs):
            calls.append(1)
            if len(calls) in (2, 3):
                raise ConnectionError("DynamoDB is unreachable")
            return original(chunk, **kwargs)

        return record

    monkeypatch.setattr(repo.chunks, "record_frames", unreachable_after_one())
    worker = make_worker(repo, store, clock, notifier=notes, progress_seconds=100.0)
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1) == (Outcome.DONE, 0)
    assert repo.get(job.id).status is JobStatus.COMPLETED and notes.ended == [(job.id, JobStatus.COMPLETED)]


def test_worker_seconds_run_from_the_claim_to_each_write_and_the_first_frame_is_noted(repo, queue, clock, store):
    """A chunk's worker-seconds are its holder's wall time from the claim to its last write (start-up
    included), counted on the chunk and the job, and charged to the owner's month when the job ends; the
    holder's first frame is noted apart."""
    job, _, progress = _claimed(repo, queue, clock, store, progress_seconds=2.0)
    clock.advance(3)  # the renderer starting
    assert progress.add(_result(1), 3.5)  # due: three seconds since the claim
    clock.advance(2)
    for frame in (2, 3, 4):
        progress.add(_result(frame), 0.5)
    clock.advance(1)
    assert progress.add(_result(5), 0.5)
    stored = repo.chunks.list(job.id)[0]
    assert (stored.worker_seconds, stored.first_frame_seconds, stored.render_seconds) == (6.0, 3.5, 5.5)
    assert repo.get(job.id).worker_seconds == 6.0
    month = clock().strftime("%Y-%m")
    assert repo.spend(job.owner, month=month).worker_seconds == 0.0  # charged once the job ends
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=clock())
    repo.transition(job.id, attempt=1, source=JobStatus.CANCELLING, target=JobStatus.CANCELLED, now=clock())
    assert repo.spend(job.owner, month=month).worker_seconds == 6.0
