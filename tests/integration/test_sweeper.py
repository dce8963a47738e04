"""The sweeper against DynamoDB: it finds overdue work through gsi2 and acts on each item once."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from jobs.domain import JobStatus, Priority, Task
from jobs.services import sweep
from tests.conftest import T0
from tests.fakes import FakeTaskQueue

GRACE = timedelta(minutes=5)
LATER = T0 + timedelta(minutes=10)


def run(repo, queue, now=LATER):
    return sweep(repo=repo, queue=queue, now=now, queued_grace=GRACE, retention=timedelta(days=1))


def test_a_queued_job_whose_message_was_lost_is_enqueued_again_once(dynamo_repo, make_job):
    job = make_job()
    dynamo_repo.add(job)  # as if the API wrote the item and then could not reach SQS
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(minutes=1)) == {}  # still within the grace period
    assert run(dynamo_repo, queue) == {"job_requeued": 1}
    assert queue.chunks == [(job.id, None, 1, Priority.NORMAL)]
    assert run(dynamo_repo, queue) == {}  # postponed: not again until the grace period passes once more


def test_concurrent_sweeps_act_on_each_item_once(dynamo_repo, make_job):
    jobs = [make_job() for _ in range(12)]
    for job in jobs:
        dynamo_repo.add(job)
    queue = FakeTaskQueue()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: run(dynamo_repo, queue), range(3)))
    assert sorted(c[0] for c in queue.chunks) == sorted(j.id for j in jobs)


def test_lapsed_chunk_leases_stale_attempts_and_lost_fanouts(dynamo_repo, make_job):
    job = make_job(frame_start=1, frame_end=4, chunk_size=2)
    dynamo_repo.add(job)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue) == {"fanout_requeued": 1}  # the fan-out message was lost
    tasks = [
        Task(job_id=job.id, index=i, frame_start=1 + 2 * i, frame_end=2 + 2 * i, status=JobStatus.QUEUED, attempt=1)
        for i in range(2)
    ]
    dynamo_repo.put_tasks(job, tasks)
    dynamo_repo.start(job.id, attempt=1, now=T0)
    dynamo_repo.claim_task(job.id, 0, attempt=1, worker="dead", token="t", now=T0, lease_seconds=60)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(seconds=30)) == {}  # lease live, task 1 within grace
    assert run(dynamo_repo, queue) == {"chunk_requeued": 2}  # the dead worker's chunk and the lost message
    assert sorted(c[1] for c in queue.chunks) == [0, 1]


def test_a_cancelling_job_whose_worker_died_is_cancelled(dynamo_repo, make_job):
    job = make_job(frame_start=1, frame_end=4, chunk_size=2)
    dynamo_repo.add(job)
    dynamo_repo.put_tasks(
        job, [Task(job_id=job.id, index=0, frame_start=1, frame_end=2, status=JobStatus.QUEUED, attempt=1)]
    )
    dynamo_repo.start(job.id, attempt=1, now=T0)
    dynamo_repo.claim_task(job.id, 0, attempt=1, worker="dead", token="t", now=T0, lease_seconds=60)
    dynamo_repo.transition(job.id, attempt=1, source=JobStatus.PROCESSING, target=JobStatus.CANCELLING, now=T0)
    queue = FakeTaskQueue()
    assert run(dynamo_repo, queue, now=T0 + timedelta(seconds=30))["cancel_waiting"] == 1  # worker may be alive
    done = run(dynamo_repo, queue, now=LATER + GRACE)
    assert done["cancel_finished"] == 1
    assert dynamo_repo.get(job.id).status is JobStatus.CANCELLED
