"""The emulator's AWS-like latency (`--latency`, jobs/devstack/latency.py): each call waits its round trip,
concurrent calls wait side by side, a long poll waits its round trip once, and the bench's observer none.
The margins are wide on purpose: the machine may be shared, so only "at least" and "well below double" hold."""

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from werkzeug.test import EnvironBuilder

from jobs.devstack.emulator import OBSERVER_MARK, CountingApp
from jobs.devstack.latency import parse_latency
from jobs.devstack.stack import Stack

DYNAMODB, SQS = 0.5, 0.3  # seconds: long enough to stand above a loaded machine's noise


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """An emulator of its own, with 500 ms per DynamoDB call and 300 ms per SQS call, and one table in it."""
    stack = Stack(log_dir=tmp_path_factory.mktemp("latency"))
    endpoint = stack.start_emulator(latency=f"dynamodb={DYNAMODB * 1000:g},sqs={SQS * 1000:g}")
    try:

        def client(service: str, **config):
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="x",
                aws_secret_access_key="y",
                config=Config(**config),
            )

        table = f"slow-{uuid.uuid4().hex[:8]}"
        client("dynamodb").create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        yield SimpleNamespace(client=client, table=table, endpoint=endpoint)
    finally:
        stack.stop_all()


def timed(call) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_a_call_waits_at_least_its_round_trip(slow):
    client, table = slow.client, slow.table
    dynamodb = client("dynamodb")
    assert timed(lambda: dynamodb.get_item(TableName=table, Key={"pk": {"S": "none"}})) >= DYNAMODB


def test_concurrent_calls_wait_side_by_side_not_in_turn(slow):
    client, table = slow.client, slow.table
    clients = [client("dynamodb") for _ in range(2)]
    for c in clients:  # connect first, so the timed calls are the round trips alone
        c.describe_table(TableName=table)

    def get(c) -> None:
        c.get_item(TableName=table, Key={"pk": {"S": "none"}})

    with ThreadPoolExecutor(2) as pool:
        took = timed(lambda: list(pool.map(get, clients)))
    assert DYNAMODB <= took < 1.7 * DYNAMODB  # one after the other would be 2x


def test_a_long_poll_waits_its_round_trip_once_beside_its_poll(slow):
    client = slow.client
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=f"slow-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    took = timed(lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1))
    assert 1 + SQS <= took < 1 + 3 * SQS


def test_the_trace_lists_each_call_with_its_round_trip(slow):
    client, table = slow.client, slow.table
    since = time.time()
    client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "JOB#1"}})
    with urllib.request.urlopen(f"{slow.endpoint}/_emulator/trace?since={since}") as resp:
        (call,) = json.load(resp)["trace"]
    assert (call["service"], call["action"], call["note"]) == ("dynamodb", "PutItem", "JOB")
    assert call["end"] - call["start"] >= DYNAMODB


def test_the_benchs_own_polling_does_not_wait(slow):
    client, table = slow.client, slow.table
    observer = client("dynamodb", user_agent_extra=OBSERVER_MARK)
    observer.describe_table(TableName=table)
    assert timed(lambda: observer.get_item(TableName=table, Key={"pk": {"S": "none"}})) < DYNAMODB


def test_the_aws_profile_and_overrides():
    aws = parse_latency("aws")
    assert aws.seconds("dynamodb", "GetItem") == 0.005 and aws.seconds("sqs", "ReceiveMessage") == 0.010
    assert aws.seconds("s3", "PutObject") == 0.025 and aws.seconds("s3", "GetObject") == 0.015
    assert parse_latency("aws,sqs=20").seconds("sqs", "SendMessage") == 0.020
    assert not parse_latency("") and not parse_latency("none")
    with pytest.raises(ValueError, match="unknown latency profile"):
        parse_latency("azure")


def test_the_services_own_work_is_part_of_the_round_trip_not_added_to_it():
    """moto's CPU on a call stands for the service's work, which an AWS round trip includes: a call whose serving
    burns 200 ms of CPU under a 300 ms latency waits 150 ms besides its serving (it waited 300 ms before)."""
    latency, burn = 0.3, 0.2
    served = {}

    def busy_moto(environ, start_response):
        wall, cpu = time.monotonic(), time.thread_time()
        while time.thread_time() - cpu < burn:
            pass
        served["wall"] = time.monotonic() - wall
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        return [b"{}"]

    app = CountingApp(busy_moto, latency=parse_latency(f"dynamodb={latency * 1000:g}"))
    environ = EnvironBuilder(
        method="POST", headers={"X-Amz-Target": "DynamoDB_20120810.DescribeLimits"}, data=b"{}"
    ).get_environ()
    took = timed(lambda: app(environ, lambda status, headers: None))
    besides_serving = took - served["wall"]
    assert latency / 2 <= besides_serving < latency / 2 + 0.08  # the way there, and no way back left
