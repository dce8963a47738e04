"""The one assembly step of a finished job: manifest.json and a contact-sheet preview, then COMPLETED (or, for a
job with steps, its first step queued: jobs/services/steps.py)."""

from __future__ import annotations

import contextlib
import io
import json
import logging

from PIL import Image

from jobs.domain import (
    PREVIEW_MAX_FRAMES,
    FrameResult,
    Job,
    JobStatus,
    StepStatus,
    animation_key,
    manifest_key,
    preview_key,
)
from jobs.errors import JobStateConflict
from jobs.ports import RenderContext, ResultStore
from jobs.services.control import send_step

log = logging.getLogger(__name__)
THUMB_WIDTH = 320
COLUMNS = 4
ANIMATION_FRAME_MS = 125  # 8 frames a second: the sampled frames play as a short loop


def build_manifest(job: Job, results: list[FrameResult]) -> dict:
    manifest = {
        "job_id": job.id,
        "attempt": job.attempt,
        "scene": job.scene.as_dict(),
        "frame_list": str(job.frames),
        "frames": [r.as_dict() for r in sorted(results, key=lambda r: r.frame)],
    }
    if job.steps:  # what steps completed in an earlier attempt stored (each step adds its own once done)
        manifest["steps"] = [
            {"step": i, "type": str(s.spec.type), **s.artifact.as_dict()}
            for i, s in enumerate(job.steps)
            if s.artifact is not None and s.status is StepStatus.COMPLETED
        ]
    return manifest


def sample_frames(results: list[FrameResult], limit: int = PREVIEW_MAX_FRAMES) -> list[FrameResult]:
    """At most `limit` frames spread evenly over the job, first and last included."""
    ordered = sorted(results, key=lambda r: r.frame)
    if len(ordered) <= limit:
        return ordered
    step = (len(ordered) - 1) / (limit - 1)
    return [ordered[round(i * step)] for i in range(limit)]


def _thumbnails(images: list[bytes]) -> list[Image.Image]:
    thumbs = []
    for body in images:
        image = Image.open(io.BytesIO(body)).convert("RGB")
        image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
        thumbs.append(image)
    return thumbs


def animation(images: list[bytes]) -> bytes:
    """An animated WebP that loops over the frames, in order, at thumbnail size."""
    thumbs = _thumbnails(images)
    size = thumbs[0].size
    thumbs = [t if t.size == size else t.resize(size) for t in thumbs]
    out = io.BytesIO()
    thumbs[0].save(
        out, format="WEBP", save_all=True, append_images=thumbs[1:], duration=ANIMATION_FRAME_MS, loop=0, quality=70
    )
    return out.getvalue()


def contact_sheet(images: list[bytes]) -> bytes:
    thumbs = _thumbnails(images)
    cell_w = max(t.width for t in thumbs)
    cell_h = max(t.height for t in thumbs)
    columns = min(COLUMNS, len(thumbs))
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (20, 20, 20))
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((i % columns) * cell_w, (i // columns) * cell_h))
    out = io.BytesIO()
    sheet.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def make_outputs(*, store: ResultStore, job: Job, results: list[FrameResult]) -> bool:
    """Write manifest.json, preview.png (contact sheet) and preview.webp (animated) for a job of more than
    one frame (no previews of OpenEXR frames); True if the previews were made.

    A one-frame job gets neither: its result stays on the job item, and an S3 PUT costs as much as
    twelve SQS requests.
    """
    if len(results) <= 1:
        return False
    store.put_bytes(
        key=manifest_key(job.id),
        body=json.dumps(build_manifest(job, results), indent=2).encode(),
        content_type="application/json",
    )
    if not job.scene.output_format.viewable:  # OpenEXR: no browser shows it, and Pillow does not read it
        return False
    images = [store.get_bytes(r.key) for r in sample_frames(results)]
    store.put_bytes(key=preview_key(job.id), body=contact_sheet(images), content_type="image/png")
    store.put_bytes(key=animation_key(job.id), body=animation(images), content_type="image/webp")
    return True


def job_assemble(*, ctx: RenderContext, job: Job, token: str) -> Job | None:
    """Run by the holder of the assembly lease once the job's count says every chunk is done; safe to run again
    after a crash. The chunk items have the last word: a count that ran ahead of them (repository/frames.py)
    is set again from them and the lease given back, for the last chunk's count to take."""
    chunks = ctx.repo.chunks.list(job.id)
    done = [c for c in chunks if c.status is JobStatus.COMPLETED]
    if len(done) < job.chunks_total or sum(c.frames_done for c in done) != job.frames_done:
        try:
            job = ctx.repo.recount(job.id, attempt=job.attempt, now=ctx.clock())
        except JobStateConflict:
            return None
        if len(done) < job.chunks_total:
            log.warning("job %s: counted ahead of its chunks; assembly left to the last chunk", job.id)
            with contextlib.suppress(JobStateConflict):
                ctx.repo.release_assembly(job.id, token=token, now=ctx.clock())
            return None
    results = [r for chunk in done for r in chunk.results]
    has_preview = make_outputs(store=ctx.store, job=job, results=results)
    if job.current_step is not None:
        return _hand_to_steps(ctx, job, token=token, has_preview=has_preview)
    now = ctx.clock()
    try:
        done = ctx.repo.complete_assembly(
            job.id, token=token, has_preview=has_preview, now=now, expires_at=now + ctx.retention
        )
    except JobStateConflict as exc:
        log.warning("job %s: assembly lease lost (%s)", job.id, exc.message)
        return None
    log.info("job_completed job=%s frames=%d", job.id, len(results))
    ctx.notifier.job_ended(done, JobStatus.COMPLETED)
    return done


def _hand_to_steps(ctx: RenderContext, job: Job, *, token: str, has_preview: bool) -> Job | None:
    """The frames are assembled: the job stays PROCESSING, its first unfinished step is QUEUED (the job's lease
    released for it) and its message sent. A lost send is sent again by the sweeper's audit of the job."""
    try:
        begun = ctx.repo.steps.begin(job, token=token, has_preview=has_preview, now=ctx.clock())
    except JobStateConflict as exc:
        log.warning("job %s: assembly lease lost (%s)", job.id, exc.message)
        return None
    index = begun.current_step
    send_step(queue=ctx.jobs.queue, job=job, index=index)
    log.info("job %s: %d frames assembled; step %s queued", job.id, begun.frames_total, index)
    return begun
