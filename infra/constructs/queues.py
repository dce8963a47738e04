"""The three render queues and their dead-letter queue (`<prefix>render-...`), and the webhook queue with a
dead-letter queue of its own (`<prefix>webhooks`, `<prefix>webhooks-dlq`), named as the app expects."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jobs.domain import Priority
from jobs.domain.timing import MAX_RECEIVE_COUNT  # bootstrap_aws uses it too

PRIORITIES = [str(p) for p in Priority]


def dead_letter_queue(scope: Construct, name: str) -> sqs.Queue:
    """A dead-letter queue: encrypted, TLS only, messages kept 14 days for the operator."""
    return sqs.Queue(
        scope,
        "Dlq",
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )


def work_queue(scope: Construct, id: str, name: str, *, dlq: sqs.IQueue, visibility_timeout_seconds: int) -> sqs.Queue:
    """A queue workers long-poll (20 s), encrypted (SSE-SQS: no KMS calls per message) and TLS only, whose
    messages go to `dlq` after MAX_RECEIVE_COUNT receives."""
    return sqs.Queue(
        scope,
        id,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=Duration.seconds(visibility_timeout_seconds),
        receive_message_wait_time=Duration.seconds(20),
        retention_period=Duration.days(4),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=MAX_RECEIVE_COUNT),
    )


class RenderQueues(Construct):
    """The three render queues (`work_queue`s), redriving to one DLQ."""

    def __init__(self, scope: Construct, id: str, *, prefix: str, visibility_timeout_seconds: int):
        super().__init__(scope, id)
        self.prefix = prefix
        self.dlq = dead_letter_queue(self, f"{prefix}render-dlq")
        # The visibility timeout is the worker's lease and time limits too: the app derives them from
        # RENDER_VISIBILITY_TIMEOUT, which the stack sets to this same value.
        self.queues: dict[str, sqs.Queue] = {
            priority: work_queue(
                self,
                priority.capitalize(),
                f"{prefix}render-{priority}",
                dlq=self.dlq,
                visibility_timeout_seconds=visibility_timeout_seconds,
            )
            for priority in PRIORITIES
        }

    def environment(self) -> dict[str, str]:
        env = {"RENDER_QUEUE_PREFIX": self.prefix, "RENDER_DLQ_URL": self.dlq.queue_url}
        env.update({f"RENDER_QUEUE_URL_{p.upper()}": q.queue_url for p, q in self.queues.items()})
        return env


class WebhookQueues(Construct):
    """The queue of webhook deliveries and its own DLQ: a delivery message no webhook worker could finish never
    lands among the render dead letters (whose handling fails jobs). Encrypted and TLS-only like the render queues.
    """

    def __init__(self, scope: Construct, id: str, *, prefix: str, visibility_timeout_seconds: int):
        super().__init__(scope, id)
        self.dlq = dead_letter_queue(self, f"{prefix}webhooks-dlq")
        # Held invisible by the webhook worker while it tries (as render workers do), so the same timeout works;
        # a retry is a new message, delayed by SQS (at most 900 s: the backoff's cap).
        self.queue = work_queue(
            self, "Queue", f"{prefix}webhooks", dlq=self.dlq, visibility_timeout_seconds=visibility_timeout_seconds
        )

    def environment(self) -> dict[str, str]:
        return {"RENDER_QUEUE_URL_WEBHOOKS": self.queue.queue_url, "RENDER_WEBHOOK_DLQ_URL": self.dlq.queue_url}
