"""Operator commands against the emulator: `dlq list|replay|purge` and `sweep`, as people and scripts read them."""

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs import wiring
from jobs.adapters import aws
from jobs.adapters.dead_letter_queue import DeadLetterQueue
from jobs.devstack.stack import ROOT
from jobs.domain import JobStatus, utcnow
from tests.fakes import FakeTaskQueue, control


def celery_body(task: str, args: list) -> str:
    """A message body as kombu's SQS transport writes a Celery task (what the DLQ holds)."""
    body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
    envelope = {"body": body, "headers": {"task": task}, "properties": {"body_encoding": "base64"}}
    return base64.b64encode(json.dumps(envelope).encode()).decode()


@pytest.fixture
def dlq(emulator, monkeypatch):
    sqs = aws.client("sqs")
    queue = DeadLetterQueue(client=sqs, url=sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:10]}")["QueueUrl"])
    monkeypatch.setattr(wiring, "dead_letter_queue", lambda: queue)
    return queue


@pytest.fixture
def queue(dynamo_repo, monkeypatch):
    """The commands' repository on this test's table; messages they send are recorded, not sent."""
    fake = FakeTaskQueue()
    monkeypatch.setattr(wiring, "job_repository", lambda: dynamo_repo)
    monkeypatch.setattr(wiring, "task_queue", lambda: fake)
    monkeypatch.setattr(wiring, "job_control", lambda: control(dynamo_repo, fake, retention=wiring.retention()))
    return fake


def dead_letter(dlq, job_id: str, index=None, attempt: int = 1) -> None:
    body = celery_body("jobs.render_chunk", [job_id, index, attempt])
    aws.client("sqs").send_message(QueueUrl=dlq.url, MessageBody=body)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_dlq_list_says_when_the_queue_is_empty_and_json_prints_nothing(dlq):
    assert run("dlq", "list") == "The dead-letter queue is empty.\n"
    assert run("dlq", "list", "--json") == ""
    assert run("dlq", "replay") == "The dead-letter queue is empty.\n"


def test_dlq_list_shows_each_letter_and_leaves_it_there(dlq):
    dead_letter(dlq, "a" * 32, 3, 2)
    listed = run("dlq", "list")
    assert f'job {"a" * 32}  jobs.render_chunk ["{"a" * 32}", 3, 2]' in listed
    assert listed.rstrip().endswith("1 dead letter(s). `dlq replay` retries their jobs.")
    [line] = run("dlq", "list", "--json").splitlines()  # a peek: still there
    record = json.loads(line)
    assert record["task"] == "jobs.render_chunk" and record["args"] == ["a" * 32, 3, 2]
    assert "crashes" in record and "deliveries" not in record and record["sent_at"]


def test_dlq_purge_needs_yes_and_says_how_many_it_would_delete(dlq):
    dead_letter(dlq, "a" * 32)
    dead_letter(dlq, "b" * 32)
    with pytest.raises(CommandError, match=r"would delete about 2 message\(s\).*--yes"):
        run("dlq", "purge")
    assert len(run("dlq", "list", "--json").splitlines()) == 2  # nothing deleted
    assert run("dlq", "purge", "--yes") == "Purged the dead-letter queue (about 2 message(s)).\n"
    assert run("dlq", "list") == "The dead-letter queue is empty.\n"


