"""The sweeper against DynamoDB: it finds overdue work through gsi2 and acts on each item once."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from jobs.adapters import aws
from jobs.domain import Failure, FrameResult, JobStatus, Priority
from jobs.services import job_cancel, job_fanout, job_retry
from tests.conftest import T0
from tests.fakes import FakeTaskQueue, control, scene_files, swept

GRACE = timedelta(minutes=5)
RETENTION = timedelta(days=1)
LATER = T0 + timedelta(minutes=10)
AUDIT = T0 + timedelta(hours=1)  # past every due time these tests set: lease expiries, the running-job audit
LEASE = 60
TOKEN = "t"


def run(repo, queue, now=LATER):
    return swept(repo, queue, now=now, grace=GRACE)


def _job(repo, make_job, *, chunks=2, put=None):
    """A job of `chunks` chunks of two frames, with the chunk items `put` (default: all) created."""
    job = make_job(frame_start=1, frame_end=2 * chunks, chunk_size=2)
    repo.add(job)
    items = job.new_chunks()
    repo.chunks.put(job, items if put is None else [items[i] for i in put])
    return job


def _claim(repo, job_id, index, token=TOKEN, now=T0, attempt=1):
    return repo.chunks.claim(job_id, index, attempt=attempt, worker="w", token=token, now=now, lease_seconds=LEASE)[1]


def _finish(repo, job_id, index, token=TOKEN):
    chunk = _claim(repo, job_id, index, token=token)
    for frame in chunk.frames:
        result = FrameResult(frame=frame, key=f"k{frame}", size=1, sha256="0" * 64, content_type="image/png")
        chunk = repo.chunks.record_frames(
            chunk,
            token=token,
            results=[result],
            render_seconds=0.1,
            now=T0,
            lease_until=T0 + timedelta(seconds=LEASE),
        )
    assert chunk.status is JobStatus.COMPLETED


def _make_due(table, job_id):
    """Move the job item's gsi2 entry into the past, as if its audit had been due for long."""
    aws.client("dynamodb").update_item(
        TableName=table,
        Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET gsi2sk = :due",
        ExpressionAttributeValues={":due": {"S": f"2000-01-01T00:00:00.000000+00:00#{job_id}"}},
    )


def test_a_queued_job_whose_message_was_lost_is_enqueued_again_once(dynamo_repo, make_job):
    job = make_job()
    dynamo_repo.add(job)  # as if the API wrote the item and then could not reach SQS
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(minutes=1)) == {}  # still within the grace period
    assert run(dynamo_repo, queue) == {"job_requeued": 1}
    assert queue.chunks == [(job.id, None, 1, Priority.NORMAL)]
    assert run(dynamo_repo, queue) == {}  # postponed: not again until the grace period passes once more


def test_concurrent_sweeps_act_on_each_item_once(dynamo_repo, make_job):
    jobs = [make_job() for _ in range(12)]
    for job in jobs:
        dynamo_repo.add(job)
    queue = FakeTaskQueue()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: run(dynamo_repo, queue), range(3)))
    assert sorted(c[0] for c in queue.chunks) == sorted(j.id for j in jobs)


def test_finished_work_is_passed_for_good_and_unfinished_work_looked_at_once_a_grace_period(dynamo_repo, make_job):
    """Entries are written once and never removed: the sweeper reads each past its grace period, moves its
    position in the shard past the finished ones, and postpones the unfinished ones past it."""
    done, waiting = make_job(), make_job()
    for job in (done, waiting):
        dynamo_repo.add(job)
    _, chunk = dynamo_repo.chunks.claim(done.id, None, attempt=1, worker="w", token=TOKEN, now=T0, lease_seconds=LEASE)
    result = FrameResult(frame=1, key="k1", size=1, sha256="0" * 64, content_type="image/png")
    dynamo_repo.chunks.record_frames(
        chunk, token=TOKEN, results=[result], render_seconds=0.1, now=T0, lease_until=T0 + timedelta(seconds=LEASE)
    )
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue) == {"job_requeued": 1}  # the waiting job; the finished one read and passed
    assert dynamo_repo.overdue("JOB", before=LATER, limit=10) == []  # nothing left behind the position
    assert run(dynamo_repo, queue, now=LATER + GRACE / 2) == {}
    assert run(dynamo_repo, queue, now=LATER + GRACE + timedelta(seconds=1)) == {"job_requeued": 1}
    assert [c[0] for c in queue.chunks] == [waiting.id, waiting.id]
    assert [w.job_id for w in dynamo_repo.overdue("JOB", before=AUDIT, limit=10)] == [waiting.id]


