"""Poison work: a dead-lettered message fails its chunk and job with a reason; anything else is only counted."""

from collections import Counter

from jobs.domain import JobStatus
from jobs.ports import DeadLetter, no_log_context
from jobs.ports.values import FANOUT_JOB, RENDER_CHUNK
from jobs.services import Outcome, chunk_process, dead_letters_fail_jobs, job_fanout, job_retry
from tests.conftest import T0
from tests.fakes import control, scene_files
from tests.unit.conftest import LEASE, drain, make_worker, submit


def letter(task, *args) -> DeadLetter:
    return DeadLetter(
        message_id=f"m-{task}-{args}", receipt_handle="r", task=task, args=list(args), receive_count=5, sent_at=T0
    )


def fail_jobs(repo, clock, *letters):
    return dead_letters_fail_jobs(jobs=control(repo), letters=list(letters), now=clock(), log_context=no_log_context)


def _fanned_out(repo, queue, clock, frames=(1, 8), chunk_size=2):
    job = submit(repo, queue, clock, frames=frames, chunk_size=chunk_size)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    queue.chunks.clear()
    return job


def test_a_render_letter_fails_its_chunk_and_job_and_cancels_idle_siblings(repo, queue, clock):
    job = _fanned_out(repo, queue, clock)  # four chunks
    claim = dict(attempt=1, worker="w", now=clock(), lease_seconds=LEASE)
    repo.chunks.claim(job.id, 0, token="crashed", **claim)  # its worker crashed on it, again and again
    _, waiting = repo.chunks.claim(job.id, 2, token="t2", **claim)
    repo.chunks.release(waiting, token="t2", now=clock())  # waiting to be claimed again
    repo.chunks.claim(job.id, 3, token="alive", **claim)  # rendering right now
    assert fail_jobs(repo, clock, letter(RENDER_CHUNK, job.id, 0, 1)) == Counter(job_failed=1)
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "dead_lettered")
    chunks = repo.chunks.list(job.id)
    assert [(c.status, c.error_code) for c in chunks] == [
        (JobStatus.FAILED, "dead_lettered"),
        (JobStatus.CANCELLED, None),  # queued
        (JobStatus.CANCELLED, None),  # released
        (JobStatus.PROCESSING, None),  # held by a live worker: it stops itself at its next frame
    ]
    assert chunks[0].lease_token is None and chunks[3].lease_token == "alive"


def test_a_render_letter_of_a_one_chunk_job_fails_the_job(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))
    assert fail_jobs(repo, clock, letter(RENDER_CHUNK, job.id, None, 1)) == Counter(job_failed=1)
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "dead_lettered")
    assert "dead-lettered" in failed.error
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.SKIPPED]  # its message, if any, is void


def test_a_fanout_letter_fails_the_queued_job(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 10))
    assert fail_jobs(repo, clock, letter(FANOUT_JOB, job.id, 1)) == Counter(job_failed=1)
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "dead_lettered")
    assert drain(repo, queue, make_worker(repo, store, clock)) == []  # the fan-out finds the job stopped
    assert repo.chunks.list(job.id) == []


def test_unknown_letters_are_counted_and_touch_nothing(repo, queue, clock):
    job = submit(repo, queue, clock)
    letters = [
        letter("celery.backend_cleanup"),
        letter(RENDER_CHUNK, job.id, None),  # not the arguments of a render message
        letter(FANOUT_JOB),
        letter(None),  # not a Celery message at all
    ]
    assert fail_jobs(repo, clock, *letters) == Counter(unknown=4)
    assert repo.get(job.id).status is JobStatus.QUEUED


def test_letters_of_finished_jobs_and_old_attempts_count_as_already_final(repo, queue, clock, store):
    done = submit(repo, queue, clock)
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE]
    retried = _fanned_out(repo, queue, clock)
    repo.chunks.claim(retried.id, 0, attempt=1, worker="w", token="t", now=clock(), lease_seconds=LEASE)
    assert fail_jobs(repo, clock, letter(RENDER_CHUNK, retried.id, 0, 1)) == Counter(job_failed=1)
    job_retry(jobs=control(repo, queue), job=repo.get(retried.id), now=clock(), scene_files=scene_files())  # attempt 2
    assert fail_jobs(
        repo,
        clock,
        letter(RENDER_CHUNK, done.id, None, 1),
        letter(RENDER_CHUNK, retried.id, 0, 1),  # a letter of attempt 1, seen again by the next sweep
        letter(FANOUT_JOB, retried.id, 1),
    ) == Counter(already_final=3)
    assert repo.get(done.id).status is JobStatus.COMPLETED
    second = repo.get(retried.id)
    assert (second.status, second.attempt, second.error) == (JobStatus.QUEUED, 2, None)
    # The retry runs as usual: the dead-lettered chunk joins attempt 2.
    assert drain(repo, queue, make_worker(repo, store, clock)) == [Outcome.DONE] * 4
    assert repo.get(retried.id).status is JobStatus.COMPLETED
    assert chunk_process(ctx=make_worker(repo, store, clock), job_id=retried.id, index=0, attempt=1)[0] is (
        Outcome.SKIPPED
    )
