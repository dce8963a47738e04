"""The sweeper on the fakes: lost messages, dead workers and stuck jobs are found, repaired, or failed with a reason.

The same scenarios run against DynamoDB in tests/integration/test_sweeper.py; here each repair is also
followed through to the job's end with the real services.
"""

import json
from datetime import timedelta

import pytest

from jobs.domain import Failure, JobStatus, Priority
from jobs.errors import RenderError
from jobs.services import Outcome, chunk_process, job_cancel, job_fanout, job_retry, sweep
from tests.conftest import T0
from tests.fakes import FakeWebhooks, ScriptedRenderer, control, scene_files, swept
from tests.unit.conftest import LEASE, RETENTION, drain, make_worker, submit

GRACE = timedelta(minutes=5)
LATER = T0 + timedelta(minutes=10)
DEAD = "dead"  # the lease token of a worker that died holding its chunk
AUDIT = T0 + timedelta(hours=1)  # past every due time these tests set: lease expiries, the running-job audit


def run(repo, queue, now):
    return swept(repo, queue, now=now, grace=GRACE)


def _fanned_out(repo, queue, clock, chunks=2, put=None):
    """A job of `chunks` chunks of two frames with the chunk items `put` (default: all); no message left."""
    job = submit(repo, queue, clock, frames=(1, 2 * chunks), chunk_size=2)
    items = job.new_chunks()
    repo.chunks.put(job, items if put is None else [items[i] for i in put])
    queue.fanouts.clear()
    return job


def _claim(repo, job_id, index, token=DEAD, now=T0, attempt=1):
    return repo.chunks.claim(job_id, index, attempt=attempt, worker="w", token=token, now=now, lease_seconds=LEASE)[1]


def _dies(*args, **kwargs):
    raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs


def _chunk_1_fails(job, frame):
    if frame in (3, 4):
        raise RenderError(f"bad frame {frame}")


def test_a_queued_job_whose_message_was_lost_is_enqueued_again_once(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    queue.chunks.clear()  # the message was lost
    assert run(repo, queue, T0 + timedelta(minutes=1)) == {}  # still within the grace period
    assert run(repo, queue, LATER) == {"job_requeued": 1}
    assert queue.chunks == [(job.id, None, 1, Priority.HIGH)]
    assert run(repo, queue, LATER) == {}  # postponed: not again until the grace period passes once more
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE]


def test_lapsed_chunk_leases_stale_attempts_and_lost_fanouts(repo, queue, clock):
    job = _fanned_out(repo, queue, clock, put=[])
    assert run(repo, queue, LATER) == {"fanout_requeued": 1}  # the fan-out message was lost
    assert queue.fanouts == [(job.id, 1, Priority.HIGH)]
    queue.fanouts.clear()
    repo.chunks.put(job, job.new_chunks())
    _claim(repo, job.id, 0)
    assert run(repo, queue, T0 + timedelta(seconds=30)) == {}  # within the grace period
    assert run(repo, queue, LATER) == {}  # the job was looked at at LATER: not again within a grace period
    # Then its audit finds the dead worker's chunk and the lost message (chunk items have no entry of their own).
    assert run(repo, queue, LATER + GRACE + timedelta(seconds=1)) == {"running": 1, "chunk_requeued": 2}
    assert sorted(c[1] for c in queue.chunks) == [0, 1]


def test_a_cancelling_job_whose_worker_died_is_cancelled(repo, queue, clock):
    job = _fanned_out(repo, queue, clock, put=[0])
    _claim(repo, job.id, 0)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    assert run(repo, queue, T0 + timedelta(seconds=30)) == {}  # within the grace period: the worker may be alive
    done = run(repo, queue, LATER)
    assert done["cancel_finished"] == 1 and done["chunk_dropped"] == 1, done  # and its dead worker's chunk with it
    assert repo.get(job.id).status is JobStatus.CANCELLED
    assert [c.status for c in repo.chunks.list(job.id)] == [JobStatus.CANCELLED]


def test_a_job_cancelled_before_its_fanout_and_retried_gets_all_its_chunks(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 6), chunk_size=2)
    cancelled = job_cancel(jobs=control(repo), job=job, now=clock())
    assert drain(repo, queue, make_worker(repo, store, clock)) == []  # the late fan-out of attempt 1: skipped
    assert repo.chunks.list(job.id) == []
    job_retry(jobs=control(repo, queue), job=cancelled, now=clock(), scene_files=scene_files())
    assert queue.fanouts == [(job.id, 2, Priority.HIGH)]
    queue.fanouts.clear()  # the retry's fan-out message is lost too: the sweeper sends it again
    assert run(repo, queue, LATER) == {"fanout_requeued": 1}
    assert queue.fanouts == [(job.id, 2, Priority.HIGH)]
    queue.fanouts.clear()
    assert job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=2, now=LATER) == 3
    assert sorted(queue.chunks) == [(job.id, i, 2, Priority.HIGH) for i in range(3)]
    assert [(c.index, c.status, c.attempt) for c in repo.chunks.list(job.id)] == [
        (i, JobStatus.QUEUED, 2) for i in range(3)
    ]
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE] * 3
    assert repo.get(job.id).status is JobStatus.COMPLETED


