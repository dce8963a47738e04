"""Reads: a caller's job, a caller's jobs; another owner's job is indistinguishable from a missing one."""

from __future__ import annotations

from .domain import Job, JobStatus, frame_key, manifest_key
from .errors import JobNotFound
from .repository import JobPage, JobRepository
from .storage import ResultStore


def job_get(*, repo: JobRepository, owner: str, job_id: str) -> Job:
    job = repo.get(job_id)
    if job.owner != owner:
        raise JobNotFound()
    return job


def job_list(*, repo: JobRepository, owner: str, status: JobStatus | None, cursor: str | None, limit: int) -> JobPage:
    return repo.list_for_owner(owner, status=status, cursor=cursor, limit=limit)


def job_result_links(*, store: ResultStore, job: Job, expires_in: int) -> dict | None:
    """Presigned GET URLs for a completed job's frames (and manifest); None before completion."""
    if job.status is not JobStatus.COMPLETED:
        return None
    fmt = job.scene.output_format
    if job.result is not None:
        frames = [
            {
                "frame": job.result.frame,
                "url": store.presigned_url(job.result.key),
                "size": job.result.size,
                "sha256": job.result.sha256,
            }
        ]
        return {"expires_in": expires_in, "manifest_url": None, "frames": frames}
    frames = [{"frame": f, "url": store.presigned_url(frame_key(job.id, f, fmt))} for f in job.frames]
    return {"expires_in": expires_in, "manifest_url": store.presigned_url(manifest_key(job.id)), "frames": frames}
