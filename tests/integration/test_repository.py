"""The DynamoDB repository against the emulator; the contract tests also run on the fake, to keep it honest."""

import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from jobs.adapters import aws
from jobs.domain import Failure, FrameList, FrameResult, JobStatus, frame_fields, month_of, new_job_id
from jobs.errors import (
    IdempotencyTaken,
    InvalidCursor,
    JobAlreadyExists,
    JobNotFound,
    JobNotRunning,
    JobStateConflict,
    LeaseLost,
)
from jobs.ports import IdempotencyRecord
from jobs.repository import indexes
from jobs.repository.budgets import DynamoBudgets
from jobs.repository.items import DUE_SHARDS, job_key, owner_partition, shard_of
from tests.conftest import T0
from tests.fakes import InMemoryJobRepository

LEASE = 30
LATER = timedelta(days=1)
FAR = T0 + timedelta(days=30)
BOOM = Failure("render_failed", "boom")
TOKEN = "t"


@pytest.fixture(params=["dynamo", "fake"])
def repo(request):
    if request.param == "fake":
        return InMemoryJobRepository()
    return request.getfixturevalue("dynamo_repo")


def _claim(repo, job_id, index=None, *, worker="a", token=TOKEN, now=T0, attempt=1):
    return repo.chunks.claim(job_id, index, attempt=attempt, worker=worker, token=token, now=now, lease_seconds=LEASE)


def _result(frame):
    return FrameResult(frame=frame, key=f"k{frame}", size=1, sha256="0" * 64, content_type="image/png")


def _record(repo, chunk, *, token=TOKEN, frame=None, seconds=1.0, now=T0, count=1, **kwargs):
    """Record `count` frames in one write (a chunk item's write counts its frames on the job in the same)."""
    first = frame if frame is not None else chunk.frame_start + chunk.frames_done
    return repo.chunks.record_frames(
        chunk,
        token=token,
        results=[_result(first + n) for n in range(count)],
        render_seconds=seconds,
        now=now,
        lease_until=now + timedelta(seconds=LEASE),
        **kwargs,
    )


def _multi_job(repo, make_job, frames=(1, 4), chunk_size=2):
    job = make_job(frame_start=frames[0], frame_end=frames[1], chunk_size=chunk_size)
    repo.add(job)
    chunks = job.new_chunks()
    repo.chunks.put(job, chunks)
    repo.chunks.put(job, chunks)  # a fan-out re-run changes nothing
    return job


def _chunk(repo, job_id, index):
    """The stored chunk: the job item of a one-chunk job (index None), else its chunk item."""
    if index is None:
        return repo.get(job_id).as_chunk()
    return repo.chunks.list(job_id)[index]


# --- jobs: create, read, list ---------------------------------------------------------------------


def test_add_get_roundtrip_and_duplicate_add(repo, make_job):
    job = make_job(frame_start=3, frame_end=9)
    repo.add(job)
    assert repo.get(job.id) == job
    repo.add(job)  # a retried put of the very same item (its first response lost) is no conflict
    with pytest.raises(JobAlreadyExists):
        repo.add(job.replace(owner="mallory"))
    with pytest.raises(JobNotFound):
        repo.get(uuid.uuid4().hex)


def test_a_job_of_a_frame_list_and_its_chunks_keep_their_lists(repo, make_job):
    job = make_job(**frame_fields(FrameList.parse("1-7x3,10,20-22")), chunk_size=3)
    repo.add(job)
    assert repo.get(job.id) == job and str(repo.get(job.id).frames) == "1-10x3,20-22"
    repo.chunks.put(job, job.new_chunks())
    chunks = repo.chunks.list(job.id)
    assert [str(c.frames) for c in chunks] == ["1-7x3", "10,20-21", "22"]
    _, chunk = _claim(repo, job.id, 1)
    assert list(chunk.frames) == [10, 20, 21]
    done = _record(repo, _record(repo, chunk, frame=10), frame=20, count=2)
    assert done.status is JobStatus.COMPLETED and [r.frame for r in done.results] == [10, 20, 21]
    assert repo.get(job.id).frames_done == 3


def test_withdraw_only_while_queued(repo, make_job):
    job = make_job()
    repo.add(job)
    _claim(repo, job.id, token="t1")
    with pytest.raises((JobStateConflict, ClientError)):
        repo.withdraw(job.id)
    other = make_job()
    record = IdempotencyRecord(name="alice#w", job_id=other.id, request_hash="h", created_at=T0, expires_at=T0 + LATER)
    repo.add(other, idempotency=record)
    repo.withdraw(other.id)
    with pytest.raises(JobNotFound):
        repo.get(other.id)
    assert repo.idempotency_record(record.name) == record  # kept: a retry with the key finishes the job


def test_idempotency_record_is_written_with_the_job_and_blocks_a_second_one(repo, make_job):
    first, second = make_job(), make_job()
    record = IdempotencyRecord(
        name="alice#k", job_id=first.id, request_hash="h1", created_at=T0, expires_at=T0 + timedelta(hours=24)
    )
    repo.add(first, idempotency=record)
    with pytest.raises(IdempotencyTaken):
        repo.add(
            second,
            idempotency=IdempotencyRecord(
                name=record.name,
                job_id=second.id,
                request_hash="h2",
                created_at=T0,
                expires_at=T0 + timedelta(hours=24),
            ),
        )
    with pytest.raises(JobNotFound):
        repo.get(second.id)  # the record first: a taken one, and nothing is written
    stored = repo.idempotency_record(record.name)
    assert (stored.job_id, stored.request_hash) == (first.id, "h1")
    # Past its expiry the record no longer blocks, even before TTL deletes it.
    later = T0 + timedelta(hours=25)
    repo.add(
        second,
        idempotency=IdempotencyRecord(
            name=record.name,
            job_id=second.id,
            request_hash="h2",
            created_at=later,
            expires_at=later + timedelta(hours=24),
        ),
    )
    assert repo.idempotency_record(record.name).job_id == second.id