def test_lapsed_chunk_leases_stale_attempts_and_lost_fanouts(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, put=[])
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue) == {"fanout_requeued": 1}  # the fan-out message was lost
    assert queue.fanouts == [(job.id, 1, Priority.NORMAL)]
    dynamo_repo.chunks.put(job, job.new_chunks())
    _claim(dynamo_repo, job.id, 0, token="dead")
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(seconds=30)) == {}  # within the grace period
    assert run(dynamo_repo, queue) == {}  # the job was looked at at LATER: not again within a grace period
    # Then its audit finds the dead worker's chunk and the lost message (chunk items have no entry of their own).
    done = run(dynamo_repo, queue, now=LATER + GRACE + timedelta(seconds=1))
    assert done == {"running": 1, "chunk_requeued": 2}
    assert sorted(c[1] for c in queue.chunks) == [0, 1]


def test_a_cancelling_job_whose_worker_died_is_cancelled(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, put=[0])
    _claim(dynamo_repo, job.id, 0, token="dead")
    dynamo_repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(seconds=30)) == {}  # within the grace: worker may be alive
    done = run(dynamo_repo, queue, now=LATER)
    assert done["cancel_finished"] == 1 and done["chunk_dropped"] == 1  # and its dead worker's chunk with it
    assert dynamo_repo.get(job.id).status is JobStatus.CANCELLED
    assert [c.status for c in dynamo_repo.chunks.list(job.id)] == [JobStatus.CANCELLED]


def test_a_job_cancelled_before_its_fanout_and_retried_gets_all_its_chunks(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, chunks=3, put=[])
    cancelled = job_cancel(jobs=control(dynamo_repo), job=job, now=T0)
    assert cancelled.status is JobStatus.CANCELLED
    queue = FakeTaskQueue()
    assert job_fanout(jobs=control(dynamo_repo, queue), job_id=job.id, attempt=1, now=T0) == 0  # too late: skipped
    assert dynamo_repo.chunks.list(job.id) == []
    retried = job_retry(jobs=control(dynamo_repo, queue), job=cancelled, now=T0, scene_files=scene_files())
    assert retried.attempt == 2 and queue.fanouts == [(job.id, 2, Priority.NORMAL)]
    queue.fanouts.clear()  # the retry's fan-out message is lost too: the sweeper sends it again
    assert run(dynamo_repo, queue) == {"fanout_requeued": 1}
    assert queue.fanouts == [(job.id, 2, Priority.NORMAL)]
    assert job_fanout(jobs=control(dynamo_repo, queue), job_id=job.id, attempt=2, now=LATER) == 3
    assert sorted(queue.chunks) == [(job.id, i, 2, Priority.NORMAL) for i in range(3)]
    chunks = dynamo_repo.chunks.list(job.id)
    assert [(c.index, c.status, c.attempt) for c in chunks] == [(i, JobStatus.QUEUED, 2) for i in range(3)]
    assert _claim(dynamo_repo, job.id, 2, attempt=2).attempt == 2


# --- the audit of a running job of several chunks ----------------------------------------------------


