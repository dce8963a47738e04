"""Submitting a job: one message for a one-chunk job, a fan-out otherwise; idempotent; nothing left on a 503."""

import pytest

from jobs.domain import JobStatus, Priority
from jobs.errors import IdempotencyKeyReused, ServiceUnavailable
from tests.fakes import FakeTaskQueue, FakeWebhooks
from tests.unit.conftest import create, submit


def test_a_one_chunk_job_is_one_message_and_a_bigger_one_is_fanned_out(repo, queue, clock):
    one = submit(repo, queue, clock, frames=(1, 5))
    many = submit(repo, queue, clock, frames=(1, 24))
    assert queue.chunks == [(one.id, None, 1, Priority.HIGH)]
    assert queue.fanouts == [(many.id, 1, Priority.HIGH)]
    assert repo.chunks.list(many.id) == []  # off the request path


def test_the_queue_down_withdraws_the_job_and_raises_503_and_a_retry_with_the_key_makes_it(repo, queue, clock):
    with pytest.raises(ServiceUnavailable):
        submit(repo, FakeTaskQueue(down=True), clock, key="k1")
    assert repo.jobs == {} and list(repo.idempotency) == ["alice#k1"]  # the record stays, for the retry
    assert repo.usage["alice"] == 0  # its frames given back
    recorded = repo.idempotency["alice#k1"].job_id
    job, replayed = create(repo, queue, clock, "k1")
    assert (job.id, replayed) == (recorded, True) and list(repo.jobs) == [recorded]
    assert queue.chunks == [(recorded, None, 1, Priority.HIGH)]  # sent once, by the retry
    assert create(repo, queue, clock, "k1")[0].id == recorded and len(queue.chunks) == 1
    assert repo.usage["alice"] == job.frames_total  # counted once: the replay gave its frames back


def test_a_record_whose_job_was_never_stored_is_finished_by_the_next_request_with_its_key(repo, queue, clock):
    """The key's first request stored its record and died before its job's put: the retry stores and sends
    the job under the recorded id, once."""
    first, _ = create(repo, queue, clock, "k2")
    del repo.jobs[first.id]  # as if the request had died between its two writes, before sending
    repo.release_frames("alice", first.frames_total)  # (and its frames had not been counted)
    queue.chunks.clear()
    again, replayed = create(repo, queue, clock, "k2")
    assert (again.id, replayed) == (first.id, True) and queue.chunks == [(first.id, None, 1, Priority.HIGH)]
    assert create(repo, queue, clock, "k2") == (again, True) and len(queue.chunks) == 1
    assert repo.usage["alice"] == again.frames_total


def test_a_first_request_whose_job_its_retry_stored_first_returns_that_job_and_sends_nothing(repo, queue, clock):
    """Two requests with one key, interleaved: the first stores its record; its retry finds the record without
    a job and stores and sends it; then the first's own job put finds the job there. One job, one message, its
    frames counted once."""
    real_add = repo.add
    retried = []

    def add(job, *, idempotency=None):
        if idempotency is None or retried:
            return real_add(job, idempotency=idempotency)
        retried.append(None)
        repo.idempotency[idempotency.name] = idempotency  # the first request's record put
        clock.advance(0.001)
        retried[0] = create(repo, queue, clock, "k3")  # its retry, in between: the record, and no job yet
        return real_add(job)  # then the first request's job put

    repo.add = add
    job, replayed = create(repo, queue, clock, "k3")
    ((retry_job, retry_replayed),) = retried
    assert retry_job.id == job.id and (replayed, retry_replayed) == (True, True)
    assert list(repo.jobs) == [job.id] and queue.chunks == [(job.id, None, 1, Priority.HIGH)]
    assert repo.usage["alice"] == job.frames_total


def test_a_send_that_failed_only_on_its_way_back_leaves_the_job_accepted(repo, clock):
    """SQS took the message but the answer was lost (503 to the API): a worker has claimed the job by the
    time the API would withdraw it, so the job is accepted, its frames counted once, and nothing is resent."""

    class LostAnswer(FakeTaskQueue):
        def enqueue_chunk(self, *, job_id, index, attempt, priority) -> None:
            self.chunks.append((job_id, index, attempt, priority))
            repo.jobs[job_id] = repo.jobs[job_id].replace(status=JobStatus.PROCESSING)  # a worker's claim
            raise ServiceUnavailable("SQS: no answer")

    queue = LostAnswer()
    job = submit(repo, queue, clock, key="k4")
    assert repo.get(job.id).status is JobStatus.PROCESSING and len(queue.chunks) == 1
    assert repo.usage["alice"] == job.frames_total


def test_idempotent_submit_returns_the_original_job(repo, queue, clock):
    first, replayed = create(repo, queue, clock, "k", FakeWebhooks())
    again, replayed_again = create(repo, queue, clock, "k", FakeWebhooks())
    assert (again.id, replayed, replayed_again) == (first.id, False, True)
    assert len(repo.jobs) == 1 and len(queue.chunks) == 1
    with pytest.raises(IdempotencyKeyReused):
        create(repo, queue, clock, "k", FakeWebhooks(), name="other")
    other_owner, _ = create(repo, queue, clock, "k", FakeWebhooks(), owner="bob")
    assert other_owner.id != first.id  # keys are per owner
    clock.advance(25 * 3600)
    later, replayed = create(repo, queue, clock, "k", FakeWebhooks())
    assert later.id != first.id and not replayed  # the record expired
