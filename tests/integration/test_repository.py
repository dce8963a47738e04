"""The DynamoDB repository against the emulator; the contract tests also run on the fake, to keep it honest."""

import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from jobs import aws
from jobs.domain import FrameResult, JobStatus
from jobs.errors import InvalidCursor, JobAlreadyExists, JobNotFound, JobNotRunning, JobStateConflict, LeaseLost
from jobs.repository import IdempotencyRecord, IdempotencyTaken
from tests.conftest import T0
from tests.fakes import InMemoryJobRepository

LEASE = 30
LATER = timedelta(days=1)


@pytest.fixture(params=["dynamo", "fake"])
def repo(request):
    if request.param == "fake":
        return InMemoryJobRepository()
    return request.getfixturevalue("dynamo_repo")


def test_add_get_roundtrip_and_duplicate_add(repo, make_job):
    job = make_job(frame_start=3, frame_end=9)
    repo.add(job)
    assert repo.get(job.id) == job
    repo.add(job)  # a retried put of the very same item (its first response lost) is no conflict
    with pytest.raises(JobAlreadyExists):
        repo.add(job.replace(owner="mallory"))
    with pytest.raises(JobNotFound):
        repo.get(uuid.uuid4().hex)


def test_claim_is_exclusive_until_the_lease_lapses(repo, make_job):
    job = make_job()
    repo.add(job)
    first = repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    assert first.status is JobStatus.PROCESSING and first.worker == "a" and first.started_at == T0
    with pytest.raises(JobStateConflict):
        repo.claim(
            job.id, attempt=1, worker="b", token="t2", now=T0 + timedelta(seconds=LEASE - 1), lease_seconds=LEASE
        )
    later = T0 + timedelta(seconds=LEASE + 1)
    second = repo.claim(job.id, attempt=1, worker="b", token="t2", now=later, lease_seconds=LEASE)
    assert second.worker == "b" and second.started_at == T0  # the first start is kept
    with pytest.raises(JobStateConflict):
        repo.record_frame(
            job.id,
            token="t1",
            frames_done=0,
            result=_result(1),
            now=later,
            lease_until=later + timedelta(seconds=LEASE),
        )
    assert (
        repo.record_frame(
            job.id,
            token="t2",
            frames_done=0,
            result=_result(1),
            now=later,
            lease_until=later + timedelta(seconds=LEASE),
        ).frames_done
        == 1
    )


def test_claim_fenced_by_attempt(repo, make_job):
    job = make_job()
    repo.add(job)
    with pytest.raises(JobStateConflict):
        repo.claim(job.id, attempt=2, worker="a", token="t", now=T0, lease_seconds=LEASE)


