"""The fan-out of a job of several chunks: idempotent, and a run that died resends at most one batch."""

import pytest

from jobs.services import job_fanout
from tests.fakes import control
from tests.unit.conftest import submit


def test_fanout_is_idempotent(repo, queue, clock):
    job = submit(repo, queue, clock, frames=(1, 120), chunk_size=5)
    queue.fanouts.clear()
    assert job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock()) == 24
    assert job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock()) == 0
    assert [c[1] for c in queue.chunks] == list(range(24))
    assert len(repo.chunks.list(job.id)) == 24


def test_fanout_that_died_after_a_send_resends_only_that_batch(repo, queue, clock):
    job = submit(repo, queue, clock, frames=(1, 60), chunk_size=5)
    queue.fanouts.clear()
    real_advance = repo.advance_fanout
    calls = []

    def dies_on_second_advance(job_id, **kw):
        calls.append(kw)
        if len(calls) == 2:
            raise SystemExit("worker died")
        return real_advance(job_id, **kw)

    repo.advance_fanout = dies_on_second_advance
    with pytest.raises(SystemExit):
        job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    repo.advance_fanout = real_advance
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    indexes = [c[1] for c in queue.chunks]
    assert sorted(set(indexes)) == list(range(12))
    assert len(indexes) == 12 + 2  # chunks 10 and 11 went out twice; their duplicates lose the claim
