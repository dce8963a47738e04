"""In-memory fakes with the same interfaces as the AWS adapters, for unit tests of services.

The repository contract tests in tests/integration run against both this fake and DynamoDB.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from jobs.domain import FrameResult, Job, JobStatus, Priority, Task, can_transition
from jobs.errors import (
    JobAlreadyExists,
    JobNotFound,
    JobNotRunning,
    JobStateConflict,
    LeaseLost,
    ServiceUnavailable,
)
from jobs.repository import IdempotencyRecord, IdempotencyTaken, JobPage, TaskPage

P, Q = JobStatus.PROCESSING, JobStatus.QUEUED
EPOCH0 = datetime.fromtimestamp(0).astimezone()


def _conflict(status: JobStatus, attempt: int) -> JobStateConflict:
    return JobStateConflict(f"It is {status}.", details={"status": str(status), "attempt": attempt})


def _lapsed(lease: datetime | None, now: datetime) -> bool:
    return lease is None or lease < now


class InMemoryJobRepository:
    """Same conditions as DynamoJobRepository, applied to dicts."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self.task_items: dict[tuple[str, int], Task] = {}
        self.idempotency: dict[str, dict] = {}

    # --- jobs ---------------------------------------------------------------------------------
    def add(self, job: Job, *, idempotency: IdempotencyRecord | None = None) -> None:
        if idempotency is not None:
            held = self.idempotency.get(idempotency.pk)
            if held and held["expires_at"] >= idempotency.created_at.timestamp():
                raise IdempotencyTaken()
        if job.id in self.jobs and self.jobs[job.id] != job:
            raise JobAlreadyExists()
        self.jobs[job.id] = job
        if idempotency is not None:
            self.idempotency[idempotency.pk] = {
                "job_id": job.id,
                "request_hash": idempotency.request_hash,
                "expires_at": idempotency.expires_at.timestamp(),
            }

    def idempotency_record(self, pk: str) -> dict | None:
        return self.idempotency.get(pk)

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound() from None

    def withdraw(self, job_id: str, *, idempotency_pk: str | None = None) -> None:
        self._job_if(job_id, lambda j: j.status is Q)
        del self.jobs[job_id]
        self.idempotency.pop(idempotency_pk, None)

    def list_for_owner(self, owner, *, status, cursor, limit) -> JobPage:
        mine = sorted(
            (j for j in self.jobs.values() if j.owner == owner and (status is None or j.status is status)),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        start = int(cursor or 0)
        more = start + limit < len(mine)
        return JobPage(jobs=mine[start : start + limit], cursor=str(start + limit) if more else None)

    def claim(self, job_id, *, attempt, worker, token, now, lease_seconds) -> Job:
        job = self._job_if(
            job_id,
            lambda j: j.attempt == attempt and (j.status is Q or (j.status is P and _lapsed(j.lease_expires_at, now))),
        )
        return self._lease(job, worker, token, now, lease_seconds)

    def begin_assembly(self, job_id, *, attempt, worker, token, now, lease_seconds) -> Job:
        job = self._job_if(
            job_id,
            lambda j: (
                j.attempt == attempt
                and j.status is P
                and j.chunks_done == j.chunks_total
                and _lapsed(j.lease_expires_at, now)
            ),
        )
        return self._lease(job, worker, token, now, lease_seconds)

    def _lease(self, job: Job, worker: str, token: str, now: datetime, lease_seconds: int) -> Job:
        return self._put(
            job.replace(
                status=P,
                worker=worker,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=job.started_at or now,
                updated_at=now,
            )
        )

    def start(self, job_id, *, attempt, now) -> Job:
        job = self._job_if(job_id, lambda j: j.attempt == attempt and j.status in (Q, P))
        return self._put(job.replace(status=P, started_at=job.started_at or now, updated_at=now))

    def record_frame(self, job_id, *, token, frames_done, result, now, lease_until) -> Job:
        job = self._job_if(job_id, lambda j: self._holds(j, token) and j.frames_done == frames_done)
        return self._put(
            job.replace(
                frames_done=frames_done + 1,
                results=(*job.results, result),
                updated_at=now,
                lease_expires_at=lease_until,
            )
        )

    def renew_lease(self, job_id, *, token, until) -> None:
        job = self._job_if(job_id, lambda j: self._holds(j, token))
        self._put(job.replace(lease_expires_at=until))

    def renew_task_lease(self, task: Task, *, token, until) -> None:
        self._put_task(self._task_held(task, token).replace(lease_expires_at=until))

    def complete(self, job_id, *, token, results, has_preview, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: self._holds(j, token))
        changes = {}
        if results is not None:
            changes = {"results": tuple(results), "frames_done": len(results), "chunks_done": job.chunks_total}
        return self._put(
            job.replace(
                status=JobStatus.COMPLETED,
                has_preview=has_preview,
                finished_at=now,
                updated_at=now,
                lease_token=None,
                lease_expires_at=None,
                error=None,
                **changes,
            )
        )

    def release(self, job_id, *, token, now, error=None) -> Job:
        job = self._job_if(job_id, lambda j: self._holds(j, token))
        failure = {} if error is None else {"render_failures": job.render_failures + 1, "error": error}
        return self._put(job.replace(updated_at=now, lease_token=None, lease_expires_at=EPOCH0, **failure))

    def fail(self, job_id, *, token, error, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: self._holds(j, token))
        return self._end(job.replace(render_failures=job.render_failures + 1), JobStatus.FAILED, now, error)

    def fail_unfinished(self, job_id, *, attempt, error, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: j.status in (Q, P) and j.attempt == attempt)
        return self._end(job, JobStatus.FAILED, now, error)

    def fail_unfinished_task(self, job_id, index, *, attempt, error, now) -> None:
        task = self._task_if(job_id, index, lambda t: t.status in (Q, P) and t.attempt == attempt)
        self._put_task(
            task.replace(status=JobStatus.FAILED, finished_at=now, error=error, lease_token=None, lease_expires_at=None)
        )

    def transition(self, job_id, *, attempt, source, target, now, expires_at=None, when_lease_free=False) -> Job:
        if not can_transition(source, target):
            raise ValueError(f"{source} -> {target} is not a transition of the job state machine")
        job = self._job_if(
            job_id,
            lambda j: (
                j.status is source
                and j.attempt == attempt
                and (not when_lease_free or _lapsed(j.lease_expires_at, now))
            ),
        )
        if target in (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.COMPLETED):
            return self._end(job, target, now, job.error)
        return self._put(job.replace(status=target, updated_at=now))

    def stop(self, job_id, *, token, now, expires_at) -> Job:
        job = self._job_if(job_id, lambda j: j.status is JobStatus.CANCELLING and j.lease_token == token)
        return self._end(job, JobStatus.CANCELLED, now, job.error)

    def retry(self, job_id, *, attempt, now) -> Job:
        job = self._job_if(
            job_id, lambda j: j.status in (JobStatus.FAILED, JobStatus.CANCELLED) and j.attempt == attempt
        )
        return self._put(
            job.replace(
                status=Q,
                attempt=attempt + 1,
                updated_at=now,
                fanout_sent=-1,
                render_failures=0,
                error=None,
                finished_at=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )

    def advance_fanout(self, job_id, *, attempt, sent_before, sent_now) -> None:
        job = self._job_if(
            job_id, lambda j: j.attempt == attempt and j.fanout_sent == sent_before and j.status in (Q, P)
        )
        self._put(job.replace(fanout_sent=sent_now))

    # --- tasks --------------------------------------------------------------------------------
    def put_tasks(self, job: Job, tasks: list[Task]) -> None:
        for start in range(0, len(tasks), 100):
            batch = tasks[start : start + 100]
            if any((t.job_id, t.index) in self.task_items for t in batch):
                continue
            for t in batch:
                self.task_items[(t.job_id, t.index)] = t

    def claim_task(self, job_id, index, *, attempt, worker, token, now, lease_seconds) -> Task:
        task = self._task_if(
            job_id,
            index,
            lambda t: t.attempt == attempt and (t.status is Q or (t.status is P and _lapsed(t.lease_expires_at, now))),
        )
        return self._put_task(
            task.replace(
                status=P,
                worker=worker,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=task.started_at or now,
            )
        )

    def record_task_frame(self, task: Task, *, token, result, render_seconds, now, lease_until) -> bool:
        current = self.task_items.get((task.job_id, task.index))
        if not (
            current
            and self._holds(current, token)
            and current.attempt == task.attempt
            and current.frames_done == task.frames_done
        ):
            raise LeaseLost()
        job = self.get(task.job_id)
        if job.status is not P or job.attempt != task.attempt:
            raise JobNotRunning(str(job.status))
        last = current.frames_done + 1 == len(current.frames)
        changes = {"lease_expires_at": lease_until}
        if last:
            changes = {"status": JobStatus.COMPLETED, "finished_at": now, "lease_token": None, "lease_expires_at": None}
        self._put_task(
            current.replace(
                frames_done=current.frames_done + 1,
                results=(*current.results, result),
                render_seconds=current.render_seconds + render_seconds,
                **changes,
            )
        )
        self._put(job.replace(frames_done=job.frames_done + 1, chunks_done=job.chunks_done + int(last), updated_at=now))
        return last

    def release_task(self, task: Task, *, token, now, error=None) -> Task:
        current = self._task_held(task, token)
        failure = {} if error is None else {"render_failures": current.render_failures + 1, "error": error}
        return self._put_task(current.replace(lease_token=None, lease_expires_at=EPOCH0, **failure))

    def end_task(self, task: Task, *, token, status, now, error=None) -> Task:
        current = self._task_held(task, token)
        failures = current.render_failures + int(status is JobStatus.FAILED)
        return self._put_task(
            current.replace(
                status=status,
                finished_at=now,
                render_failures=failures,
                error=error or current.error,
                lease_token=None,
                lease_expires_at=None,
            )
        )

    def drop_task(self, job_id, index, *, attempt, now) -> None:
        task = self.task_items.get((job_id, index))
        if task and task.status is Q and task.attempt == attempt:
            self._put_task(task.replace(status=JobStatus.CANCELLED, finished_at=now))

    def requeue_task(self, task: Task, *, attempt, now) -> bool:
        current = self.task_items[(task.job_id, task.index)]
        if current.status is JobStatus.COMPLETED or current.attempt >= attempt:
            return False
        self._put_task(
            current.replace(
                status=Q,
                attempt=attempt,
                render_failures=0,
                lease_token=None,
                lease_expires_at=None,
                error=None,
                finished_at=None,
            )
        )
        return True

    def tasks(self, job_id: str) -> list[Task]:
        return sorted((t for (j, _), t in self.task_items.items() if j == job_id), key=lambda t: t.index)

    def list_tasks(self, job_id, *, cursor, limit) -> TaskPage:
        everything = self.tasks(job_id)
        start = int(cursor or 0)
        more = start + limit < len(everything)
        return TaskPage(tasks=everything[start : start + limit], cursor=str(start + limit) if more else None)

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _holds(item: Job | Task, token: str) -> bool:
        return item.status is P and item.lease_token == token

    def _job_if(self, job_id: str, condition) -> Job:
        job = self.get(job_id)
        if not condition(job):
            raise _conflict(job.status, job.attempt)
        return job

    def _task_if(self, job_id: str, index: int, condition) -> Task:
        task = self.task_items.get((job_id, index))
        if task is None:
            raise JobNotFound()
        if not condition(task):
            raise _conflict(task.status, task.attempt)
        return task

    def _task_held(self, task: Task, token: str) -> Task:
        current = self.task_items.get((task.job_id, task.index))
        if not (current and self._holds(current, token) and current.attempt == task.attempt):
            raise LeaseLost()
        return current

    def _end(self, job: Job, status: JobStatus, now: datetime, error: str | None) -> Job:
        return self._put(
            job.replace(
                status=status, error=error, finished_at=now, updated_at=now, lease_token=None, lease_expires_at=None
            )
        )

    def _put(self, job: Job) -> Job:
        self.jobs[job.id] = job
        return job

    def _put_task(self, task: Task) -> Task:
        self.task_items[(task.job_id, task.index)] = task
        return task


class FakeTaskQueue:
    """Records messages; `down=True` makes every send fail like an unreachable SQS."""

    def __init__(self, *, down: bool = False):
        self.chunks: list[tuple[str, int | None, int, Priority]] = []
        self.fanouts: list[tuple[str, int, Priority]] = []
        self.down = down

    def enqueue_chunk(self, *, job_id, index, attempt, priority) -> None:
        self._check()
        self.chunks.append((job_id, index, attempt, priority))

    def enqueue_fanout(self, *, job_id, attempt, priority) -> None:
        self._check()
        self.fanouts.append((job_id, attempt, priority))

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailable("queue down")


class FakeResultStore:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put_frame(self, *, key, frame, body, content_type) -> FrameResult:
        self.put_bytes(key=key, body=body, content_type=content_type)
        return FrameResult(
            frame=frame, key=key, size=len(body), sha256=hashlib.sha256(body).hexdigest(), content_type=content_type
        )

    def put_bytes(self, *, key, body, content_type) -> None:
        self.objects[key] = body
        self.puts += 1

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def presigned_url(self, key: str) -> str:
        return f"https://example.invalid/{key}?signed"


class ScriptedRenderer:
    """Paints a tiny real PNG; fails the first `fail_times` calls; calls `on_render` before each frame."""

    def __init__(self, *, fail_times: int = 0, on_render=None):
        self.fail_times = fail_times
        self.calls: list[int] = []
        self.on_render = on_render

    def render(self, job: Job, frame: int) -> bytes:
        import io

        from PIL import Image

        self.calls.append(frame)
        if self.on_render:
            self.on_render(job, frame)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError(f"boom on frame {frame}")
        out = io.BytesIO()
        Image.new("RGB", (8, 8), (frame % 255, 0, 0)).save(out, format="PNG")
        return out.getvalue()
