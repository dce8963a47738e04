"""The bench's count of one job's round trips from the emulator's trace (bench/compare.py)."""

from bench.compare import job_calls, sequential
from bench.farm import idle_between_jobs


def call(start: float, end: float, action: str = "PutItem", note: str = "") -> dict:
    service = "sqs" if action.endswith("Message") else "dynamodb"
    return {"start": start, "end": end, "service": service, "action": action, "note": note}


def test_a_jobs_calls_leave_out_empty_polls_heartbeats_and_what_came_before():
    trace = [
        call(0.0, 0.5),  # before the job
        call(0.0, 1.02, "ReceiveMessage", "delivered"),  # a long poll that began before the job, delivering it
        call(1.0, 1.01, "SendMessage"),
        call(1.0, 1.2, "ReceiveMessage", "empty"),
        call(1.03, 1.04, "PutItem", "WORKERS"),
        call(1.05, 1.06, "UpdateItem", "JOB"),
        call(1.5, 1.6, "DeleteMessage"),  # after the TAIL
    ]
    calls = job_calls(trace, start=1.0, done=1.1)
    assert [c["action"] for c in calls] == ["SendMessage", "ReceiveMessage", "UpdateItem"]
    assert sequential(calls) == 3  # the receive counts from its end, after the send


def test_calls_that_overlap_count_once_in_the_chain():
    calls = [call(1.0, 1.1), call(1.05, 1.15), call(1.2, 1.3)]
    assert sequential(calls) == 2


def test_a_pool_process_idle_time_is_measured_between_its_own_jobs_only():
    def job(worker, started, finished):
        at = "2026-12-07T20:00:{:06.3f}+00:00"
        return {
            "worker": {"S": worker},
            "started_at": {"S": at.format(started)},
            "finished_at": {"S": at.format(finished)},
        }

    items = [job("a", 1.0, 1.5), job("b", 1.2, 1.3), job("a", 0.0, 0.9), job("a", 2.5, 2.6), job("b", 1.35, 2.0)]
    assert sorted(round(gap, 3) for gap in idle_between_jobs(items)) == [0.05, 0.1, 1.0]
