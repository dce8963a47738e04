"""Quotes: a dry run's scout job (a few frames of the job, rendered for real) and the estimate it gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from jobs.domain import FrameList, Job, JobStatus, Prices, Quote, QuoteFor, chunk_count, quote_estimate, scout_frames
from jobs.ports import FarmRegistry


def scout_of(spec, frames: FrameList):
    """(the scout's spec, what it quotes): the job's first, middle and last frames in one chunk, the same scene
    and settings, no steps (a scout never encodes) and no callback; `spec` is a services.submit.JobSpec."""
    target = QuoteFor(frames=len(frames), chunks=chunk_count(len(frames), spec.chunk_size), chunk_size=spec.chunk_size)
    scouts = scout_frames(frames)
    scout = replace(
        spec,
        frame_start=scouts.first,
        frame_end=scouts.last,
        frame_list=scouts,
        chunk_size=len(scouts),
        steps=(),
        callback_url=None,
    )
    return scout, target


def job_quote(*, job: Job, farm: FarmRegistry, prices: Prices, now: datetime) -> Quote | None:
    """A COMPLETED scout's estimate of the job it quotes, at the farm's live workers now; None for any other."""
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
    )
