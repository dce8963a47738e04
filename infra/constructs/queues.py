"""The three render queues and their dead-letter queue, named as the app expects (`<prefix>render-...`)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

PRIORITIES = ("high", "normal", "low")
MAX_RECEIVE_COUNT = 5  # bootstrap_aws uses the same value


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