def test_listing_is_newest_first_paginated_and_filtered(repo, make_job):
    jobs = [make_job(created_at=T0 + timedelta(minutes=i), updated_at=T0) for i in range(5)]
    for job in jobs:
        repo.add(job)
    repo.add(make_job(owner="bob"))
    _claim(repo, jobs[1].id)
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


def test_a_filtered_listing_reads_a_bounded_number_of_jobs_and_its_short_page_continues(
    dynamo_repo, make_job, monkeypatch
):
    """A state change writes no index entry, so a status filter reads the owner's listing and leaves jobs out;
    it reads at most FILTER_READS entries a request, then returns what it found with a cursor below them."""
    monkeypatch.setattr(indexes, "FILTER_READS", 4)
    monkeypatch.setattr(indexes, "FILTER_BATCH", 2)
    ids = sorted(new_job_id() for _ in range(10))
    jobs = [make_job(id=job_id, created_at=T0 + timedelta(minutes=i)) for i, job_id in enumerate(ids)]
    for job in jobs:
        dynamo_repo.add(job)
    failed = [jobs[0], jobs[8]]  # the newest but one, and the oldest
    for job in failed:
        dynamo_repo.fail(job.id, attempt=1, failure=BOOM, now=T0, expires_at=T0 + LATER)
    pages, cursor = [], None
    while True:
        page = dynamo_repo.list_for_owner("alice", status=JobStatus.FAILED, cursor=cursor, limit=5)
        pages.append([j.id for j in page.jobs])
        cursor = page.cursor
        if cursor is None:
            break
    # four entries read a page (a round is capped at the reads too): one matched, then none (an empty page that
    # is not the end: its cursor goes on), then the oldest
    assert pages == [[jobs[8].id], [], [jobs[0].id]]


def test_status_listing_pages_are_full_and_the_cursor_keeps_its_filter_and_limit(repo, make_job):
    # Ids sort by creation time; created_at follows them, so both listings agree on "newest first".
    ids = sorted(new_job_id() for _ in range(12))
    jobs = [make_job(id=job_id, created_at=T0 + timedelta(minutes=i)) for i, job_id in enumerate(ids)]
    for job in jobs:
        repo.add(job)
    bobs = make_job(owner="bob")
    repo.add(bobs)
    completed = {0, 3, 5, 8, 11}  # scattered among the others, so a filter over a plain listing would leave gaps
    for i, job in enumerate(jobs):
        if i in completed:
            _, chunk = _claim(repo, job.id)
            _record(repo, chunk)  # the only frame completes the job
        elif i % 3 == 1:
            _claim(repo, job.id)  # PROCESSING
        elif i in (2, 9):
            repo.transition(
                job.id, attempt=1, source=JobStatus.QUEUED, target=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER
            )
    _, chunk = _claim(repo, bobs.id)
    _record(repo, chunk)  # another owner's COMPLETED job is never listed
    newest_first = [jobs[i].id for i in sorted(completed, reverse=True)]

    first = repo.list_for_owner("alice", status=JobStatus.COMPLETED, cursor=None, limit=2)
    assert [j.id for j in first.jobs] == newest_first[0:2] and first.cursor
    assert {j.status for j in first.jobs} == {JobStatus.COMPLETED}
    # The cursor alone continues the same listing: same status filter, same page size.
    second = repo.list_for_owner("alice", status=None, cursor=first.cursor, limit=None)
    assert [j.id for j in second.jobs] == newest_first[2:4] and second.cursor
    third = repo.list_for_owner("alice", status=JobStatus.COMPLETED, cursor=second.cursor, limit=None)
    assert [j.id for j in third.jobs] == newest_first[4:5] and third.cursor is None
    with pytest.raises(InvalidCursor):
        repo.list_for_owner("alice", status=JobStatus.QUEUED, cursor=first.cursor, limit=2)
    # A page that ends exactly at the last job says so: no empty page after it.
    cancelled = repo.list_for_owner("alice", status=JobStatus.CANCELLED, cursor=None, limit=2)
    assert [j.id for j in cancelled.jobs] == [jobs[9].id, jobs[2].id] and cancelled.cursor is None
    # QUEUED and PROCESSING share one listing group (a claim moves no index entry): the pages are still full
    # and hold only the asked state, across as many reads as that takes.
    for state in (JobStatus.QUEUED, JobStatus.PROCESSING):
        expected = [j.id for j in reversed(jobs) if repo.get(j.id).status is state]
        seen, cursor = [], None
        while True:
            page = repo.list_for_owner("alice", status=state, cursor=cursor, limit=2)
            assert {j.status for j in page.jobs} <= {state}
            assert len(page.jobs) == 2 or page.cursor is None
            seen += [j.id for j in page.jobs]
            cursor = page.cursor
            if cursor is None:
                break
        assert seen == expected and expected


