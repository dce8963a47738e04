"""A job's steps in DynamoDB against the emulator: every write conditional; the same contract on the fake."""

from datetime import timedelta

import pytest

from jobs.adapters import aws
from jobs.domain import Encode, Failure, JobStatus, StepArtifact, StepStatus, VideoFormat, new_steps
from jobs.errors import JobNotRunning, JobStateConflict, LeaseLost, StaleWrite
from jobs.ports import JobControl, NoNotifier
from jobs.services.control import finish_cancel_if_idle
from tests.conftest import T0
from tests.fakes import FakeTaskQueue, InMemoryJobRepository

LEASE = 30
LATER = timedelta(days=1)
BOOM = Failure("encode_failed", "ffmpeg failed (exit 1): boom")
HOLDER = "s"  # a lease token
MP4, WEBM = Encode(format=VideoFormat.MP4, fps=24), Encode(format=VideoFormat.WEBM, fps=12)


@pytest.fixture(params=["dynamo", "fake"])
def repo(request):
    if request.param == "fake":
        return InMemoryJobRepository()
    return request.getfixturevalue("dynamo_repo")


def _artifact(fmt=VideoFormat.MP4, frames=2):
    return StepArtifact(
        key=f"jobs/x/video.{fmt}", size=10, sha256="a" * 64, content_type=fmt.content_type, frames=frames, fps=24
    )


def _assembled(repo, make_job, steps=(MP4,)):
    """A job of one chunk item (2 frames) whose chunk completed and whose assembler handed it to its steps."""
    job = make_job(frame_start=1, frame_end=2, chunk_size=2, steps=new_steps(steps))
    repo.add(job)
    repo.chunks.put(job, job.new_chunks())
    _, chunk = repo.chunks.claim(job.id, 0, attempt=1, worker="r", token="r", now=T0, lease_seconds=LEASE)
    from jobs.domain import FrameResult

    results = [FrameResult(frame=f, key=f"k{f}", size=1, sha256="0" * 64, content_type="image/png") for f in (1, 2)]
    repo.chunks.record_frames(
        chunk,
        token="r",
        results=results,
        render_seconds=1.0,
        now=T0,
        lease_until=T0 + timedelta(seconds=LEASE),
    )
    leased = repo.begin_assembly(job.id, attempt=1, worker="asm", token="asm", now=T0, lease_seconds=LEASE)
    return repo.steps.begin(leased, token="asm", has_preview=True, now=T0)


def _claim(repo, job_id, index=0, *, token=HOLDER, now=T0, attempt=1, worker="w"):
    return repo.steps.claim(job_id, index, attempt=attempt, worker=worker, token=token, now=now, lease_seconds=LEASE)


def test_steps_roundtrip_and_a_job_with_steps_always_has_chunk_items(repo, make_job):
    job = make_job(frame_start=1, frame_end=3, chunk_size=5, steps=new_steps([MP4, WEBM]))
    repo.add(job)
    stored = repo.get(job.id)
    assert stored.steps == job.steps and stored.steps_attempt == 0 and not stored.single_chunk
    assert [(s.spec, s.status, s.attempt) for s in stored.steps] == [
        (MP4, StepStatus.WAITING, 1),
        (WEBM, StepStatus.WAITING, 1),
    ]


def test_the_assembler_hands_the_job_to_its_first_step_once(repo, make_job):
    begun = _assembled(repo, make_job, steps=(MP4, WEBM))
    assert begun.status is JobStatus.PROCESSING and begun.steps_attempt == 1 and begun.has_preview
    assert [s.status for s in begun.steps] == [StepStatus.QUEUED, StepStatus.WAITING]
    assert begun.lease_token is None  # released for the step
    with pytest.raises(JobStateConflict):  # the assembly does not run again in this attempt
        repo.begin_assembly(begun.id, attempt=1, worker="b", token="b", now=T0 + LATER, lease_seconds=LEASE)
    with pytest.raises((LeaseLost, JobStateConflict)):  # only the assembler's lease hands over
        repo.steps.begin(begun, token="asm", has_preview=True, now=T0)


