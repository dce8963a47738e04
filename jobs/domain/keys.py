"""Where a job's files live in S3: deterministic keys, so a re-rendered frame overwrites its object."""

from __future__ import annotations

import hashlib

from jobs.domain.states import OutputFormat


def frame_key(job_id: str, frame: int, output_format: OutputFormat) -> str:
    return f"jobs/{job_id}/frames/{frame:05d}.{output_format.extension}"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


def preview_key(job_id: str) -> str:
    return f"jobs/{job_id}/preview.png"


def animation_key(job_id: str) -> str:
    """The animated preview (WebP) of a finished job, made with the contact sheet from the same frames."""
    return f"jobs/{job_id}/preview.webp"


def log_key(job_id: str, chunk: int) -> str:
    """A chunk's render log (one-chunk jobs: chunk 0), as JSON `{"log", "truncated"}`."""
    return f"jobs/{job_id}/logs/{chunk:05d}.json"


def video_key(job_id: str, extension: str) -> str:
    """An encode step's video: one per format (`jobs/<id>/video.mp4`, `jobs/<id>/video.webm`)."""
    return f"jobs/{job_id}/video.{extension}"


def step_log_key(job_id: str, step: int) -> str:
    """A step's log (ffmpeg's output for an encode), as JSON `{"log", "truncated"}` like a chunk's."""
    return f"jobs/{job_id}/logs/step-{step:02d}.json"


def owner_slug(owner: str) -> str:
    """An owner's name as a safe, fixed-length key segment (owner names may hold any character)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def asset_key(owner: str, sha256: str) -> str:
    """Where an owner's scene file lives: content-addressed, and under the owner, so one owner's hash never
    names another's file."""
    return f"assets/{owner_slug(owner)}/{sha256}"
