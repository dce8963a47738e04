"""A job's steps in DynamoDB: the `steps` list on the job item, each step's state written by path.

While a step runs, every chunk is done and the assembly is over, so the job item's own lease (`lease_token`,
`lease_expires_at`, `worker`) is the step's: a cancel's `finish_cancel_if_idle` waits for it like for a
chunk's, and the sweeper's audit of the job finds a dead holder by it. Every write is conditional on the job's
attempt, on the steps having started in it (`steps_attempt`) and, once claimed, on the lease token. Used as
`DynamoJobRepository.steps`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.domain import Failure, Job, JobStatus, Step, StepArtifact, StepStatus
from jobs.errors import JobNotRunning, LeaseLost, StaleWrite
from jobs.repository import partitions as P
from jobs.repository.dynamo import (
    FINISHED,
    HOLDS_LEASE,
    conditional_update,
    failure_values,
    lease_values,
    set_status,
)
from jobs.repository.items import due_index, epoch, iso, item_to_job, job_key, seconds, step_to_map
from jobs.repository.usage import settle_usage

STEP_VALUES = {f":step_{s.value.lower()}": s.value for s in StepStatus}
# The step is ours to take: queued, or released after a failed attempt (no lease token).
CLAIMABLE = (
    "attempt = :attempt AND #status = :st_processing AND steps_attempt = :attempt AND ({s}.#status = :step_queued"
    " OR ({s}.#status = :step_processing AND attribute_not_exists(lease_token)))"
)
# A takeover: the last holder's lease lapsed without a release, so it died (or hung) holding the step.
TAKEOVER = (
    "attempt = :attempt AND #status = :st_processing AND steps_attempt = :attempt AND {s}.#status = :step_processing"
    " AND lease_token = :old_token AND lease_expires_at < :epoch"
)
NOT_HELD = "(attribute_not_exists(lease_token) OR lease_expires_at < :epoch)"


def _at(index: int) -> str:
    return f"steps[{int(index)}]"


def _due(job_id: str, since: datetime) -> dict[str, Any]:
    return {f":{k}": v for k, v in due_index(P.JOB_KIND, since, job_id).items()}


class DynamoStepRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def begin(self, job: Job, *, token: str, has_preview: bool, now: datetime) -> Job:
        """By the assembler: the steps not COMPLETED wait again in this attempt, the first one QUEUED; the job's
        lease is released, and the sweeper looks at the job again after its grace period (a lost step message
        is sent again then)."""
        first = job.current_step
        values: dict[str, Any] = {
            ":token": token,
            ":attempt": job.attempt,
            ":now": iso(now),
            ":preview": has_preview,
            **_due(job.id, now),
        }
        resets = []
        for index, step in enumerate(job.steps):
            if step.status is StepStatus.COMPLETED:
                continue
            status = StepStatus.QUEUED if index == first else StepStatus.WAITING
            values[f":s{index}"] = step_to_map(Step(spec=step.spec, status=status, attempt=job.attempt))
            resets.append(f"{_at(index)} = :s{index}")
        expression = (
            "SET has_preview = :preview, steps_attempt = :attempt, updated_at = :now, gsi2pk = :gsi2pk,"
            f" gsi2sk = :gsi2sk{''.join(', ' + r for r in resets)} REMOVE lease_token, lease_expires_at"
        )
        return self._holder_write(job.id, expression, HOLDS_LEASE, values)

    def claim(
        self, job_id: str, index: int, *, attempt: int, worker: str, token: str, now: datetime, lease_seconds: int
    ) -> Job:
        s = _at(index)
        lease = lease_values(worker=worker, token=token, now=now, lease_seconds=lease_seconds, attempt=attempt)
        # No index write: the sweeper looks at the job after its grace period and postpones it while a live
        # lease holds it (a dead holder's step is taken over then, or sooner by its message's redelivery).
        values = {**lease, **STEP_VALUES, ":zero": 0}
        expression = (
            "SET worker = :worker, lease_token = :token, lease_expires_at = :lease, updated_at = :now,"
            f" {s}.#status = :step_processing,"
            f" {s}.started_at = if_not_exists({s}.started_at, :now), {s}.frames_done = :zero"
        )
        try:
            item = conditional_update(
                self._client, self._table, job_key(job_id), expression, condition=CLAIMABLE.format(s=s), values=values
            )
        except StaleWrite as exc:
            current = exc.current
            if not _dead_holder(current, index, attempt, now):
                raise _not_running(exc, attempt) from exc
            item = conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"{expression}, {s}.crashes = {s}.crashes + :one",
                condition=TAKEOVER.format(s=s),
                values={**values, ":old_token": current["lease_token"], ":one": 1},
            )
        return item_to_job(item)

    def record_progress(
        self, job_id: str, index: int, *, attempt: int, token: str, frames_done: int, lease_until: datetime
    ) -> None:
        """The holder's progress (frames encoded) and lease renewal, in one write."""
        self._held(
            job_id,
            f"SET {_at(index)}.frames_done = :n, lease_expires_at = :lease",
            {":n": frames_done, ":lease": seconds(lease_until), ":token": token, ":attempt": attempt},
            returns=False,
        )

    def release(
        self, job_id: str, index: int, *, attempt: int, token: str, now: datetime, failure: Failure | None = None
    ) -> Job:
        """Lapse the lease so the next message claims the step at once: after a failed attempt (counted, with its
        error) or at a worker's shutdown (no failure)."""
        s = _at(index)
        counted = f"{s}.failures = {s}.failures + :one, {s}.#error = :error, {s}.error_code = :error_code, "
        return self._held(
            job_id,
            f"SET {counted if failure else ''}updated_at = :now, lease_expires_at = :lapsed, gsi2sk = :gsi2sk"
            " REMOVE lease_token",
            {
                ":one": 1,
                ":now": iso(now),
                ":lapsed": 0,
                ":token": token,
                ":attempt": attempt,
                **(failure_values(failure) if failure else {}),
                **_due(job_id, now),
            },
        )

    def complete(
        self,
        job: Job,
        index: int,
        *,
        token: str,
        artifact: StepArtifact,
        now: datetime,
        expires_at: datetime,
    ) -> Job:
        s = _at(index)
        done = step_to_map(Step(spec=job.steps[index].spec, artifact=artifact))["artifact"]
        values: dict[str, Any] = {
            **STEP_VALUES,
            ":token": token,
            ":attempt": job.attempt,
            ":now": iso(now),
            ":frames": artifact.frames,
            ":artifact": done,
        }
        expression = (
            f"SET {s}.#status = :step_completed, {s}.frames_done = :frames, {s}.artifact = :artifact,"
            f" {s}.finished_at = :now"
        )
        if index + 1 < len(job.steps):  # the next step is queued; the lease is released for it
            expression += (
                f", {_at(index + 1)}.#status = :step_queued, updated_at = :now, lease_expires_at = :lapsed,"
                " gsi2pk = :gsi2pk, gsi2sk = :gsi2sk REMOVE lease_token"
            )
            values.update({":lapsed": 0, **_due(job.id, now)})
            return self._holder_write(job.id, expression, HOLDS_LEASE, values)
        status, listed = set_status(JobStatus.COMPLETED)
        expression += f", {status}, {FINISHED}, #error, error_code"
        values.update({**listed, ":ttl": epoch(expires_at)})
        return self._holder_write(job.id, expression, HOLDS_LEASE, values, settles=True)

    def end(
        self,
        job_id: str,
        index: int,
        *,
        attempt: int,
        token: str,
        status: JobStatus,
        now: datetime,
        expires_at: datetime,
        failure: Failure | None = None,
    ) -> Job:
        s = _at(index)
        job_status, listed = set_status(status)
        values: dict[str, Any] = {
            **STEP_VALUES,
            **listed,
            ":token": token,
            ":attempt": attempt,
            ":now": iso(now),
            ":ttl": epoch(expires_at),
        }
        if status is JobStatus.CANCELLED:
            expression = f"SET {s}.#status = :step_cancelled, {s}.finished_at = :now, {job_status}, {FINISHED}"
            condition = "#status = :st_cancelling AND lease_token = :token AND attempt = :attempt"
        elif status is JobStatus.FAILED and failure is not None:
            values.update({":one": 1, **failure_values(failure)})
            expression = (
                f"SET {s}.#status = :step_failed, {s}.failures = {s}.failures + :one, {s}.#error = :error,"
                f" {s}.error_code = :error_code, {s}.finished_at = :now, {job_status}, #error = :error,"
                f" error_code = :error_code, {FINISHED}"
            )
            condition = HOLDS_LEASE
        else:
            raise ValueError("a step ends FAILED (with its failure) or CANCELLED")
        return self._holder_write(job_id, expression, condition, values, settles=True)

    def note_failure(self, job_id: str, index: int, *, attempt: int, failure: Failure, now: datetime) -> Job:
        s = _at(index)
        return item_to_job(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET {s}.failures = {s}.failures + :one, {s}.#error = :error, {s}.error_code = :error_code,"
                " updated_at = :now REMOVE lease_token",
                condition=(
                    f"attempt = :attempt AND #status = :st_processing AND steps_attempt = :attempt"
                    f" AND {s}.#status IN (:step_queued, :step_processing) AND {NOT_HELD}"
                ),
                values={
                    **STEP_VALUES,
                    ":attempt": attempt,
                    ":one": 1,
                    ":now": iso(now),
                    ":epoch": seconds(now),
                    **failure_values(failure),
                },
            )
        )

    def fail(
        self, job_id: str, index: int, *, attempt: int, failure: Failure, now: datetime, expires_at: datetime
    ) -> Job:
        """The step and its job FAIL, whoever holds them (an error outside the step's run, past its attempts)."""
        s = _at(index)
        job_status, listed = set_status(JobStatus.FAILED)
        return self._final(
            conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                f"SET {s}.#status = :step_failed, {s}.#error = :error, {s}.error_code = :error_code,"
                f" {s}.finished_at = :now, {job_status}, #error = :error, error_code = :error_code, {FINISHED}",
                condition="#status = :st_processing AND attempt = :attempt",
                values={
                    **STEP_VALUES,
                    **listed,
                    ":attempt": attempt,
                    ":now": iso(now),
                    ":ttl": epoch(expires_at),
                    **failure_values(failure),
                },
            )
        )

    # --- helpers ---------------------------------------------------------------------------------
    def _held(self, job_id: str, expression: str, values: dict, *, returns: bool = True) -> Job | None:
        """A write by the step's lease holder (the job PROCESSING in its attempt, its token)."""
        try:
            item = conditional_update(
                self._client,
                self._table,
                job_key(job_id),
                expression,
                condition=HOLDS_LEASE,
                values=values,
                returns=returns,
            )
        except StaleWrite as exc:
            raise _lost(exc) from exc
        return item_to_job(item) if returns else None

    def _holder_write(
        self, job_id: str, expression: str, condition: str, values: dict, *, settles: bool = False
    ) -> Job:
        try:
            item = conditional_update(
                self._client, self._table, job_key(job_id), expression, condition=condition, values=values
            )
        except StaleWrite as exc:
            raise _lost(exc) from exc
        return self._final(item) if settles else item_to_job(item)

    def _final(self, item: dict[str, Any]) -> Job:
        settle_usage(self._client, self._table, item)
        return item_to_job(item)


