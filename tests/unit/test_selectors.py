"""Reads: a job's ETA, the chunks of a one-chunk job, and another owner's job looking like a missing one."""

from datetime import timedelta

import pytest

from jobs.domain import JobStatus
from jobs.errors import InvalidCursor, JobNotFound
from jobs.services.selectors import job_chunks, job_get
from tests.conftest import T0
from tests.unit.conftest import submit


def test_eta_from_the_measured_rate_and_tasks_of_a_one_chunk_job(repo, queue, clock, make_job):
    job = make_job(frame_start=1, frame_end=10).replace(status=JobStatus.PROCESSING, started_at=T0, frames_done=4)
    assert job.eta_seconds(T0 + timedelta(seconds=8)) == 12.0
    assert job.replace(frames_done=0).eta_seconds(T0) is None
    single = submit(repo, queue, clock, frames=(1, 3))
    page = job_chunks(repo=repo, job=single, cursor=None, limit=10)
    assert [(t.index, t.frame_start, t.frame_end) for t in page.chunks] == [(0, 1, 3)]
    assert page.cursor is None
    with pytest.raises(InvalidCursor):  # its only page has no next one
        job_chunks(repo=repo, job=single, cursor="1", limit=10)


def test_other_owners_get_404(repo, queue, clock):
    job = submit(repo, queue, clock)
    assert job_get(repo=repo, owner="alice", job_id=job.id) == job
    with pytest.raises(JobNotFound):
        job_get(repo=repo, owner="mallory", job_id=job.id)
