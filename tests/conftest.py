"""Fixtures shared by every tier."""

from datetime import UTC, datetime

import pytest

from jobs.domain import Job, JobStatus, OutputFormat, Priority, Scene, new_job_id

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_job():
    def make(**overrides) -> Job:
        fields = {
            "id": new_job_id(),
            "owner": "alice",
            "scene": Scene(name="shot", width=64, height=32, output_format=OutputFormat.PNG, samples=8),
            "frame_start": 1,
            "frame_end": 1,
            "priority": Priority.NORMAL,
            "status": JobStatus.QUEUED,
            "created_at": T0,
            "updated_at": T0,
        }
        fields.update(overrides)
        return Job(**fields)

    return make


@pytest.fixture(scope="session")
def emulator():
    """One embedded emulator process for the session, on a free port; this process's boto3 points at it."""
    import os

    from jobs import wiring
    from jobs.devstack.stack import Stack
    from jobs.repository.usage import ALLOWANCE
    from jobs.wiring import bootstrap_all

    stack = Stack()
    stack.start_emulator()
    saved = {k: os.environ.get(k) for k in stack.env}
    os.environ.update(stack.env)
    wiring.reset()
    bootstrap_all()
    yield stack
    ALLOWANCE.give_back(idle_seconds=0)  # frames the in-process API held ahead, back before the emulator stops
    stack.stop_all()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    wiring.reset()
