"""The DynamoDB repository against the emulator; the contract tests also run on the fake, to keep it honest."""

import uuid
from datetime import timedelta

import pytest

from jobs import aws
from jobs.domain import FrameResult, JobStatus
from jobs.errors import InvalidCursor, JobAlreadyExists, JobNotFound, JobStateConflict
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
    with pytest.raises(JobAlreadyExists):
        repo.add(job)
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
        repo.record_progress(job.id, token="t1", frames_done=1, now=later)


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
        repo.complete(job.id, token="other", frames_done=1, result=result, now=T0, expires_at=T0 + LATER)
    done = repo.complete(job.id, token="t1", frames_done=1, result=result, now=T0, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED and done.result == result and done.lease_token is None
    with pytest.raises(JobStateConflict):
        repo.complete(job.id, token="t1", frames_done=1, result=result, now=T0, expires_at=T0 + LATER)


def test_release_after_failure_lets_the_retry_claim_at_once(repo, make_job):
    job = make_job()
    repo.add(job)
    repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    released = repo.release_after_failure(job.id, token="t1", error="boom", now=T0)
    assert released.status is JobStatus.PROCESSING and released.render_failures == 1 and released.error == "boom"
    again = repo.claim(job.id, attempt=1, worker="b", token="t2", now=T0, lease_seconds=LEASE)
    failed = repo.fail(job.id, token=again.lease_token, error="boom 2", now=T0, expires_at=T0 + LATER)
    assert failed.status is JobStatus.FAILED and failed.render_failures == 2 and failed.error == "boom 2"


def test_delete_queued_only_while_queued(repo, make_job):
    job = make_job()
    repo.add(job)
    repo.claim(job.id, attempt=1, worker="a", token="t1", now=T0, lease_seconds=LEASE)
    with pytest.raises(JobStateConflict):
        repo.delete_queued(job.id)
    other = make_job()
    repo.add(other)
    repo.delete_queued(other.id)
    with pytest.raises(JobNotFound):
        repo.get(other.id)


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
    assert item["gsi2pk"]["S"] == "STATUS#QUEUED"
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
