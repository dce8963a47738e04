"""The three render queues and their dead-letter queue (`<prefix>render-...`), and the webhook queue with a
dead-letter queue of its own (`<prefix>webhooks`, `<prefix>webhooks-dlq`), named as the app expects."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jobs.domain import Priority
from jobs.domain.timing import MAX_RECEIVE_COUNT  # bootstrap_aws uses it too

PRIORITIES = [str(p) for p in Priority]


class RenderQueues(Construct):
    """Standard queues, encrypted (SSE-SQS: no KMS calls per message), TLS enforced, redriving to the DLQ."""

    def __init__(self, scope: Construct, id: str, *, prefix: str, visibility_timeout_seconds: int):
        super().__init__(scope, id)
        self.prefix = prefix
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=f"{prefix}render-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        # The visibility timeout is the worker's lease and time limits too: the app derives them from
        # RENDER_VISIBILITY_TIMEOUT, which the stack sets to this same value.
        self.queues: dict[str, sqs.Queue] = {
            priority: sqs.Queue(
                self,
                priority.capitalize(),
                queue_name=f"{prefix}render-{priority}",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                visibility_timeout=Duration.seconds(visibility_timeout_seconds),
                receive_message_wait_time=Duration.seconds(20),
                retention_period=Duration.days(4),
                dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
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
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=f"{prefix}webhooks-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        # Held invisible by the webhook worker while it tries (as render workers do), so the same timeout works;
        # a retry is a new message, delayed by SQS (at most 900 s: the backoff's cap).
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=f"{prefix}webhooks",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds),
            receive_message_wait_time=Duration.seconds(20),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )

    def environment(self) -> dict[str, str]:
        return {"RENDER_QUEUE_URL_WEBHOOKS": self.queue.queue_url, "RENDER_WEBHOOK_DLQ_URL": self.dlq.queue_url}