def _dead_holder(current: dict[str, Any], index: int, attempt: int, now: datetime) -> bool:
    """The step is PROCESSING in this attempt, held by a token whose lease lapsed: its holder died."""
    steps = current.get("steps") or []
    step = steps[index] if 0 <= index < len(steps) else {}
    return (
        current.get("status") == JobStatus.PROCESSING
        and int(current.get("attempt", 0)) == attempt
        and int(current.get("steps_attempt", 0)) == attempt
        and step.get("status") == StepStatus.PROCESSING
        and bool(current.get("lease_token"))
        and float(current.get("lease_expires_at", 0)) < now.timestamp()
    )


def _not_running(exc: StaleWrite, attempt: int) -> StaleWrite | JobNotRunning:
    """The job stopped in this attempt (cancelled, failed, finished): JobNotRunning; else the conflict as it is."""
    if exc.attempt == attempt and exc.status != JobStatus.PROCESSING:
        return JobNotRunning(exc.status)
    return exc


def _lost(exc: StaleWrite) -> JobNotRunning | LeaseLost:
    """A holder's write refused: the job left PROCESSING (JobNotRunning), or the lease is another's."""
    if exc.status and exc.status != JobStatus.PROCESSING:
        return JobNotRunning(exc.status)
    return LeaseLost(exc.message)