# --- one-chunk jobs: the job item is the chunk ------------------------------------------------------


def test_claim_is_exclusive_until_the_lease_lapses(repo, make_job):
    job = make_job(frame_end=2)
    repo.add(job)
    claimed, first = _claim(repo, job.id, worker="a", token="t1")
    assert first.index is None and first.whole_job
    assert first.status is JobStatus.PROCESSING and first.worker == "a" and first.started_at == T0
    assert claimed.status is JobStatus.PROCESSING and claimed.lease_token == "t1" and first.crashes == 0
    with pytest.raises(JobStateConflict):
        _claim(repo, job.id, worker="b", token="t2", now=T0 + timedelta(seconds=LEASE - 1))
    later = T0 + timedelta(seconds=LEASE + 1)
    _, second = _claim(repo, job.id, worker="b", token="t2", now=later)
    assert second.worker == "b" and second.started_at == T0  # the first start is kept
    with pytest.raises(LeaseLost):  # the old holder is fenced off
        _record(repo, first, token="t1", now=later)
    assert _record(repo, second, token="t2", now=later).frames_done == 1


def test_claim_fenced_by_attempt(repo, make_job):
    job = make_job()
    repo.add(job)
    with pytest.raises(JobStateConflict):
        _claim(repo, job.id, attempt=2)
    multi = _multi_job(repo, make_job)
    with pytest.raises(JobStateConflict):
        _claim(repo, multi.id, 0, attempt=2)
    assert repo.get(multi.id).status is JobStatus.QUEUED  # the job did not start either


