"""The operators' adapters against the emulator: heartbeat items, running jobs by state, queue depths and the
oldest message's age (CloudWatch), and the embedded-metric lines CloudWatch Logs turns into metrics."""

import json
import logging
import uuid
from datetime import timedelta

import pytest

from jobs.adapters import aws
from jobs.adapters.logs import JsonLineFormatter
from jobs.adapters.metrics import EmbeddedMetrics
from jobs.adapters.queue_stats import SqsQueueStats
from jobs.domain import JobStatus
from jobs.ports.values import WorkerBeat
from jobs.repository.farm import DynamoFarm
from jobs.repository.indexes import unfinished_by_state
from tests.conftest import T0


def _beat(worker_id: str, *, beat_at, **fields) -> WorkerBeat:
    return WorkerBeat(
        id=worker_id,
        host="host-a",
        pid=100,
        version="1.2.3",
        started_at=T0,
        beat_at=beat_at,
        expires_at=beat_at + timedelta(seconds=30),
        **fields,
    )


def test_heartbeats_list_live_workers_with_their_work_and_skip_expired_ones(table):
    farm = DynamoFarm(client=aws.client("dynamodb"), table_name=table)
    now = T0 + timedelta(minutes=5)
    farm.beat(_beat("w-busy", beat_at=now, job_id="j1", chunk=3, attempt=2, frames_done=4, frames_total=10))
    farm.beat(_beat("w-idle", beat_at=now - timedelta(seconds=5)))
    farm.beat(_beat("w-dead", beat_at=now - timedelta(minutes=2)))  # expired: TTL is late, reads are not
    farm.beat(_beat("w-idle", beat_at=now))  # the last beat is the truth
    workers = {w.id: w for w in farm.workers(now=now)}
    assert sorted(workers) == ["w-busy", "w-idle"]
    busy = workers["w-busy"]
    assert (busy.job_id, busy.chunk, busy.attempt, busy.frames_done, busy.frames_total) == ("j1", 3, 2, 4, 10)
    assert (busy.host, busy.pid, busy.version, busy.started_at, busy.beat_at) == ("host-a", 100, "1.2.3", T0, now)
    assert workers["w-idle"].job_id is None and workers["w-idle"].beat_at == now


def test_running_jobs_are_counted_by_state(table, dynamo_repo, make_job):
    queued, running, done = (make_job() for _ in range(3))
    for job in (queued, running, done):
        dynamo_repo.add(job)
    dynamo_repo.chunks.claim(running.id, None, attempt=1, worker="w", token="t", now=T0, lease_seconds=10)
    dynamo_repo.transition(
        done.id, attempt=1, source=JobStatus.QUEUED, target=JobStatus.CANCELLED, now=T0, expires_at=T0
    )
    farm = DynamoFarm(client=aws.client("dynamodb"), table_name=table)
    assert farm.jobs_by_state() == ({"QUEUED": 1, "PROCESSING": 1, "CANCELLING": 0}, True)
    # More entries than a count may read: the counts are a lower bound, and say so.
    assert unfinished_by_state(aws.client("dynamodb"), table, cap=1)[1] is False


@pytest.fixture
def queues(emulator):
    sqs = aws.client("sqs")
    prefix = f"qs-{uuid.uuid4().hex[:8]}-"
    names = {p: f"{prefix}{p}" for p in ("high", "normal", "low")}
    urls = {p: sqs.create_queue(QueueName=name)["QueueUrl"] for p, name in names.items()}
    dlq = sqs.create_queue(QueueName=f"{prefix}dlq")["QueueUrl"]
    return sqs, names, urls, dlq


def test_queue_depths_per_priority_and_the_dlq(queues):
    sqs, names, urls, dlq = queues
    for _ in range(3):
        sqs.send_message(QueueUrl=urls["high"], MessageBody="m")
    sqs.send_message(QueueUrl=urls["low"], MessageBody="later", DelaySeconds=60)
    sqs.send_message(QueueUrl=dlq, MessageBody="poison")
    sqs.receive_message(QueueUrl=urls["high"], MaxNumberOfMessages=1, VisibilityTimeout=60)
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": names["high"]}],
                "Value": 42.0,
                "Unit": "Seconds",
            }
        ],
    )
    # Configured URLs are used as they are; the DLQ's is looked up by name.
    stats = SqsQueueStats(
        sqs=sqs, cloudwatch=cloudwatch, queues=names, urls=urls, dlq_name=names["high"][:-4] + "dlq", dlq_url=""
    )
    depths = stats.queues()
    high, low = depths["high"], depths["low"]
    assert (high.visible, high.in_flight, high.delayed, high.oldest_age) == (2, 1, 0, 42.0)
    assert (low.visible, low.delayed, low.oldest_age) == (0, 1, None)  # no datapoint: no age, not zero
    assert stats.dead_letters().visible == 1


def test_queue_depths_without_cloudwatch_still_answer(queues):
    sqs, names, _, dlq = queues

    class Down:
        def get_metric_data(self, **kwargs):
            raise ConnectionError("CloudWatch is unreachable")

    stats = SqsQueueStats(sqs=sqs, cloudwatch=Down(), queues=names, urls={}, dlq_name="", dlq_url=dlq)
    assert {p: d.oldest_age for p, d in stats.queues().items()} == {"high": None, "normal": None, "low": None}


def test_metrics_are_embedded_metric_format_lines(caplog):
    metrics = EmbeddedMetrics(namespace="RenderFarm/test")
    with caplog.at_level(logging.INFO, "render.metrics"):
        metrics.frame_rendered(seconds=1.5)
        metrics.job_finished(outcome="COMPLETED", seconds=30.0)
        metrics.api_request(route="jobs-list", status=200, milliseconds=12.5)
    lines = [json.loads(JsonLineFormatter().format(r)) for r in caplog.records]
    frame, job, api = lines
    spec = frame["_aws"]["CloudWatchMetrics"][0]
    assert spec["Namespace"] == "RenderFarm/test" and spec["Dimensions"] == [[]]
    assert spec["Metrics"] == [
        {"Name": "FramesRendered", "Unit": "Count"},
        {"Name": "RenderSeconds", "Unit": "Seconds"},
    ]
    assert (frame["FramesRendered"], frame["RenderSeconds"]) == (1, 1.5)
    assert isinstance(frame["_aws"]["Timestamp"], int)
    assert job["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Outcome"]]
    assert (job["Outcome"], job["JobsFinished"], job["JobDuration"]) == ("COMPLETED", 1, 30.0)
    assert api["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[], ["Status"], ["Route", "Status"]]
    assert (api["Route"], api["Status"], api["ApiLatency"]) == ("jobs-list", "200", 12.5)
    assert caplog.records[0].getMessage() == "metric FramesRendered=1 RenderSeconds=1.5"
