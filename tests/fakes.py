"""In-memory fakes with the same interfaces as the AWS adapters, for unit tests of services."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from jobs.domain import FrameResult, Job, JobStatus, Priority
from jobs.errors import JobAlreadyExists, JobNotFound, JobStateConflict, ServiceUnavailable
from jobs.repository import JobPage


class InMemoryJobRepository:
    """Same conditions as DynamoJobRepository, applied to a dict."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        if job.id in self.jobs:
            raise JobAlreadyExists()
        self.jobs[job.id] = job

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound() from None

    def delete_queued(self, job_id: str) -> None:
        self._check(job_id, lambda j: j.status is JobStatus.QUEUED)
        del self.jobs[job_id]

    def list_for_owner(self, owner, *, status, cursor, limit) -> JobPage:
        mine = sorted(
            (j for j in self.jobs.values() if j.owner == owner and (status is None or j.status is status)),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        start = int(cursor or 0)
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return JobPage(jobs=page, cursor=str(start + limit) if more else None)

    def claim(self, job_id, *, attempt, worker, token, now, lease_seconds) -> Job:
        def claimable(j: Job) -> bool:
            lapsed = j.lease_expires_at is None or j.lease_expires_at < now
            return j.attempt == attempt and (
                j.status is JobStatus.QUEUED or (j.status is JobStatus.PROCESSING and lapsed)
            )

        job = self._check(job_id, claimable)
        return self._put(
            job.replace(
                status=JobStatus.PROCESSING,
                worker=worker,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=job.started_at or now,
                updated_at=now,
            )
        )

    def record_progress(self, job_id, *, token, frames_done, now) -> None:
        job = self._holding(job_id, token)
        self._put(job.replace(frames_done=frames_done, updated_at=now))

    def complete(self, job_id, *, token, frames_done, result, now, expires_at) -> Job:
        job = self._holding(job_id, token)
        return self._put(
            job.replace(
                status=JobStatus.COMPLETED,
                frames_done=frames_done,
                result=result,
                finished_at=now,
                updated_at=now,
                lease_token=None,
                lease_expires_at=None,
                error=None,
            )
        )

    def release_after_failure(self, job_id, *, token, error, now) -> Job:
        job = self._holding(job_id, token)
        return self._put(
            job.replace(
                render_failures=job.render_failures + 1,
                error=error,
                updated_at=now,
                lease_token=None,
                lease_expires_at=datetime.fromtimestamp(0, now.tzinfo),
            )
        )

    def fail(self, job_id, *, token, error, now, expires_at) -> Job:
        job = self._holding(job_id, token)
        return self._put(
            job.replace(
                status=JobStatus.FAILED,
                error=error,
                render_failures=job.render_failures + 1,
                finished_at=now,
                updated_at=now,
                lease_token=None,
                lease_expires_at=None,
            )
        )

    def _holding(self, job_id: str, token: str) -> Job:
        return self._check(job_id, lambda j: j.status is JobStatus.PROCESSING and j.lease_token == token)

    def _check(self, job_id: str, condition) -> Job:
        job = self.get(job_id)
        if not condition(job):
            raise JobStateConflict(f"Job is {job.status} (attempt {job.attempt}).")
        return job

    def _put(self, job: Job) -> Job:
        self.jobs[job.id] = job
        return job


class FakeTaskQueue:
    def __init__(self, *, down: bool = False):
        self.sent: list[tuple[str, int, Priority]] = []
        self.down = down

    def enqueue(self, *, job_id: str, attempt: int, priority: Priority) -> None:
        if self.down:
            raise ServiceUnavailable("queue down")
        self.sent.append((job_id, attempt, priority))


class FakeResultStore:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put_frame(self, *, key, frame, body, content_type) -> FrameResult:
        self.objects[key] = body
        self.puts += 1
        return FrameResult(
            frame=frame, key=key, size=len(body), sha256=hashlib.sha256(body).hexdigest(), content_type=content_type
        )

    def put_manifest(self, *, key, manifest) -> None:
        import json

        self.objects[key] = json.dumps(manifest).encode()
        self.puts += 1

    def presigned_url(self, key: str) -> str:
        return f"https://example.invalid/{key}?signed"


class ScriptedRenderer:
    """Returns fixed bytes; raises for the frames (or all calls) it is told to fail."""

    def __init__(self, *, fail_times: int = 0, on_render=None):
        self.fail_times = fail_times
        self.calls: list[int] = []
        self.on_render = on_render

    def render(self, job: Job, frame: int) -> bytes:
        self.calls.append(frame)
        if self.on_render:
            self.on_render(job, frame)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError(f"boom on frame {frame}")
        return f"image {job.id} {frame}".encode()
