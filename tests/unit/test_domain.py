"""The state machine and the pure helpers of the job model."""

import itertools

import pytest

from jobs.domain import TRANSITIONS, JobStatus, OutputFormat, can_transition, frame_key, manifest_key

ALLOWED = {
    ("QUEUED", "PROCESSING"),
    ("QUEUED", "CANCELLED"),
    ("QUEUED", "FAILED"),  # failed before any frame started: dead-lettered fan-out, poison, broken worker
    ("PROCESSING", "COMPLETED"),
    ("PROCESSING", "FAILED"),
    ("PROCESSING", "CANCELLING"),
    ("CANCELLING", "CANCELLED"),
    ("FAILED", "QUEUED"),
    ("CANCELLED", "QUEUED"),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(JobStatus, JobStatus)))
def test_transitions_are_exactly_those_of_the_design(src, dst):
    assert can_transition(src, dst) == ((src.value, dst.value) in ALLOWED)


def test_every_state_has_an_entry_and_completed_is_terminal():
    assert set(TRANSITIONS) == set(JobStatus)
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()


def test_keys_are_deterministic_and_zero_padded():
    assert frame_key("abc", 7, OutputFormat.PNG) == "jobs/abc/frames/00007.png"
    assert frame_key("abc", 12345, OutputFormat.JPEG) == "jobs/abc/frames/12345.jpg"
    assert manifest_key("abc") == "jobs/abc/manifest.json"


def test_progress_and_frames(make_job):
    job = make_job(frame_start=10, frame_end=13).replace(frames_done=1)
    assert job.frames_total == 4
    assert list(job.frames) == [10, 11, 12, 13]
    assert job.progress == 0.25
