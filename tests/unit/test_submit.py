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


def test_the_queue_down_withdraws_the_job_and_raises_503(repo, clock):
    with pytest.raises(ServiceUnavailable):
        submit(repo, FakeTaskQueue(down=True), clock, key="k1")
    assert repo.jobs == {} and repo.idempotency == {}


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