def test_dlq_purge_exits_non_zero_without_yes_from_the_command_line(dlq, emulator, tmp_path):
    # CommandError is exit status 1 through manage.py; checked once for real, with the queue named by URL.
    env = {**os.environ, "RENDER_DLQ_URL": dlq.url, "RENDER_DEVSTACK_ENV": str(tmp_path / "none")}
    done = subprocess.run(
        [sys.executable, "manage.py", "dlq", "purge"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "would delete about 0 message(s)" in done.stderr


def test_sweep_prints_a_summary_and_replay_retries_the_failed_job(dlq, queue, dynamo_repo, make_job):
    hour_ago = utcnow() - timedelta(hours=1)
    lost = make_job(created_at=hour_ago, updated_at=hour_ago)  # QUEUED, its message lost
    poison = make_job(created_at=hour_ago, updated_at=hour_ago)
    dynamo_repo.add(lost)
    dynamo_repo.add(poison)
    dead_letter(dlq, poison.id)  # a one-chunk job's message, dead-lettered
    assert run("sweep") == (
        "sweep: re-enqueued 1 (1 one-chunk jobs), finished 0 cancel(s), failed 1 dead-lettered job(s), skipped 0\n"
    )
    assert dynamo_repo.get(poison.id).status is JobStatus.FAILED
    assert [c[0] for c in queue.chunks] == [lost.id]
    assert json.loads(run("sweep", "--json")) == {"dlq_already_final": 1}  # postponed; the letter is still there

    replayed = run("dlq", "replay")
    assert replayed == f"dlq replay: deleted 1 dead letter(s); retried 1 job(s): {poison.id}\n"
    assert dynamo_repo.get(poison.id).status is JobStatus.QUEUED and dynamo_repo.get(poison.id).attempt == 2
    assert run("dlq", "list") == "The dead-letter queue is empty.\n"


OPERATOR_COMMANDS = [
    ["farm_status"],
    ["dlq", "list"],
    ["dlq", "replay", "--json"],
    ["sweep"],
    ["create_api_key", "--owner", "alice"],
    ["revoke_api_key", "--owner", "alice"],
    ["list_api_keys"],
    ["bootstrap_aws"],
    ["create_webhook_secret", "--owner", "alice"],
]


@pytest.mark.parametrize(
    ("aim", "reason"),
    [
        ({}, "no local stack is running (`make run` starts one) and no AWS credentials are set"),
        (
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
            'Could not connect to the endpoint URL: "http://127.0.0.1:9/"',
        ),
    ],
    ids=["no_stack_no_credentials", "endpoint_down"],
)
def test_operator_commands_say_in_one_line_that_aws_is_unreachable(tmp_path, aim, reason):
    """No stack up, AWS unreachable: one line on stderr and exit 1 from every command, never a traceback."""
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENDER_", "CELERY_"))}
    shell.update(
        {
            "RENDER_DEVSTACK_ENV": str(tmp_path / "no-stack"),
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **aim,
        }
    )
    for command in OPERATOR_COMMANDS if not aim else OPERATOR_COMMANDS[:2]:  # any endpoint fails the same way
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=shell, capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.splitlines()
        assert done.returncode == 1, (command, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("CommandError: ") and reason in lines[0], (command, lines)
        assert done.stdout == ""


@pytest.fixture
def webhook_dlq(emulator, monkeypatch):
    sqs = aws.client("sqs")
    queue = DeadLetterQueue(client=sqs, url=sqs.create_queue(QueueName=f"wdlq-{uuid.uuid4().hex[:10]}")["QueueUrl"])
    monkeypatch.setattr(wiring, "webhook_dead_letter_queue", lambda: queue)
    return queue


def test_a_dead_webhook_message_never_fails_or_retries_its_job_and_replay_resends_the_delivery(
    dlq, webhook_dlq, queue, dynamo_repo, table, make_job, monkeypatch
):
    from jobs.domain import Priority
    from jobs.ports import WebhookDelivery
    from jobs.repository.webhooks import DynamoWebhookRepository

    hooks = DynamoWebhookRepository(client=aws.client("dynamodb"), table_name=table)
    monkeypatch.setattr(wiring, "webhook_repository", lambda: hooks)
    job = make_job(status=JobStatus.CANCELLED)
    dynamo_repo.add(job)
    now = utcnow()
    delivery = WebhookDelivery(
        job_id=job.id,
        job_attempt=1,
        event=JobStatus.CANCELLED,
        owner=job.owner,
        url="https://example.com/h",
        priority=Priority.NORMAL,
        created_at=now,
    )
    assert hooks.open(delivery, due=now + timedelta(minutes=5), expires_at=now + timedelta(days=1))
    letter = celery_body("jobs.deliver_webhook", [job.id, 1, "CANCELLED"])
    aws.client("sqs").send_message(QueueUrl=webhook_dlq.url, MessageBody=letter)
    aws.client("sqs").send_message(QueueUrl=dlq.url, MessageBody=letter)  # one sent before its own queue existed

    # The sweeper fails no job for it (counted apart from unreadable letters), whichever DLQ it sits in.
    assert json.loads(run("sweep", "--json")) == {"dlq_webhook": 1}
    assert "1 webhook letters, their jobs untouched" in run("sweep")
    assert dynamo_repo.get(job.id).status is JobStatus.CANCELLED

    listed = run("dlq", "list", "--queue", "webhooks")
    assert f"job {job.id}  webhook of its CANCELLED (attempt 1)  delivery pending after 0 tries" in listed
    assert listed.rstrip().endswith("1 dead letter(s). `dlq replay` resends their pending deliveries.")
    [record] = [json.loads(line) for line in run("dlq", "list", "--queue", "webhooks", "--json").splitlines()]
    assert record["delivery"] == {"state": "pending", "tries": 0} and "crashes" not in record

    replayed = run("dlq", "replay", "--queue", "webhooks")
    assert replayed == "dlq replay: deleted 1 dead letter(s); resent 1 of 1 webhook delivery(ies)\n"
    assert queue.webhooks == [(job.id, 1, "CANCELLED")]
    assert run("dlq", "list", "--queue", "webhooks") == "The webhook dead-letter queue is empty.\n"
    # The render DLQ's copy: replay resends the delivery too, and does not retry the job.
    assert json.loads(run("dlq", "replay", "--json")) == {"letters": 1, "jobs_retried": [], "webhooks_resent": 1}
    job_now = dynamo_repo.get(job.id)
    assert (job_now.status, job_now.attempt) == (JobStatus.CANCELLED, 1)
