"""Submitting a job: one message for a one-chunk job, a fan-out otherwise; idempotent; nothing left on a 503."""

import pytest

from jobs.domain import Priority
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
    recorded = repo.idempotency["alice#k1"].job_id
    job, replayed = create(repo, queue, clock, "k1")
    assert (job.id, replayed) == (recorded, True) and list(repo.jobs) == [recorded]
    assert queue.chunks == [(recorded, None, 1, Priority.HIGH)]  # sent once, by the retry
    assert create(repo, queue, clock, "k1")[0].id == recorded and len(queue.chunks) == 1


def test_a_record_whose_job_was_never_stored_is_finished_by_the_next_request_with_its_key(repo, queue, clock):
    """The key's first request stored its record and died before its job's put: the retry stores and sends
    the job under the recorded id, once."""
    first, _ = create(repo, queue, clock, "k2")
    del repo.jobs[first.id]  # as if the request had died between its two writes, before sending
    queue.chunks.clear()
    again, replayed = create(repo, queue, clock, "k2")
    assert (again.id, replayed) == (first.id, True) and queue.chunks == [(first.id, None, 1, Priority.HIGH)]
    assert create(repo, queue, clock, "k2") == (again, True) and len(queue.chunks) == 1


def test_a_request_whose_job_a_retry_stored_first_returns_that_job_and_sends_nothing(repo, queue, clock, monkeypatch):
    """The first request, a moment behind a retry that finished its job: its job's put finds the job stored."""
    monkeypatch.setattr("jobs.services.submit.new_job_id", lambda: "j-fixed")  # the recorded id, both times
    stored, _ = create(repo, queue, clock, "retry")
    clock.advance(1)
    job, replayed = create(repo, queue, clock, "first")
    assert (job, replayed) == (stored, True) and len(queue.chunks) == 1


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