def test_audit_fails_a_processing_job_whose_chunks_were_all_cancelled(dynamo_repo, table, make_job):
    job = _job(dynamo_repo, make_job)
    chunk = _claim(dynamo_repo, job.id, 0)
    dynamo_repo.chunks.end(chunk, token="t", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + RETENTION)
    assert dynamo_repo.chunks.drop(job.id, 1, attempt=1, now=T0)
    _make_due(table, job.id)  # PROCESSING, yet nothing left that could move it
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(minutes=1)) == {"job_failed": 1}
    failed = dynamo_repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "stalled")
    assert "chunks 0, 1" in failed.error
    assert queue.chunks == [] and queue.fanouts == []


def test_audit_fails_a_processing_job_with_a_failed_chunk_with_its_error(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, chunks=3)
    chunk = _claim(dynamo_repo, job.id, 1)
    dynamo_repo.chunks.end(  # its worker died before failing the job
        chunk,
        token="t",
        status=JobStatus.FAILED,
        now=T0,
        expires_at=T0 + RETENTION,
        failure=Failure("render_failed", "boom on frame 3"),
    )
    _finish(dynamo_repo, job.id, 0)
    _finish(dynamo_repo, job.id, 2)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=AUDIT) == {"job_failed": 1}
    failed = dynamo_repo.get(job.id)
    assert (failed.status, failed.error_code, failed.error) == (
        JobStatus.FAILED,
        "render_failed",
        "chunk 1: boom on frame 3",
    )
    assert run(dynamo_repo, queue, now=AUDIT + timedelta(hours=1)) == {}  # final: out of the index


@pytest.mark.parametrize("assembler", ["never_ran", "died"])
def test_audit_resends_the_assembly_of_a_job_whose_chunks_are_all_done(dynamo_repo, make_job, assembler):
    job = _job(dynamo_repo, make_job)
    _finish(dynamo_repo, job.id, 0)
    _finish(dynamo_repo, job.id, 1)
    if assembler == "died":
        dynamo_repo.begin_assembly(job.id, attempt=1, worker="w", token="a", now=T0, lease_seconds=LEASE)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=AUDIT) == {"assembly_requeued": 1}
    # Any chunk message finds its chunk done and runs the assembly again.
    assert queue.chunks == [(job.id, 1, 1, Priority.NORMAL)]
    assert dynamo_repo.get(job.id).status is JobStatus.PROCESSING


def test_audit_resends_the_fanout_of_a_job_missing_chunk_items(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, chunks=3, put=[0, 1])  # its fan-out died between writes
    _claim(dynamo_repo, job.id, 0, token="dead")
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=AUDIT) == {"fanout_requeued": 1}
    assert queue.fanouts == [(job.id, 1, Priority.NORMAL)] and queue.chunks == []
    queue = FakeTaskQueue()
    assert job_fanout(jobs=control(dynamo_repo, queue), job_id=job.id, attempt=1, now=AUDIT) == 3
    chunks = dynamo_repo.chunks.list(job.id)
    assert [(c.index, c.status) for c in chunks] == [
        (0, JobStatus.PROCESSING),
        (1, JobStatus.QUEUED),
        (2, JobStatus.QUEUED),
    ]


def test_leftover_chunks_of_a_failed_job_are_cancelled(dynamo_repo, make_job):
    job = _job(dynamo_repo, make_job, chunks=3)
    _claim(dynamo_repo, job.id, 0, token="dead")
    # The job failed, and whoever failed it died before stopping its other chunks.
    dynamo_repo.fail(job.id, attempt=1, failure=Failure("poison", "x"), now=T0, expires_at=T0 + RETENTION)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=AUDIT) == {"chunk_dropped": 3}
    assert [c.status for c in dynamo_repo.chunks.list(job.id)] == [JobStatus.CANCELLED] * 3
    assert queue.chunks == [] and queue.fanouts == []
    assert run(dynamo_repo, queue, now=AUDIT + timedelta(hours=1)) == {}