# --- the audit of a running job of several chunks ----------------------------------------------------


def test_audit_fails_a_processing_job_whose_chunks_were_all_cancelled(repo, queue, clock):
    job = _fanned_out(repo, queue, clock)
    chunk = _claim(repo, job.id, 0, token="t")
    repo.chunks.end(chunk, token="t", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + RETENTION)
    assert repo.chunks.drop(job.id, 1, attempt=1, now=T0)
    repo.due[(job.id, None)] = T0 - timedelta(hours=1)  # its audit is long due
    assert run(repo, queue, T0 + timedelta(minutes=1)) == {"job_failed": 1}
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "stalled")
    assert "chunks 0, 1" in failed.error
    assert queue.chunks == [] and queue.fanouts == []


def test_audit_fails_a_processing_job_with_a_failed_chunk_with_its_error(repo, queue, clock, store, monkeypatch):
    job = _fanned_out(repo, queue, clock, chunks=3)
    failing = ScriptedRenderer(on_render=_chunk_1_fails)
    worker = make_worker(repo, store, clock, failing, max_attempts=1)
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1)[0] is Outcome.DONE
    assert chunk_process(ctx=worker, job_id=job.id, index=2, attempt=1)[0] is Outcome.DONE
    monkeypatch.setattr("jobs.services.rendering.job_fail", _dies)  # dies between its chunk and its job
    with pytest.raises(KeyboardInterrupt):
        chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)
    monkeypatch.undo()
    assert repo.get(job.id).status is JobStatus.PROCESSING
    assert run(repo, queue, AUDIT) == {"job_failed": 1}
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code, failed.error) == (
        JobStatus.FAILED,
        "render_failed",
        "chunk 1: bad frame 3",
    )
    assert run(repo, queue, AUDIT + timedelta(hours=1)) == {}  # final: out of the index


@pytest.mark.parametrize("assembler", ["never_ran", "died"])
def test_audit_resends_the_assembly_of_a_job_whose_chunks_are_all_done(
    repo, queue, clock, store, monkeypatch, assembler
):
    job = _fanned_out(repo, queue, clock)
    worker = make_worker(repo, store, clock)
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1)[0] is Outcome.DONE
    if assembler == "died":  # took the assembly lease, then died
        monkeypatch.setattr("jobs.services.rendering.job_assemble", _dies)
        with pytest.raises(KeyboardInterrupt):
            chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)
        assert repo.get(job.id).lease_token is not None
    else:  # died between its last frame and the assembly
        monkeypatch.setattr("jobs.services.rendering._assemble", _dies)
        with pytest.raises(KeyboardInterrupt):
            chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1)
    monkeypatch.undo()
    assert repo.get(job.id).status is JobStatus.PROCESSING
    clock.now = AUDIT
    assert run(repo, queue, AUDIT) == {"assembly_requeued": 1}
    assert queue.chunks == [(job.id, 1, 1, Priority.HIGH)]
    # The chunk message finds its chunk done and runs the assembly again.
    assert drain(repo, queue, make_worker(repo, store, clock, name="w2")) == [Outcome.SKIPPED]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.has_preview
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == [1, 2, 3, 4]


def test_audit_resends_the_fanout_of_a_job_missing_chunk_items(repo, queue, clock, store):
    job = _fanned_out(repo, queue, clock, chunks=3, put=[0, 1])  # its fan-out died between writes
    _claim(repo, job.id, 0)
    clock.now = AUDIT
    assert run(repo, queue, AUDIT) == {"fanout_requeued": 1}
    assert queue.fanouts == [(job.id, 1, Priority.HIGH)] and queue.chunks == []
    # The fan-out adds chunk 2 and sends every chunk's message (it had sent none): chunk 0 is taken over.
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE] * 3
    done = repo.get(job.id)
    assert (done.status, done.frames_done) == (JobStatus.COMPLETED, 6)
    assert [c.status for c in repo.chunks.list(job.id)] == [JobStatus.COMPLETED] * 3


