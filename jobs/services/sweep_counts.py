"""What a sweeper pass counts, named once: the services count by these names, `manage.py sweep` labels them."""

from __future__ import annotations

from enum import StrEnum


class Swept(StrEnum):
    """What the sweeper did with one overdue item (jobs/services/sweeper.py, webhooks.webhooks_sweep)."""

    JOB_REQUEUED = "job_requeued"  # a one-chunk job's message sent again
    CHUNK_REQUEUED = "chunk_requeued"
    FANOUT_REQUEUED = "fanout_requeued"  # the fan-out creates or requeues what the attempt lacks
    ASSEMBLY_REQUEUED = "assembly_requeued"  # every chunk done, no assembly: a chunk message runs it again
    STEP_REQUEUED = "step_requeued"  # a job's step queued or released, or its holder dead: its message sent again
    WEBHOOK_REQUEUED = "webhook_requeued"
    CANCEL_FINISHED = "cancel_finished"
    CANCEL_WAITING = "cancel_waiting"  # a CANCELLING job whose chunks still run
    CHUNK_DROPPED = "chunk_dropped"  # a leftover chunk of a job that stopped
    JOB_FAILED = "job_failed"  # a job with no way to an end, failed with the reason
    LEASE_ALIVE = "lease_alive"  # rendering and renewing: looked at again later
    RUNNING = "running"
    ASSEMBLING = "assembling"
    STEP_RUNNING = "step_running"  # a job's step held by a live lease: looked at again later
    SKIPPED = "skipped"
    GONE = "gone"  # deleted meanwhile


DLQ_PREFIX = "dlq_"  # the sweeper's counts of dead letters, beside its own


class DeadLettered(StrEnum):
    """What the sweeper did with one dead letter (jobs/services/deadletters.py); counted as `dlq_<name>`."""

    JOB_FAILED = "job_failed"
    ALREADY_FINAL = "already_final"
    WEBHOOK = "webhook"  # a delivery's letter: its job untouched
    UNKNOWN = "unknown"  # not a message of ours

    @property
    def counted_as(self) -> str:
        return DLQ_PREFIX + self.value