def test_complete_once_and_only_by_the_lease_holder(repo, make_job):
    job = make_job()
    repo.add(job)
    repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    result = FrameResult(frame=1, key="k", size=3, sha256="0" * 64, content_type="image/png")
    with pytest.raises(JobStateConflict):
        repo.complete(job.id, token="other", results=(result,), has_preview=False, now=T0, expires_at=T0 + LATER)
    done = repo.complete(job.id, token="t1", results=(result,), has_preview=False, now=T0, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED and done.results == (result,) and done.lease_token is None
    assert done.frames_done == 1 and done.chunks_done == 1
    with pytest.raises(JobStateConflict):
        repo.complete(job.id, token="t1", results=(result,), has_preview=False, now=T0, expires_at=T0 + LATER)


def test_release_after_failure_lets_the_retry_claim_at_once(repo, make_job):
    job = make_job()
    repo.add(job)
    repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    released = repo.release(job.id, token="t1", error="boom", now=T0)
    assert released.status is JobStatus.PROCESSING and released.render_failures == 1 and released.error == "boom"
    again = repo.claim(job.id, attempt=1, worker="b", token="t2", now=T0, lease_seconds=LEASE)
    failed = repo.fail(job.id, token=again.lease_token, error="boom 2", now=T0, expires_at=T0 + LATER)
    assert failed.status is JobStatus.FAILED and failed.render_failures == 2 and failed.error == "boom 2"


def test_withdraw_only_while_queued(repo, make_job):
    job = make_job()
    repo.add(job)
    repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    with pytest.raises((JobStateConflict, ClientError)):
        repo.withdraw(job.id)
    other = make_job()
    record = IdempotencyRecord(
        pk="IDEMPOTENCY#alice#w", job_id=other.id, request_hash="h", created_at=T0, expires_at=T0 + LATER
    )
    repo.add(other, idempotency=record)
    repo.withdraw(other.id, idempotency_pk=record.pk)
    with pytest.raises(JobNotFound):
        repo.get(other.id)
    assert repo.idempotency_record(record.pk) is None


def test_listing_is_newest_first_paginated_and_filtered(repo, make_job):
    jobs = [make_job(created_at=T0 + timedelta(minutes=i), updated_at=T0) for i in range(5)]
    for job in jobs:
        repo.add(job)
    repo.add(make_job(owner="bob"))
    repo.claim(jobs[1].id, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
    seen, cursor = [], None
    while True:
        page = repo.list_for_owner("alice", status=None, cursor=cursor, limit=2)
        seen += [j.id for j in page.jobs]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [j.id for j in reversed(jobs)]
    processing = repo.list_for_owner("alice", status=JobStatus.PROCESSING, cursor=None, limit=10)
    assert [j.id for j in processing.jobs] == [jobs[1].id]


def test_dynamo_items_use_the_design_keys_and_sparse_index(dynamo_repo, table, make_job):
    job = make_job()
    dynamo_repo.add(job)
    raw = aws.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "JOB"}})
    item = raw["Item"]
    assert item["gsi1pk"]["S"] == "OWNER#alice"
    assert item["gsi1sk"]["S"].endswith(f"#{job.id}")
    assert item["gsi2pk"]["S"] == "JOB#QUEUED"
    dynamo_repo.claim(job.id, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
    dynamo_repo.fail(job.id, token="t", error="x", now=T0, expires_at=T0 + LATER)
    item = aws.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "JOB"}})[
        "Item"
    ]
    assert "gsi2pk" not in item and int(item["expires_at"]["N"]) == int((T0 + LATER).timestamp())


def test_tampered_and_foreign_cursors_are_refused(dynamo_repo, make_job):
    for _ in range(3):
        dynamo_repo.add(make_job())
    cursor = dynamo_repo.list_for_owner("alice", status=None, cursor=None, limit=1).cursor
    assert cursor
    with pytest.raises(InvalidCursor):
        dynamo_repo.list_for_owner("alice", status=None, cursor=cursor[:-2] + "xx", limit=1)
    with pytest.raises(InvalidCursor):
        dynamo_repo.list_for_owner("bob", status=None, cursor=cursor, limit=1)
    with pytest.raises(InvalidCursor):
        dynamo_repo.list_for_owner("alice", status=None, cursor="garbage", limit=1)


def test_api_keys_are_found_by_hash(key_repo):
    key_repo.add(key_hash="h1", owner="alice", now=T0)
    assert key_repo.owner_for("h1") == "alice"
    assert key_repo.owner_for("h2") is None


def test_idempotency_record_is_written_with_the_job_and_blocks_a_second_one(repo, make_job):
    first, second = make_job(), make_job()
    record = IdempotencyRecord(
        pk="IDEMPOTENCY#alice#k", job_id=first.id, request_hash="h1", created_at=T0, expires_at=T0 + timedelta(hours=24)
    )
    repo.add(first, idempotency=record)
    with pytest.raises(IdempotencyTaken):
        repo.add(
            second,
            idempotency=IdempotencyRecord(
                pk=record.pk, job_id=second.id, request_hash="h2", created_at=T0, expires_at=T0 + timedelta(hours=24)
            ),
        )
    with pytest.raises(JobNotFound):
        repo.get(second.id)  # all or nothing
    assert repo.idempotency_record(record.pk)["job_id"] == first.id
    # Past its expiry the record no longer blocks, even before TTL deletes it.
    later = T0 + timedelta(hours=25)
    repo.add(
        second,
        idempotency=IdempotencyRecord(
            pk=record.pk, job_id=second.id, request_hash="h2", created_at=later, expires_at=later + timedelta(hours=24)
        ),
    )
    assert repo.idempotency_record(record.pk)["job_id"] == second.id


