"""Submitting a job: one message for a one-chunk job, a fan-out otherwise; idempotent; nothing left on a 503."""

import pytest

from jobs.domain import Priority
from jobs.errors import IdempotencyKeyReused, ServiceUnavailable
from jobs.services import job_create
from jobs.services.api_keys import SCOPE_HIGH
from tests.fakes import FakeTaskQueue, FakeWebhooks, control, scene_files
from tests.unit.conftest import spec, submit


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
    first, replayed = job_create(
        jobs=control(repo, queue),
        owner="alice",
        spec=spec(),
        idempotency_key="k",
        now=clock(),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        hooks=FakeWebhooks(),
    )
    again, replayed_again = job_create(
        jobs=control(repo, queue),
        owner="alice",
        spec=spec(),
        idempotency_key="k",
        now=clock(),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        hooks=FakeWebhooks(),
    )
    assert (again.id, replayed, replayed_again) == (first.id, False, True)
    assert len(repo.jobs) == 1 and len(queue.chunks) == 1
    with pytest.raises(IdempotencyKeyReused):
        job_create(
            jobs=control(repo, queue),
            owner="alice",
            spec=spec(name="other"),
            idempotency_key="k",
            now=clock(),
            scopes=frozenset({SCOPE_HIGH}),
            frame_limit=0,
            scene_files=scene_files(),
            hooks=FakeWebhooks(),
        )
    other_owner, _ = job_create(
        jobs=control(repo, queue),
        owner="bob",
        spec=spec(),
        idempotency_key="k",
        now=clock(),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        hooks=FakeWebhooks(),
    )
    assert other_owner.id != first.id  # keys are per owner
    clock.advance(25 * 3600)
    later, replayed = job_create(
        jobs=control(repo, queue),
        owner="alice",
        spec=spec(),
        idempotency_key="k",
        now=clock(),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        hooks=FakeWebhooks(),
    )
    assert later.id != first.id and not replayed  # the record expired
