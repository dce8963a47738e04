"""Reads: a caller's job, jobs, chunks and result URLs; another owner's job is indistinguishable from a missing one."""

from __future__ import annotations

from .domain import Job, JobStatus, Task, frame_key, manifest_key, preview_key
from .errors import InvalidCursor, JobNotFound
from .repository import JobPage, JobRepository, TaskPage
from .storage import ResultStore


def job_get(*, repo: JobRepository, owner: str, job_id: str) -> Job:
    job = repo.get(job_id)
    if job.owner != owner:
        raise JobNotFound()
    return job


def job_list(*, repo: JobRepository, owner: str, status: JobStatus | None, cursor: str | None, limit: int) -> JobPage:
    return repo.list_for_owner(owner, status=status, cursor=cursor, limit=limit)


def job_tasks(*, repo: JobRepository, job: Job, cursor: str | None, limit: int) -> TaskPage:
    """The job's chunks in order; a one-chunk job shows its job item as its only chunk."""
    if not job.single_chunk:
        return repo.list_tasks(job.id, cursor=cursor, limit=limit)
    if cursor:
        raise InvalidCursor()  # a one-chunk job's only page has no next one
    only = Task(
        job_id=job.id,
        index=0,
        frame_start=job.frame_start,
        frame_end=job.frame_end,
        status=job.status,
        attempt=job.attempt,
        frames_done=job.frames_done,
        render_failures=job.render_failures,
        worker=job.worker,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
    )
    return TaskPage(tasks=[only], cursor=None)


def job_result_links(
    *, store: ResultStore, job: Job, expires_in: int, offset: int = 0, limit: int = 100
) -> dict | None:
    """Presigned GET URLs of a completed job's frames (a page of them), manifest and preview; None before."""
    if job.status is not JobStatus.COMPLETED:
        return None
    fmt = job.scene.output_format
    known = {r.frame: r for r in job.results}
    frames = []
    for frame in list(job.frames)[offset : offset + limit]:
        entry = {"frame": frame, "url": store.presigned_url(frame_key(job.id, frame, fmt))}
        if frame in known:
            entry.update(size=known[frame].size, sha256=known[frame].sha256)
        frames.append(entry)
    following = offset + limit
    multi = job.frames_total > 1
    return {
        "expires_in": expires_in,
        "manifest_url": store.presigned_url(manifest_key(job.id)) if multi else None,
        "preview_url": store.presigned_url(preview_key(job.id)) if job.has_preview else None,
        "frames": frames,
        "frames_next_offset": following if following < job.frames_total else None,
    }