def _multi_job(repo, make_job, frames=(1, 4), chunk_size=2):
    job = make_job(frame_start=frames[0], frame_end=frames[1], chunk_size=chunk_size)
    repo.add(job)
    tasks = job.first_tasks()
    repo.put_tasks(job, tasks)
    repo.put_tasks(job, tasks)  # a fan-out re-run changes nothing
    return job


def _result(frame):
    return FrameResult(frame=frame, key=f"k{frame}", size=1, sha256="0" * 64, content_type="image/png")


def test_task_frames_count_on_the_job_atomically_and_the_last_one_completes_the_chunk(repo, make_job):
    job = _multi_job(repo, make_job)
    assert [t.index for t in repo.tasks(job.id)] == [0, 1]
    started = repo.start(job.id, attempt=1, now=T0)
    assert started.status is JobStatus.PROCESSING and started.started_at == T0
    task = repo.claim_task(job.id, 0, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
    with pytest.raises(JobStateConflict):
        repo.claim_task(job.id, 0, attempt=1, worker="b", token="u", now=T0, lease_seconds=LEASE)
    assert (
        repo.record_task_frame(
            task, token="t", result=_result(1), render_seconds=1.5, now=T0, lease_until=T0 + timedelta(seconds=LEASE)
        )
        is False
    )
    with pytest.raises(LeaseLost):  # a stale view of frames_done, as a duplicate worker would have
        repo.record_task_frame(
            task, token="t", result=_result(1), render_seconds=1.5, now=T0, lease_until=T0 + timedelta(seconds=LEASE)
        )
    assert (
        repo.record_task_frame(
            task.replace(frames_done=1),
            token="t",
            result=_result(2),
            render_seconds=0.5,
            now=T0,
            lease_until=T0 + timedelta(seconds=LEASE),
        )
        is True
    )
    done = repo.tasks(job.id)[0]
    assert done.status is JobStatus.COMPLETED and [r.frame for r in done.results] == [1, 2]
    assert done.render_seconds == 2.0 and done.lease_token is None
    job_now = repo.get(job.id)
    assert (job_now.frames_done, job_now.chunks_done) == (2, 1)
    with pytest.raises(JobStateConflict):  # not every chunk is done yet
        repo.begin_assembly(job.id, attempt=1, worker="a", token="x", now=T0, lease_seconds=LEASE)


def test_task_writes_stop_once_the_job_is_cancelling(repo, make_job):
    job = _multi_job(repo, make_job)
    repo.start(job.id, attempt=1, now=T0)
    task = repo.claim_task(job.id, 1, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    with pytest.raises(JobNotRunning) as stopped:
        repo.record_task_frame(
            task, token="t", result=_result(3), render_seconds=1, now=T0, lease_until=T0 + timedelta(seconds=LEASE)
        )
    assert stopped.value.status == "CANCELLING"
    assert repo.get(job.id).frames_done == 0  # the transaction wrote neither side
    ended = repo.end_task(task, token="t", status=JobStatus.CANCELLED, now=T0)
    assert ended.status is JobStatus.CANCELLED
    repo.drop_task(job.id, 0, attempt=1, now=T0)
    assert {t.status for t in repo.tasks(job.id)} == {JobStatus.CANCELLED}
    cancelled = repo.transition(
        job.id,
        attempt=1,
        source=JobStatus.CANCELLING,
        target=JobStatus.CANCELLED,
        now=T0,
        expires_at=T0 + LATER,
        when_lease_free=True,
    )
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at == T0


def test_retry_requeues_unfinished_tasks_in_a_new_attempt(repo, make_job):
    job = _multi_job(repo, make_job)
    repo.start(job.id, attempt=1, now=T0)
    t0 = repo.claim_task(job.id, 0, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
    repo.record_task_frame(
        t0, token="t", result=_result(1), render_seconds=1, now=T0, lease_until=T0 + timedelta(seconds=LEASE)
    )
    repo.record_task_frame(
        t0.replace(frames_done=1),
        token="t",
        result=_result(2),
        render_seconds=1,
        now=T0,
        lease_until=T0 + timedelta(seconds=LEASE),
    )
    t1 = repo.claim_task(job.id, 1, attempt=1, worker="a", token="u", now=T0, lease_seconds=LEASE)
    repo.end_task(t1, token="u", status=JobStatus.FAILED, now=T0, error="boom")
    failed = repo.fail_unfinished(job.id, attempt=1, error="chunk 1: boom", now=T0, expires_at=T0 + LATER)
    assert failed.status is JobStatus.FAILED
    retried = repo.retry(job.id, attempt=1, now=T0)
    assert (retried.status, retried.attempt, retried.error, retried.fanout_sent) == (JobStatus.QUEUED, 2, None, -1)
    tasks = repo.tasks(job.id)
    assert repo.requeue_task(tasks[0], attempt=2, now=T0) is False  # completed: kept
    assert repo.requeue_task(tasks[1], attempt=2, now=T0) is True
    assert repo.requeue_task(tasks[1], attempt=2, now=T0) is False  # already in attempt 2
    assert [(t.status, t.attempt) for t in repo.tasks(job.id)] == [(JobStatus.COMPLETED, 1), (JobStatus.QUEUED, 2)]
    with pytest.raises(JobStateConflict):  # the old attempt is fenced off
        repo.claim_task(job.id, 1, attempt=1, worker="a", token="v", now=T0, lease_seconds=LEASE)
    repo.advance_fanout(job.id, attempt=2, sent_before=-1, sent_now=1)
    with pytest.raises(JobStateConflict):
        repo.advance_fanout(job.id, attempt=2, sent_before=-1, sent_now=1)


def test_assembly_lease_is_exclusive(repo, make_job):
    job = _multi_job(repo, make_job, frames=(1, 2), chunk_size=1)
    repo.start(job.id, attempt=1, now=T0)
    for index in (0, 1):
        task = repo.claim_task(job.id, index, attempt=1, worker="a", token="t", now=T0, lease_seconds=LEASE)
        repo.record_task_frame(
            task,
            token="t",
            result=_result(index + 1),
            render_seconds=1,
            now=T0,
            lease_until=T0 + timedelta(seconds=LEASE),
        )
    leased = repo.begin_assembly(job.id, attempt=1, worker="a", token="x", now=T0, lease_seconds=LEASE)
    assert leased.lease_token == "x"
    with pytest.raises(JobStateConflict):
        repo.begin_assembly(job.id, attempt=1, worker="b", token="y", now=T0, lease_seconds=LEASE)
    done = repo.complete(job.id, token="x", results=None, has_preview=True, now=T0, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED and done.has_preview and done.frames_done == 2


def test_a_retried_conditional_write_that_already_applied_counts_as_done(dynamo_repo, table, make_job):
    """botocore retries an UpdateItem whose response timed out; the retry must not turn into a conflict."""
    from jobs.repository.dynamo import conditional_update

    job = make_job()
    dynamo_repo.add(job)
    client = aws.client("dynamodb")
    real_update = client.update_item
    calls = []

    def first_try_applies_but_its_answer_is_lost(**params):
        calls.append(params)
        real_update(**params)
        if len(calls) == 1:
            return real_update(**params)  # the retry: the condition no longer holds
        raise AssertionError("one retry only")

    client.update_item = first_try_applies_but_its_answer_is_lost
    try:
        item = conditional_update(
            client,
            table,
            {"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "JOB"}},
            "SET #status = :processing",
            condition="#status = :queued",
            values={":processing": "PROCESSING", ":queued": "QUEUED"},
        )
    finally:
        client.update_item = real_update
    assert item["status"] == "PROCESSING" and len(calls) == 1


def test_transitions_outside_the_state_machine_are_refused_before_any_write(repo, make_job):
    job = make_job()
    repo.add(job)
    with pytest.raises(ValueError, match="not a transition"):
        repo.transition(job.id, attempt=1, source=JobStatus.QUEUED, target=JobStatus.COMPLETED, now=T0)
    assert repo.get(job.id).status is JobStatus.QUEUED
