"""Quotes: the estimate a dry run's scout job (a few frames of the job, rendered for real) gives once it is done
(the scout itself is made by services/submit.py: `scout_of`)."""

from __future__ import annotations

from datetime import datetime

from jobs.domain import Job, JobStatus, Prices, Quote, RendererName, quote_estimate
from jobs.ports import FarmRegistry


def job_quote(*, job: Job, farm: FarmRegistry, prices: Prices, now: datetime, kept_renderer: bool) -> Quote | None:
    """A COMPLETED scout's estimate of the job it quotes, at the farm's live workers now; None for any other.
    `kept_renderer`: the workers keep Blender across a job's chunks (RENDER_BLENDER_PERSISTENT)."""
    if job.quote_for is None or job.status is not JobStatus.COMPLETED:
        return None
    return quote_estimate(
        target=job.quote_for,
        scouted=job.frames_total,
        worker_seconds=job.worker_seconds,
        render_seconds=job.render_seconds,
        first_frame_seconds=job.first_frame_seconds,
        workers=len(farm.workers(now=now)),
        prices=prices,
        kept_renderer=kept_renderer and job.renderer is RendererName.BLENDER,
    )