def test_the_last_frame_of_a_one_chunk_job_completes_it_once_and_only_by_the_lease_holder(repo, make_job):
    job = make_job(frame_end=2)
    repo.add(job)
    _, chunk = _claim(repo, job.id, token="t1")
    with pytest.raises(LeaseLost):
        _record(repo, chunk, token="other")
    chunk = _record(repo, chunk, token="t1", seconds=1.25)
    assert chunk.status is JobStatus.PROCESSING and chunk.frames_done == 1
    assert repo.get(job.id).status is JobStatus.PROCESSING
    done = _record(repo, chunk, token="t1", seconds=0.5, has_preview=True, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED
    job_now = repo.get(job.id)
    assert job_now.status is JobStatus.COMPLETED and job_now.finished_at == T0
    assert job_now.results == (_result(1), _result(2)) and job_now.has_preview
    assert job_now.frames_done == 2 and job_now.chunks_done == 1 and job_now.lease_token is None
    assert job_now.render_seconds == pytest.approx(1.75) and job_now.render_seconds > 0
    assert job_now.as_chunk().seconds_per_frame == pytest.approx(0.875)
    # Still in the sweeper's index (its end wrote no index entry), read as finished: the sweeper passes it.
    assert [w.status for w in repo.overdue("JOB", before=FAR, limit=10)] == [JobStatus.COMPLETED]
    with pytest.raises(JobStateConflict):  # done once: a duplicate worker's write is refused
        _record(repo, chunk, token="t1")
    with pytest.raises(JobNotRunning):
        _claim(repo, job.id, token="t2", now=FAR)


def test_release_after_failure_lets_the_retry_claim_at_once(repo, make_job):
    job = make_job()
    repo.add(job)
    _, chunk = _claim(repo, job.id, token="t1")
    released = repo.chunks.release(chunk, token="t1", now=T0, failure=BOOM)
    assert released.status is JobStatus.PROCESSING and released.render_failures == 1
    assert (released.error, released.error_code, released.lease_token) == ("boom", "render_failed", None)
    _, again = _claim(repo, job.id, worker="b", token="t2")
    assert again.crashes == 0  # a released chunk is no crash
    failed = repo.chunks.end(
        again,
        token="t2",
        status=JobStatus.FAILED,
        now=T0,
        expires_at=T0 + LATER,
        failure=Failure("render_failed", "boom 2"),
    )
    assert failed.status is JobStatus.FAILED and failed.render_failures == 2 and failed.error == "boom 2"
    job_now = repo.get(job.id)
    assert (job_now.status, job_now.error_code, job_now.lease_token) == (JobStatus.FAILED, "render_failed", None)


@pytest.mark.parametrize("multi", [False, True], ids=["one_chunk", "chunk_item"])
def test_a_takeover_counts_a_crash_but_a_released_chunk_is_reclaimed_without_one(repo, make_job, multi):
    if multi:
        job, index = _multi_job(repo, make_job), 1
    else:
        job, index = make_job(frame_end=2), None
        repo.add(job)
    _, first = _claim(repo, job.id, index, worker="a", token="t1")
    assert first.crashes == 0
    released = repo.chunks.release(first, token="t1", now=T0)  # a shutdown: handed back, nothing counted
    assert (released.crashes, released.render_failures) == (0, 0)
    _, second = _claim(repo, job.id, index, worker="b", token="t2")  # at once: no wait for the old lease
    assert second.crashes == 0 and second.worker == "b"
    # b dies holding it: nobody can take it before its lease lapses, then a takeover counts a crash.
    with pytest.raises(JobStateConflict):
        _claim(repo, job.id, index, worker="c", token="t3", now=T0 + timedelta(seconds=LEASE - 1))
    later = T0 + timedelta(seconds=LEASE + 1)
    _, third = _claim(repo, job.id, index, worker="c", token="t3", now=later)
    assert third.crashes == 1 and third.lease_token == "t3" and third.worker == "c"
    assert _chunk(repo, job.id, index).crashes == 1
    with pytest.raises(LeaseLost):  # the dead holder, should it wake up, is fenced off
        repo.chunks.renew(second, token="t2", until=later + timedelta(seconds=LEASE))
    much_later = later + timedelta(seconds=LEASE + 1)
    _, fourth = _claim(repo, job.id, index, worker="d", token="t4", now=much_later)
    assert fourth.crashes == 2 and _chunk(repo, job.id, index).crashes == 2
    if not multi:
        assert repo.get(job.id).crashes == 2


def test_note_failure_counts_on_a_chunk_no_live_lease_holds_and_refuses_a_held_one(repo, make_job):
    oops = Failure("worker_error", "The worker hit an unexpected error (ValueError).")
    job = _multi_job(repo, make_job, frames=(1, 6))
    queued = repo.chunks.note_failure(job.id, 0, attempt=1, failure=oops, now=T0)
    assert (queued.status, queued.render_failures, queued.error_code) == (JobStatus.QUEUED, 1, "worker_error")
    assert repo.chunks.note_failure(job.id, 0, attempt=1, failure=oops, now=T0).render_failures == 2
    with pytest.raises(JobStateConflict):  # another attempt
        repo.chunks.note_failure(job.id, 0, attempt=2, failure=oops, now=T0)

    _claim(repo, job.id, 1, token="t1")
    with pytest.raises(JobStateConflict):  # a live worker holds it: not ours to count
        repo.chunks.note_failure(job.id, 1, attempt=1, failure=oops, now=T0)
    untouched = _chunk(repo, job.id, 1)
    assert (untouched.render_failures, untouched.lease_token, untouched.error) == (0, "t1", None)
    later = T0 + timedelta(seconds=LEASE + 1)  # its holder died
    lapsed = repo.chunks.note_failure(job.id, 1, attempt=1, failure=oops, now=later)
    assert (lapsed.status, lapsed.render_failures, lapsed.lease_token) == (JobStatus.PROCESSING, 1, None)
    _, retaken = _claim(repo, job.id, 1, token="t2", now=later)  # the retry claims it at once
    assert retaken.lease_token == "t2" and retaken.render_failures == 1

    _, chunk = _claim(repo, job.id, 2, token="t3")
    _record(repo, _record(repo, chunk, token="t3"), token="t3")
    with pytest.raises(JobStateConflict):  # finished
        repo.chunks.note_failure(job.id, 2, attempt=1, failure=oops, now=FAR)

    single = make_job()
    repo.add(single)
    noted = repo.chunks.note_failure(single.id, None, attempt=1, failure=oops, now=T0)
    assert noted.whole_job and noted.render_failures == 1
    assert (repo.get(single.id).render_failures, repo.get(single.id).error_code) == (1, "worker_error")
    _claim(repo, single.id, token="t4")
    with pytest.raises(JobStateConflict):
        repo.chunks.note_failure(single.id, None, attempt=1, failure=oops, now=T0)


# --- jobs of several chunks: chunk items ---------------------------------------------------------


def test_chunk_frames_count_on_the_job_atomically_and_the_last_one_completes_the_chunk(repo, make_job):
    job = _multi_job(repo, make_job)
    assert [c.index for c in repo.chunks.list(job.id)] == [0, 1]
    assert [(c.frame_start, c.frame_end, c.status, c.attempt) for c in repo.chunks.list(job.id)] == [
        (1, 2, JobStatus.QUEUED, 1),
        (3, 4, JobStatus.QUEUED, 1),
    ]
    started, chunk = _claim(repo, job.id, 0)  # the first claim starts the job
    assert started.status is JobStatus.PROCESSING and started.started_at == T0
    assert chunk.index == 0 and not chunk.whole_job and chunk.lease_token == "t"
    with pytest.raises(JobStateConflict):
        _claim(repo, job.id, 0, worker="b", token="u")
    after = _record(repo, chunk, frame=1, seconds=1.5)
    assert after.status is JobStatus.PROCESSING and after.frames_done == 1
    with pytest.raises(LeaseLost):  # a stale view of frames_done, as a duplicate worker would have
        _record(repo, chunk, frame=1, seconds=1.5)
    assert _record(repo, after, frame=2, seconds=0.5).status is JobStatus.COMPLETED
    done = repo.chunks.list(job.id)[0]
    assert done.status is JobStatus.COMPLETED and [r.frame for r in done.results] == [1, 2]
    assert done.render_seconds == 2.0 and done.lease_token is None
    job_now = repo.get(job.id)
    assert (job_now.status, job_now.frames_done, job_now.chunks_done) == (JobStatus.PROCESSING, 2, 1)
    with pytest.raises(JobStateConflict):  # not every chunk is done yet
        repo.begin_assembly(job.id, attempt=1, worker="a", token="x", now=T0, lease_seconds=LEASE)
    _, batched = _claim(repo, job.id, 1)
    assert _record(repo, batched, count=2, seconds=2.0).status is JobStatus.COMPLETED  # two frames, one write
    assert [r.frame for r in repo.chunks.list(job.id)[1].results] == [3, 4]
    assert (repo.get(job.id).frames_done, repo.get(job.id).chunks_done) == (4, 2)


def test_chunk_writes_stop_once_the_job_is_cancelling(repo, make_job):
    job = _multi_job(repo, make_job)
    _, chunk = _claim(repo, job.id, 1)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    with pytest.raises(JobNotRunning) as stopped:
        _record(repo, chunk, frame=3)
    assert stopped.value.status == "CANCELLING"
    # The chunk item took the frame (kept if the job is retried: its file is in S3); the job did not count it.
    assert repo.chunks.list(job.id)[1].frames_done == 1
    assert repo.get(job.id).frames_done == 0
    ended = repo.chunks.end(chunk, token="t", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER)
    assert ended.status is JobStatus.CANCELLED and ended.lease_token is None
    assert repo.chunks.drop(job.id, 0, attempt=1, now=T0) is True
    assert {c.status for c in repo.chunks.list(job.id)} == {JobStatus.CANCELLED}
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
    with pytest.raises(JobNotRunning):  # a late message of the stopped job
        _claim(repo, job.id, 1, token="late")


def test_drop_cancels_chunk_items_no_live_lease_holds(repo, make_job):
    job = _multi_job(repo, make_job, frames=(1, 5), chunk_size=1)
    later = T0 + timedelta(seconds=LEASE + 1)
    _, released = _claim(repo, job.id, 1, token="t1")
    repo.chunks.release(released, token="t1", now=T0, failure=BOOM)  # waiting in its retry delay
    _claim(repo, job.id, 2, token="t2")  # its holder dies: the lease lapses at T0 + LEASE
    _, held = _claim(repo, job.id, 3, token="t3", now=later)  # alive
    _, done = _claim(repo, job.id, 4, token="t4", now=later)
    _record(repo, done, token="t4", now=later)
    repo.fail(job.id, attempt=1, failure=BOOM, now=later, expires_at=later + LATER)

    assert repo.chunks.drop(job.id, 0, attempt=2, now=later) is False  # another attempt
    dropped = [repo.chunks.drop(job.id, i, attempt=1, now=later) for i in range(5)]
    assert dropped == [True, True, True, False, False]  # queued, released, lapsed; not held, not finished
    chunks = repo.chunks.list(job.id)
    assert [c.status for c in chunks] == [JobStatus.CANCELLED] * 3 + [JobStatus.PROCESSING, JobStatus.COMPLETED]
    assert chunks[3].lease_token == "t3" and all(c.lease_token is None for c in chunks[:3])
    assert all(c.finished_at == later for c in chunks[:3])
    assert repo.chunks.drop(job.id, 0, attempt=1, now=later) is False  # once

    # Chunk items have no entry in the sweeper's index: it looks at them through their job's.
    assert repo.overdue("TASK", before=FAR, limit=10) == []
    assert [w.status for w in repo.overdue("JOB", before=FAR, limit=10) if w.job_id == job.id] == [JobStatus.FAILED]
    repo.chunks.end(held, token="t3", status=JobStatus.CANCELLED, now=later, expires_at=later + LATER)
    # A one-chunk job has no chunk item: it stops with its job item.
    single = make_job()
    repo.add(single)
    assert repo.chunks.drop(single.id, None, attempt=1, now=T0) is False
    assert repo.get(single.id).status is JobStatus.QUEUED


def test_fail_and_drop_of_a_missing_chunk_item_do_nothing(repo, make_job):
    """A dead letter can outlive its chunk item (TTL); failing it must not stop the sweep pass."""
    job = _multi_job(repo, make_job)
    gone = new_job_id()
    assert repo.chunks.fail(job.id, 7, attempt=1, failure=BOOM, now=T0) is False
    assert repo.chunks.fail(gone, 0, attempt=1, failure=BOOM, now=T0) is False
    assert repo.chunks.drop(gone, 0, attempt=1, now=T0) is False


def test_retry_requeues_unfinished_chunks_in_a_new_attempt(repo, make_job):
    job = _multi_job(repo, make_job)
    _, c0 = _claim(repo, job.id, 0)
    _record(repo, _record(repo, c0))
    _, c1 = _claim(repo, job.id, 1, token="u")
    repo.chunks.end(c1, token="u", status=JobStatus.FAILED, now=T0, expires_at=T0 + LATER, failure=BOOM)
    failed = repo.fail(
        job.id, attempt=1, failure=Failure("render_failed", "chunk 1: boom"), now=T0, expires_at=T0 + LATER
    )
    assert (failed.status, failed.error, failed.error_code) == (JobStatus.FAILED, "chunk 1: boom", "render_failed")
    with pytest.raises(JobStateConflict):  # failed once
        repo.fail(job.id, attempt=1, failure=BOOM, now=T0, expires_at=T0 + LATER)
    retried = repo.retry(job.id, attempt=1, now=T0)
    assert (retried.status, retried.attempt, retried.error, retried.fanout_sent) == (JobStatus.QUEUED, 2, None, -1)
    assert (retried.render_failures, retried.crashes, retried.finished_at) == (0, 0, None)
    chunks = repo.chunks.list(job.id)
    assert repo.chunks.requeue(chunks[0], attempt=2, now=T0) is False  # completed: kept
    assert repo.chunks.requeue(chunks[1], attempt=2, now=T0) is True
    assert repo.chunks.requeue(chunks[1], attempt=2, now=T0) is False  # already in attempt 2
    chunks = repo.chunks.list(job.id)
    assert [(c.status, c.attempt) for c in chunks] == [(JobStatus.COMPLETED, 1), (JobStatus.QUEUED, 2)]
    assert (chunks[1].render_failures, chunks[1].error, chunks[1].lease_token) == (0, None, None)
    with pytest.raises(JobStateConflict):  # the old attempt is fenced off
        _claim(repo, job.id, 1, token="v")
    repo.advance_fanout(job.id, attempt=2, sent_before=-1, sent_now=1)
    with pytest.raises(JobStateConflict):
        repo.advance_fanout(job.id, attempt=2, sent_before=-1, sent_now=1)
    _, again = _claim(repo, job.id, 1, token="w", attempt=2)
    assert again.attempt == 2 and again.frames_done == 0


def test_assembly_lease_is_exclusive(repo, make_job):
    job = _multi_job(repo, make_job, frames=(1, 2), chunk_size=1)
    for index in (0, 1):
        _, chunk = _claim(repo, job.id, index)
        _record(repo, chunk)
    leased = repo.begin_assembly(job.id, attempt=1, worker="a", token="x", now=T0, lease_seconds=LEASE)
    assert leased.lease_token == "x" and leased.chunks_done == 2
    with pytest.raises(JobStateConflict):
        repo.begin_assembly(job.id, attempt=1, worker="b", token="y", now=T0, lease_seconds=LEASE)
    with pytest.raises(JobStateConflict):
        repo.complete_assembly(job.id, token="y", has_preview=True, now=T0, expires_at=T0 + LATER)
    done = repo.complete_assembly(job.id, token="x", has_preview=True, now=T0, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED and done.has_preview and done.frames_done == 2
    assert done.lease_token is None and done.finished_at == T0


def test_transitions_outside_the_state_machine_are_refused_before_any_write(repo, make_job):
    job = make_job()
    repo.add(job)
    with pytest.raises(ValueError, match="not a transition"):
        repo.transition(job.id, attempt=1, source=JobStatus.QUEUED, target=JobStatus.COMPLETED, now=T0)
    assert repo.get(job.id).status is JobStatus.QUEUED


# --- DynamoDB only: the item layout ----------------------------------------------------------------


def _raw(table, job_id, sk="JOB"):
    return aws.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": sk}}, ConsistentRead=True
    )["Item"]


def _listed_as(table, job_id):
    """The job's status, after checking that its listing entry (gsi1) is the one the put wrote."""
    item = _raw(table, job_id)
    assert item["gsi1pk"]["S"] == owner_partition("alice", job_id) and "gsi3pk" not in item
    return item["status"]["S"]


def test_dynamo_items_use_the_design_keys_and_sparse_index(dynamo_repo, table, make_job):
    repo = dynamo_repo
    job = make_job(frame_end=2)
    repo.add(job)
    item = _raw(table, job.id)
    assert item["gsi1pk"]["S"] == owner_partition("alice", job.id) and item["gsi1pk"]["S"].startswith("OWNER#alice#")
    assert item["gsi1sk"]["S"].endswith(f"#{job.id}")
    # The sweeper's entry: written with the item, whatever its state, and left alone by the claim and the end.
    marker = {k: item[k] for k in ("gsi2pk", "gsi2sk")}
    assert marker["gsi2pk"]["S"] == f"JOB#{shard_of(job.id, DUE_SHARDS)}"
    assert marker["gsi2sk"]["S"] == f"{job.created_at.isoformat(timespec='microseconds')}#{job.id}"
    assert _listed_as(table, job.id) == "QUEUED"
    _, chunk = _claim(repo, job.id)
    assert _listed_as(table, job.id) == "PROCESSING" and {k: _raw(table, job.id)[k] for k in marker} == marker
    repo.chunks.end(chunk, token="t", status=JobStatus.FAILED, now=T0, expires_at=T0 + LATER, failure=BOOM)
    item = _raw(table, job.id)
    assert {k: item[k] for k in marker} == marker and int(item["expires_at"]["N"]) == int((T0 + LATER).timestamp())
    assert _listed_as(table, job.id) == "FAILED"
    repo.retry(job.id, attempt=1, now=T0)
    assert _listed_as(table, job.id) == "QUEUED" and "expires_at" not in _raw(table, job.id)
    _, chunk = _claim(repo, job.id, attempt=2)
    assert _listed_as(table, job.id) == "PROCESSING"
    repo.transition(job.id, attempt=2, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    assert _listed_as(table, job.id) == "CANCELLING"
    repo.chunks.end(chunk, token="t", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER)
    assert _listed_as(table, job.id) == "CANCELLED"
    repo.retry(job.id, attempt=2, now=T0)
    _, chunk = _claim(repo, job.id, attempt=3)
    _record(repo, _record(repo, chunk), expires_at=T0 + LATER)
    assert _listed_as(table, job.id) == "COMPLETED"

    multi = _multi_job(repo, make_job, frames=(1, 2), chunk_size=1)
    chunk_item = _raw(table, multi.id, "TASK#00000")
    assert "gsi2pk" not in chunk_item  # the sweeper looks at chunks through their job's entry
    assert "gsi1pk" not in chunk_item  # only job items are listed
    _claim(repo, multi.id, 0)
    assert _listed_as(table, multi.id) == "PROCESSING"
    repo.fail(multi.id, attempt=1, failure=BOOM, now=T0, expires_at=T0 + LATER)
    assert _listed_as(table, multi.id) == "FAILED"
    repo.retry(multi.id, attempt=1, now=T0)
    repo.transition(
        multi.id, attempt=2, source=JobStatus.QUEUED, target=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER
    )
    assert _listed_as(table, multi.id) == "CANCELLED"
    repo.retry(multi.id, attempt=2, now=T0)
    for chunk in repo.chunks.list(multi.id):
        repo.chunks.requeue(chunk, attempt=3, now=T0)
        _, claimed = _claim(repo, multi.id, chunk.index, attempt=3)
        _record(repo, claimed)
    repo.begin_assembly(multi.id, attempt=3, worker="a", token="x", now=T0, lease_seconds=LEASE)
    assert _listed_as(table, multi.id) == "PROCESSING"
    repo.complete_assembly(multi.id, token="x", has_preview=False, now=T0, expires_at=T0 + LATER)
    assert _listed_as(table, multi.id) == "COMPLETED"
    listed = repo.list_for_owner("alice", status=JobStatus.COMPLETED, cursor=None, limit=10)
    assert {j.id for j in listed.jobs} == {job.id, multi.id}


def test_a_frame_list_is_stored_as_its_normal_form_and_only_when_it_skips_frames(dynamo_repo, table, make_job):
    listed = make_job(**frame_fields(FrameList.parse("200-210,1-100x2,150")), chunk_size=50)
    plain = make_job(**frame_fields(FrameList.parse("1-24")))
    for job in (listed, plain):
        dynamo_repo.add(job)
        dynamo_repo.chunks.put(job, job.new_chunks())
    assert _raw(table, listed.id)["frames"] == {"S": "1-99x2,150,200-210"}
    assert "frames" not in _raw(table, plain.id)  # as before frame lists: frame_start and frame_end say it all
    assert _raw(table, listed.id, "TASK#00000")["frames"] == {"S": "1-99x2"}
    assert _raw(table, listed.id, "TASK#00001")["frames"] == {"S": "150,200-210"}
    assert "frames" not in _raw(table, plain.id, "TASK#00000")


@pytest.mark.parametrize("sk", ["JOB", "TASK#00000"])
def test_frames_and_renewals_move_the_lease_but_not_the_sweepers_marker(dynamo_repo, table, make_job, sk):
    """No index write per frame: gsi2 keeps the put's marker while the lease moves on in the item (a chunk
    item has none: its job's marker stands for it)."""
    repo = dynamo_repo
    if sk == "JOB":
        job, index = make_job(frame_end=3), None
        repo.add(job)
    else:
        job, index = _multi_job(repo, make_job, frames=(1, 3), chunk_size=3), 0
    _, chunk = _claim(repo, job.id, index)
    marker = (_raw(table, job.id, sk).get("gsi2pk"), _raw(table, job.id, sk).get("gsi2sk"))
    assert (marker[0] is None) == (sk != "JOB")
    later = T0 + timedelta(seconds=LEASE * 3)
    chunk = _record(repo, chunk, now=later)
    repo.chunks.renew(chunk, token=TOKEN, until=later + timedelta(seconds=LEASE * 2))
    item = _raw(table, job.id, sk)
    assert (item.get("gsi2pk"), item.get("gsi2sk")) == marker
    assert float(item["lease_expires_at"]["N"]) == (later + timedelta(seconds=LEASE * 2)).timestamp()
    assert repo.chunks.get(job.id, index).held_by_live_lease(later)


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


def test_a_job_counts_its_chunks_in_two_numbers_and_keeps_its_size_whatever_its_chunks(dynamo_repo, make_job, table):
    """Issue 20: every chunk's write counts on its job item (frames done, chunks done) instead of adding an
    attribute per chunk: 60 chunks later the job item is no larger than before the first."""
    from jobs.devstack.capacity import item_size

    def job_item_size() -> int:
        item = aws.client("dynamodb").get_item(TableName=table, Key=job_key(job.id), ConsistentRead=True)["Item"]
        return item_size(item)

    job = _multi_job(dynamo_repo, make_job, frames=(1, 120), chunk_size=2)
    dynamo_repo.transition(job.id, attempt=1, source=JobStatus.QUEUED, target=JobStatus.PROCESSING, now=T0)
    before = job_item_size()
    for index in range(60):
        _, chunk = _claim(dynamo_repo, job.id, index)
        _record(dynamo_repo, _record(dynamo_repo, chunk))
    counted = dynamo_repo.get(job.id)
    assert (counted.frames_done, counted.chunks_done) == (120, 60)
    assert job_item_size() <= before + 8 < 1024  # two numbers grew by a few digits; nothing per chunk
    assert dynamo_repo.begin_assembly(job.id, attempt=1, worker="w", token="t", now=T0, lease_seconds=LEASE)


def test_a_recount_sets_the_counts_from_the_chunks_unless_a_chunk_counted_meanwhile(repo, make_job):
    job = _multi_job(repo, make_job)
    _, c0 = _claim(repo, job.id, 0)
    _record(repo, _record(repo, c0))  # chunk 0 done: counted with its writes
    _, c1 = _claim(repo, job.id, 1, token="u")
    _record(repo, c1, token="u")
    assert (repo.get(job.id).frames_done, repo.get(job.id).chunks_done) == (3, 1)
    again = repo.recount(job.id, attempt=1, now=T0)  # the chunks say the same: nothing to write
    assert (again.frames_done, again.chunks_done) == (3, 1)
    with pytest.raises(JobNotRunning):
        repo.recount(job.id, attempt=2, now=T0)


def test_a_recount_refuses_counts_that_moved_under_it(dynamo_repo, make_job, table):
    from jobs.repository import frames

    job = _multi_job(dynamo_repo, make_job)
    _, c0 = _claim(dynamo_repo, job.id, 0)
    _record(dynamo_repo, c0)
    client = aws.client("dynamodb")
    moved = frames.recount(client, table, job.id, attempt=1, seen=(0, 0), now=T0, totals=(9, 9))
    assert moved is False and dynamo_repo.get(job.id).frames_done == 1  # it had counted one frame: not 0
    assert frames.recount(client, table, job.id, attempt=1, seen=(1, 0), now=T0, totals=(1, 0)) is True


def test_a_retried_chunk_write_counts_its_frames_once(repo, make_job):
    """A progress write tried again (its answer lost) as the same write: the chunk and the job count its
    frames once, and the last one completes the chunk once."""
    job = _multi_job(repo, make_job)
    _, chunk = _claim(repo, job.id, 0)
    first = _record(repo, chunk, write_id="w1")
    assert _record(repo, chunk, write_id="w1").frames_done == first.frames_done == 1
    _record(repo, first, write_id="w2")
    _record(repo, first, write_id="w2")
    counted = repo.get(job.id)
    assert (counted.frames_done, counted.chunks_done) == (2, 1)
    assert _chunk(repo, job.id, 0).status is JobStatus.COMPLETED


def _budgets(repo):
    """The owner's budget and spend: on DynamoDB their own repository over the same table; the fake keeps both."""
    if isinstance(repo, InMemoryJobRepository):
        return repo
    return DynamoBudgets(client=aws.client("dynamodb"), table_name=repo._table)


def test_a_retried_chunk_write_counts_its_worker_seconds_and_spend_once(repo, make_job):
    """The worker-seconds of a progress write tried again as the same write count once on the chunk and the job,
    whichever storage shape (a chunk item, or a one-chunk job's item); the owner's month is charged a job's
    total once, by the write that ends the job."""
    job = _multi_job(repo, make_job)
    _, chunk = _claim(repo, job.id, 0)
    first = _record(repo, chunk, write_id="w1", worker_seconds=2.5, first_frame_seconds=1.25)
    _record(repo, chunk, write_id="w1", worker_seconds=2.5, first_frame_seconds=1.25)
    _record(repo, first, write_id="w2", worker_seconds=1.5)
    _record(repo, first, write_id="w2", worker_seconds=1.5)
    stored = _chunk(repo, job.id, 0)
    assert (stored.worker_seconds, stored.first_frame_seconds) == (4.0, 1.25)
    counted = repo.get(job.id)  # the job sums its chunks' seconds
    assert (counted.worker_seconds, counted.render_seconds, counted.first_frame_seconds) == (4.0, 2.0, 1.25)
    single = make_job(frame_end=2, chunk_size=2)
    repo.add(single)
    _, whole = _claim(repo, single.id)
    once = _record(repo, whole, write_id="w3", worker_seconds=3.0)
    _record(repo, whole, write_id="w3", worker_seconds=3.0)
    _record(repo, once, write_id="w4", worker_seconds=1.0)  # the last: it ends the job and charges its month
    done = repo.get(single.id)
    assert done.status is JobStatus.COMPLETED and done.worker_seconds == 4.0
    assert _budgets(repo).spend("alice", month=month_of(T0)).worker_seconds == 4.0  # the running job: not yet
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    repo.transition(job.id, attempt=1, source=JobStatus.CANCELLING, target=JobStatus.CANCELLED, now=T0)
    assert _budgets(repo).spend("alice", month=month_of(T0)).worker_seconds == 8.0


def test_a_retried_job_is_charged_only_the_seconds_of_its_new_attempt(repo, make_job):
    job = make_job(frame_end=2, chunk_size=2)
    repo.add(job)
    _, whole = _claim(repo, job.id)
    _record(repo, whole, worker_seconds=100.0)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    repo.transition(job.id, attempt=1, source=JobStatus.CANCELLING, target=JobStatus.CANCELLED, now=T0)
    month = month_of(T0)
    assert _budgets(repo).spend("alice", month=month).worker_seconds == 100.0
    for attempt in (1, 2):  # retried, then cancelled while QUEUED: nothing more was done, nothing more charged
        repo.retry(job.id, attempt=attempt, now=T0)
        repo.transition(job.id, attempt=attempt + 1, source=JobStatus.QUEUED, target=JobStatus.CANCELLED, now=T0)
    assert _budgets(repo).spend("alice", month=month).worker_seconds == 100.0
    repo.retry(job.id, attempt=3, now=T0)
    _, again = _claim(repo, job.id, attempt=4, token="t4")
    _record(repo, again, token="t4", worker_seconds=10.0)
    assert repo.get(job.id).status is JobStatus.COMPLETED and repo.get(job.id).worker_seconds == 110.0
    assert _budgets(repo).spend("alice", month=month).worker_seconds == 110.0


def test_a_refused_count_adds_no_worker_seconds_to_the_job(repo, make_job):
    job = _multi_job(repo, make_job)
    _, chunk = _claim(repo, job.id, 0)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    with pytest.raises(JobNotRunning):
        _record(repo, chunk, worker_seconds=5.0)
    # The job (what its owner is charged) did not count them; the chunk item shows its holder's time.
    assert repo.get(job.id).worker_seconds == 0.0 and _chunk(repo, job.id, 0).worker_seconds == 5.0
