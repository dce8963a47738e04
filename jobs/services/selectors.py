"""Reads: a caller's job, jobs, chunks and result URLs; another owner's job is indistinguishable from a missing one."""

from __future__ import annotations

from jobs.domain import (
    FrameResult,
    Job,
    JobStatus,
    StepStatus,
    animation_key,
    frame_key,
    manifest_key,
    preview_key,
    step_log_key,
)
from jobs.errors import InvalidCursor, JobNotFound, LogNotFound
from jobs.ports import ChunkPage, JobPage, JobRepository, ResultStore
from jobs.services.render_log import read_log


def job_get(*, repo: JobRepository, owner: str, job_id: str) -> Job:
    job = repo.get(job_id)
    if job.owner != owner:
        raise JobNotFound()
    return job


def job_list(*, repo: JobRepository, owner: str, status: JobStatus | None, cursor: str | None, limit: int) -> JobPage:
    return repo.list_for_owner(owner, status=status, cursor=cursor, limit=limit)


def job_chunks(*, repo: JobRepository, job: Job, cursor: str | None, limit: int) -> ChunkPage:
    """The job's chunks in order; a one-chunk job shows its job item as its only chunk (index 0)."""
    if not job.single_chunk:
        return repo.chunks.page(job.id, cursor=cursor, limit=limit)
    if cursor:
        raise InvalidCursor()  # a one-chunk job's only page has no next one
    return ChunkPage(chunks=[job.as_chunk().replace(index=0)], cursor=None)


def recorded_frames(*, repo: JobRepository, job: Job) -> dict[int, FrameResult]:
    """The frames stored so far, by number: every frame of a completed job; else those recorded by chunks."""
    if job.single_chunk:
        return {r.frame: r for r in job.results}
    return {r.frame: r for chunk in repo.chunks.list(job.id) for r in chunk.results}


def job_result_links(
    *,
    store: ResultStore,
    job: Job,
    expires_in: int,
    offset: int = 0,
    limit: int = 100,
    recorded: dict[int, FrameResult] | None = None,
) -> dict:
    """Presigned GET URLs of a page of the job's frames; manifest and preview once COMPLETED.

    A completed job lists every frame; any other job lists the frames recorded so far (`recorded`), so the
    good frames of a cancelled or failed job, or of one still running, can be had.
    """
    fmt = job.scene.output_format
    completed = job.status is JobStatus.COMPLETED
    known = {r.frame: r for r in job.results} if completed else dict(recorded or {})
    numbers = job.frames if completed else sorted(known)
    frames = []
    for frame in numbers[offset : offset + limit]:
        entry = {"frame": frame, "url": store.presigned_url(frame_key(job.id, frame, fmt))}
        if frame in known:
            entry.update(size=known[frame].size, sha256=known[frame].sha256)
        frames.append(entry)
    following = offset + limit
    multi = job.frames_total > 1
    return {
        "expires_in": expires_in,
        "manifest_url": store.presigned_url(manifest_key(job.id)) if completed and multi else None,
        "preview_url": store.presigned_url(preview_key(job.id)) if completed and job.has_preview else None,
        "animation_url": store.presigned_url(animation_key(job.id)) if completed and job.has_preview else None,
        "frames": frames,
        "frames_next_offset": following if following < len(numbers) else None,
        "videos": job_videos(store=store, job=job),
    }


def job_videos(*, store: ResultStore, job: Job) -> list[dict]:
    """Presigned GET URLs of the videos the job's completed encode steps stored."""
    return [
        {
            "step": i,
            "format": str(s.spec.format),
            "url": store.presigned_url(s.artifact.key),
            **{k: v for k, v in s.artifact.as_dict().items() if k != "key"},
        }
        for i, s in enumerate(job.steps)
        if s.status is StepStatus.COMPLETED and s.artifact is not None
    ]


def step_log(*, store: ResultStore, job: Job, step: int) -> dict:
    """A step's saved log `{"log", "truncated"}` (ffmpeg's output for an encode); 404 when none."""
    if not 0 <= step < len(job.steps):
        raise LogNotFound("This job has no such step." if job.steps else "This job has no steps.")
    saved = read_log(store=store, job_id=job.id, chunk=0, key=step_log_key(job.id, step))
    if saved is None:
        raise LogNotFound("No log for this step (it has not started yet).")
    return {"log": saved["log"], "truncated": bool(saved["truncated"])}


def task_log(*, store: ResultStore, job: Job, chunk: int) -> dict:
    """A chunk's saved render log `{"log", "truncated"}` (chunk 0 for a one-chunk job); 404 when none."""
    if not 0 <= chunk < job.chunks_total:
        raise LogNotFound(f"This job has chunks 0-{job.chunks_total - 1}.")
    saved = read_log(store=store, job_id=job.id, chunk=chunk)
    if saved is None:
        raise LogNotFound()
    return {"log": saved["log"], "truncated": bool(saved["truncated"])}