def test_a_step_claim_is_exclusive_until_its_lease_lapses_then_a_takeover_counts_a_crash(repo, make_job):
    job = _assembled(repo, make_job)
    claimed = _claim(repo, job.id, token="a")
    assert claimed.lease_token == "a" and claimed.steps[0].status is StepStatus.PROCESSING
    assert claimed.steps[0].started_at == T0 and claimed.steps[0].crashes == 0
    with pytest.raises(StaleWrite):
        _claim(repo, job.id, token="b", now=T0 + timedelta(seconds=LEASE - 1))
    repo.steps.record_progress(
        job.id, 0, attempt=1, token="a", frames_done=1, lease_until=T0 + timedelta(seconds=LEASE)
    )
    assert repo.get(job.id).steps[0].frames_done == 1
    taken = _claim(repo, job.id, token="b", now=T0 + timedelta(seconds=LEASE + 1))
    assert taken.lease_token == "b" and taken.steps[0].crashes == 1 and taken.steps[0].frames_done == 0
    with pytest.raises(LeaseLost):  # the old holder is fenced
        repo.steps.record_progress(job.id, 0, attempt=1, token="a", frames_done=2, lease_until=T0 + LATER)
    with pytest.raises(StaleWrite):  # another attempt's message claims nothing
        _claim(repo, job.id, token="c", attempt=2, now=T0 + LATER)


def test_a_released_step_is_claimed_again_at_once_with_its_failure_counted(repo, make_job):
    job = _assembled(repo, make_job)
    _claim(repo, job.id, token="a")
    released = repo.steps.release(job.id, 0, attempt=1, token="a", now=T0, failure=BOOM)
    step = released.steps[0]
    assert released.lease_token is None and (step.failures, step.error, step.error_code) == (
        1,
        BOOM.message,
        BOOM.code,
    )
    again = _claim(repo, job.id, token="b", now=T0 + timedelta(seconds=1))
    assert again.lease_token == "b" and again.steps[0].crashes == 0 and again.steps[0].failures == 1


def test_completing_the_last_step_completes_the_job_and_another_queues_the_next(repo, make_job):
    job = _assembled(repo, make_job, steps=(MP4, WEBM))
    claimed = _claim(repo, job.id, token="a")
    with pytest.raises(LeaseLost):
        repo.steps.complete(claimed, 0, token="other", artifact=_artifact(), now=T0, expires_at=T0 + LATER)
    between = repo.steps.complete(claimed, 0, token="a", artifact=_artifact(), now=T0, expires_at=T0 + LATER)
    assert between.status is JobStatus.PROCESSING and between.lease_token is None
    assert [s.status for s in between.steps] == [StepStatus.COMPLETED, StepStatus.QUEUED]
    assert between.steps[0].artifact == _artifact() and between.steps[0].frames_done == 2
    with pytest.raises(StaleWrite):  # a duplicate of the first step's message
        _claim(repo, job.id, 0, token="dup")
    second = _claim(repo, job.id, 1, token="b")
    webm = _artifact(VideoFormat.WEBM)
    done = repo.steps.complete(second, 1, token="b", artifact=webm, now=T0, expires_at=T0 + LATER)
    assert done.status is JobStatus.COMPLETED and done.finished_at == T0 and done.lease_token is None
    assert [s.status for s in done.steps] == [StepStatus.COMPLETED, StepStatus.COMPLETED]
    assert done.steps[1].artifact.duration == pytest.approx(2 / 24, abs=1e-6)
    with pytest.raises(JobNotRunning):
        _claim(repo, job.id, 1, token="late")