def test_leftover_chunks_of_a_failed_job_are_cancelled(repo, queue, clock, store, monkeypatch):
    job = _fanned_out(repo, queue, clock, chunks=3)
    worker = make_worker(repo, store, clock, ScriptedRenderer(fail_times=10), max_attempts=2)
    assert chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1) == (Outcome.RETRY, 1)  # in its retry delay
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.RETRY, 1)
    # Chunk 0 runs out of attempts and fails the job; its worker dies before stopping the other chunks.
    monkeypatch.setattr("jobs.services.control.stop_idle_chunks", _dies)
    with pytest.raises(KeyboardInterrupt):
        chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1)
    monkeypatch.undo()
    assert repo.get(job.id).status is JobStatus.FAILED
    assert [c.status for c in repo.chunks.list(job.id)] == [
        JobStatus.FAILED,
        JobStatus.PROCESSING,
        JobStatus.QUEUED,
    ]
    assert run(repo, queue, AUDIT) == {"chunk_dropped": 2}
    assert [c.status for c in repo.chunks.list(job.id)] == [
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ]
    assert queue.chunks == [] and queue.fanouts == []
    assert run(repo, queue, AUDIT + timedelta(hours=1)) == {}


def test_a_stopped_job_whose_chunk_failed_is_not_failed_again(repo, queue, clock):
    job = _fanned_out(repo, queue, clock)
    chunk = _claim(repo, job.id, 0, token="t")
    repo.chunks.end(
        chunk, token="t", status=JobStatus.FAILED, now=T0, expires_at=T0 + RETENTION, failure=Failure("x", "y")
    )
    repo.fail(job.id, attempt=1, failure=Failure("render_failed", "chunk 0: y"), now=T0, expires_at=T0 + RETENTION)
    assert run(repo, queue, AUDIT) == {"chunk_dropped": 1}  # chunk 1, left QUEUED
    assert repo.get(job.id).error == "chunk 0: y"


@pytest.mark.parametrize("chunks", [1, 2])
def test_a_marker_overdue_while_its_lease_is_renewed_is_postponed_not_requeued(repo, queue, clock, chunks):
    """Claims, frames and renewals move the lease, not the sweeper's marker (no index write): a marker past its
    grace period for a chunk still rendering is looked at again later; once the lease lapses, it is requeued."""
    if chunks == 1:
        job = submit(repo, queue, clock)
        queue.chunks.clear()
        index = None
    else:
        job = _fanned_out(repo, queue, clock, chunks=2)
        index = 0
    chunk = _claim(repo, job.id, index, token="alive")
    renewed_to = T0 + timedelta(seconds=LEASE + 300)
    repo.chunks.renew(chunk, token="alive", until=renewed_to)  # the marker still says T0 (the put)
    past_marker = T0 + GRACE + timedelta(seconds=1)
    # A one-chunk job's item is its chunk: its lease is alive. A job of chunks is audited: it runs (its other
    # chunk's lost message is sent again).
    assert run(repo, queue, past_marker)["lease_alive" if chunks == 1 else "running"] == 1
    assert (job.id, index, 1, Priority.HIGH) not in queue.chunks
    done = run(repo, queue, renewed_to + GRACE)
    assert done["chunk_requeued" if index == 0 else "job_requeued"] >= 1 and "lease_alive" not in done
    assert (job.id, index, 1, Priority.HIGH) in queue.chunks


def test_each_item_the_sweeper_acts_on_is_logged_within_its_job_chunk_and_attempt(repo, queue, clock, caplog):
    """Operators grep a job's id: the sweeper's lines about it carry it (the command binds logs.within)."""
    import logging

    from jobs.adapters import logs

    job = _fanned_out(repo, queue, clock)
    _claim(repo, job.id, 1)  # its worker dies holding chunk 1; chunk 0's message was lost
    queue.chunks.clear()
    caplog.handler.addFilter(logs.ContextFilter())
    before = logs.current()
    with caplog.at_level(logging.INFO, "jobs.services.sweeper"):
        sweep(
            jobs=control(repo, queue),
            now=AUDIT,
            queued_grace=GRACE,
            log_context=logs.within,
            hooks=FakeWebhooks(),
        )
    about = {
        (getattr(r, "chunk", None), getattr(r, "attempt", None), r.getMessage())
        for r in caplog.records
        if getattr(r, "job_id", None) == job.id
    }
    assert (0, 1, "sweep: overdue QUEUED chunk: chunk_requeued") in about
    assert (1, 1, "sweep: overdue PROCESSING chunk: chunk_requeued") in about
    assert logs.current() == before  # each item's fields are unbound after it
