"""The context a worker's log lines carry for each of its messages (jobs/worker/signals.py)."""

from jobs.ports.values import FANOUT_JOB, RENDER_CHUNK, RUN_STEP
from jobs.worker.signals import message_fields


def test_each_message_names_its_job_attempt_and_its_chunk_or_step():
    headers = {"job_id": "j1", "request_id": "r1"}
    assert message_fields(RENDER_CHUNK, ("j1", 4, 2), headers) == {
        "job_id": "j1", "chunk": 4, "attempt": 2, "request_id": "r1"
    }  # fmt: skip
    assert message_fields(FANOUT_JOB, ("j1", 2), headers) == {"job_id": "j1", "attempt": 2, "request_id": "r1"}
    assert message_fields(RUN_STEP, ("j1", 3, 0), None) == {"job_id": "j1", "attempt": 3, "step": 0, "request_id": None}