def test_a_cancel_waits_for_the_steps_lease_and_its_holder_ends_the_job_cancelled(repo, make_job):
    job = _assembled(repo, make_job)
    _claim(repo, job.id, token="a")
    jobs = JobControl(repo=repo, queue=FakeTaskQueue(), notifier=NoNotifier(), retention=LATER)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    assert finish_cancel_if_idle(jobs=jobs, job_id=job.id, attempt=1, now=T0) is None  # the encode runs
    with pytest.raises(JobNotRunning):  # its next progress write learns of the cancel
        repo.steps.record_progress(job.id, 0, attempt=1, token="a", frames_done=1, lease_until=T0 + LATER)
    with pytest.raises(JobStateConflict):
        repo.steps.end(job.id, 0, attempt=1, token="b", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER)
    ended = repo.steps.end(job.id, 0, attempt=1, token="a", status=JobStatus.CANCELLED, now=T0, expires_at=T0 + LATER)
    assert ended.status is JobStatus.CANCELLED and ended.steps[0].status is StepStatus.CANCELLED
    assert ended.lease_token is None


def test_a_dead_encoders_cancel_is_finished_once_its_lease_lapses(repo, make_job):
    job = _assembled(repo, make_job)
    _claim(repo, job.id, token="a")
    jobs = JobControl(repo=repo, queue=FakeTaskQueue(), notifier=NoNotifier(), retention=LATER)
    repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    later = T0 + timedelta(seconds=LEASE + 1)
    assert finish_cancel_if_idle(jobs=jobs, job_id=job.id, attempt=1, now=later).status is JobStatus.CANCELLED


def test_the_holder_fails_the_step_and_its_job_and_an_error_outside_counts_then_fails(repo, make_job):
    job = _assembled(repo, make_job)
    _claim(repo, job.id, token="a")
    failed = repo.steps.end(
        job.id, 0, attempt=1, token="a", status=JobStatus.FAILED, now=T0, expires_at=T0 + LATER, failure=BOOM
    )
    assert failed.status is JobStatus.FAILED and failed.error == BOOM.message and failed.error_code == BOOM.code
    assert (failed.steps[0].status, failed.steps[0].failures) == (StepStatus.FAILED, 1)

    other = _assembled(repo, make_job)
    _claim(repo, other.id, token="a")
    with pytest.raises(JobStateConflict):  # a live lease holds it: not ours to count
        repo.steps.note_failure(other.id, 0, attempt=1, failure=BOOM, now=T0)
    later = T0 + timedelta(seconds=LEASE + 1)
    noted = repo.steps.note_failure(other.id, 0, attempt=1, failure=BOOM, now=later)
    assert noted.steps[0].failures == 1 and noted.lease_token is None
    gone = repo.steps.fail(other.id, 0, attempt=1, failure=BOOM, now=later, expires_at=later + LATER)
    assert gone.status is JobStatus.FAILED and gone.steps[0].status is StepStatus.FAILED


# --- DynamoDB only ------------------------------------------------------------------------------------


def test_steps_live_on_the_job_item_and_its_frames_leave_the_owners_usage_at_the_end(dynamo_repo, table, make_job):
    repo = dynamo_repo
    job = _assembled(repo, make_job)
    repo.reserve_frames(job.owner, job.frames_total, limit=0)
    claimed = _claim(repo, job.id, token="a")
    raw = aws.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "JOB"}}, ConsistentRead=True
    )["Item"]
    step = raw["steps"]["L"][0]["M"]
    assert step["type"] == {"S": "encode"} and step["format"] == {"S": "mp4"} and step["fps"] == {"N": "24"}
    assert step["status"] == {"S": "PROCESSING"} and raw["steps_attempt"] == {"N": "1"}
    # The claim writes no index entry: the sweeper's marker stays where the steps' begin set it.
    assert raw["gsi2pk"]["S"].startswith("JOB#")
    assert raw["gsi2sk"]["S"].startswith(T0.isoformat(timespec="microseconds"))
    repo.steps.complete(claimed, 0, token="a", artifact=_artifact(), now=T0, expires_at=T0 + LATER)
    usage = aws.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": f"OWNER#{job.owner}"}, "sk": {"S": "USAGE"}}, ConsistentRead=True
    )["Item"]
    assert usage["frames_active"] == {"N": "0"}
