"""Use cases that change state: submit a job, claim it, render it, record success or failure."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from .domain import (
    FrameResult,
    Job,
    JobStatus,
    Priority,
    Scene,
    frame_key,
    manifest_key,
    new_job_id,
)
from .errors import JobStateConflict, ServiceUnavailable
from .renderers import Renderer
from .repository import ApiKeyRepository, JobRepository
from .storage import ResultStore

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class TaskQueue(Protocol):
    """Sends one render message (ids only) to the queue of the job's priority."""

    def enqueue(self, *, job_id: str, attempt: int, priority: Priority) -> None: ...


def job_create(
    *,
    repo: JobRepository,
    queue: TaskQueue,
    owner: str,
    scene: Scene,
    frame_start: int,
    frame_end: int,
    priority: Priority,
    now: datetime,
) -> Job:
    """Store a QUEUED job, then enqueue it; if the enqueue fails the job is withdrawn and the caller gets 503."""
    job = Job(
        id=new_job_id(),
        owner=owner,
        scene=scene,
        frame_start=frame_start,
        frame_end=frame_end,
        priority=priority,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
    )
    repo.add(job)
    try:
        queue.enqueue(job_id=job.id, attempt=job.attempt, priority=job.priority)
    except ServiceUnavailable:
        _withdraw(repo, job.id)
        raise
    return job


def _withdraw(repo: JobRepository, job_id: str) -> None:
    try:
        repo.delete_queued(job_id)
    except Exception:  # the 503 stands either way; a job left QUEUED is logged for the operator
        log.exception("could not withdraw job %s after a failed enqueue", job_id)


def job_claim(
    *, repo: JobRepository, job_id: str, attempt: int, worker: str, lease_seconds: int, now: datetime
) -> tuple[Job, str] | None:
    """Take the job for this worker (QUEUED, or PROCESSING with a lapsed lease); None when someone else has it."""
    token = secrets.token_hex(16)
    try:
        job = repo.claim(job_id, attempt=attempt, worker=worker, token=token, now=now, lease_seconds=lease_seconds)
    except JobStateConflict as exc:
        log.info("job %s attempt %s not claimed: %s", job_id, attempt, exc.message)
        return None
    return job, token


def job_render(
    *,
    repo: JobRepository,
    store: ResultStore,
    renderer: Renderer,
    job: Job,
    token: str,
    clock: Clock,
    retention: timedelta,
) -> Job:
    """Render and upload every frame, write the manifest (jobs of more than one frame), then complete."""
    fmt = job.scene.output_format
    results: list[FrameResult] = []
    for done, frame in enumerate(job.frames, start=1):
        body = renderer.render(job, frame)
        key = frame_key(job.id, frame, fmt)
        results.append(store.put_frame(key=key, frame=frame, body=body, content_type=fmt.content_type))
        if done < job.frames_total:
            # Also proves the lease is still ours: a lost lease raises JobStateConflict and stops the render.
            repo.record_progress(job.id, token=token, frames_done=done, now=clock())
    single = results[0] if job.frames_total == 1 else None
    if single is None:
        store.put_manifest(key=manifest_key(job.id), manifest=build_manifest(job, results))
    now = clock()
    return repo.complete(
        job.id, token=token, frames_done=job.frames_total, result=single, now=now, expires_at=now + retention
    )


def build_manifest(job: Job, results: list[FrameResult]) -> dict:
    return {
        "job_id": job.id,
        "attempt": job.attempt,
        "scene": {
            "name": job.scene.name,
            "width": job.scene.width,
            "height": job.scene.height,
            "output_format": str(job.scene.output_format),
            "samples": job.scene.samples,
        },
        "frames": [
            {"frame": r.frame, "key": r.key, "size": r.size, "sha256": r.sha256, "content_type": r.content_type}
            for r in results
        ],
    }


def job_record_failure(
    *,
    repo: JobRepository,
    job: Job,
    token: str,
    error: str,
    max_attempts: int,
    now: datetime,
    retention: timedelta,
) -> Job:
    """Count a failed render: FAILED once attempts are used up, else PROCESSING with the lease released."""
    if job.render_failures + 1 >= max_attempts:
        return repo.fail(job.id, token=token, error=error, now=now, expires_at=now + retention)
    return repo.release_after_failure(job.id, token=token, error=error, now=now)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, repo: ApiKeyRepository, owner: str, now: datetime) -> str:
    """Make a random key, store only its hash, and return the key (shown once)."""
    key = "rk_" + secrets.token_urlsafe(32)
    repo.add(key_hash=hash_api_key(key), owner=owner, now=now)
    return key
