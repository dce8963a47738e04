"""The job as clients see it: the output shapes of the API, shared by the webhook bodies the workers send
(a webhook POSTs exactly what `GET /api/jobs/<id>` answers)."""

from __future__ import annotations

import functools
from datetime import datetime

from rest_framework import serializers

from jobs.domain import FINAL_STATES, Job, JobStatus, Quote, StepStatus
from jobs.ports import WebhookDelivery


class SceneOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    width = serializers.IntegerField(allow_null=True, help_text="null: the scene file's own (Blender jobs).")
    height = serializers.IntegerField(allow_null=True, help_text="null: the scene file's own (Blender jobs).")
    output_format = serializers.CharField()
    samples = serializers.IntegerField(allow_null=True, help_text="null: the scene file's own (Blender jobs).")


class ProgressOutputSerializer(serializers.Serializer):
    frames_done = serializers.IntegerField()
    frames_total = serializers.IntegerField()
    ratio = serializers.FloatField()
    chunks_done = serializers.IntegerField()
    chunks_total = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True, help_text="At the frame rate measured so far.")


class FrameOutputSerializer(serializers.Serializer):
    frame = serializers.IntegerField()
    url = serializers.URLField()
    size = serializers.IntegerField(required=False)
    sha256 = serializers.CharField(required=False)


class VideoOutputSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="The encode step that made it.")
    format = serializers.CharField(help_text="mp4 or webm")
    url = serializers.URLField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    content_type = serializers.CharField()
    frames = serializers.IntegerField()
    fps = serializers.IntegerField()
    duration = serializers.FloatField(help_text="Seconds: frames / fps.")


class ResultsOutputSerializer(serializers.Serializer):
    expires_in = serializers.IntegerField(help_text="Seconds the URLs below stay valid.")
    manifest_url = serializers.URLField(allow_null=True)
    preview_url = serializers.URLField(allow_null=True, help_text="A contact sheet of up to 16 frames (PNG).")
    animation_url = serializers.URLField(
        allow_null=True, help_text="The same frames as an animated WebP loop (jobs finished before it existed: 404)."
    )
    frames = FrameOutputSerializer(many=True)
    frames_next_offset = serializers.IntegerField(
        allow_null=True, help_text="More frames: GET /api/jobs/<id>/frames?offset=<this>."
    )
    videos = VideoOutputSerializer(many=True, help_text="The videos of the job's completed encode steps.")


class StepProgressOutputSerializer(serializers.Serializer):
    frames_done = serializers.IntegerField(help_text="Frames encoded so far.")
    frames_total = serializers.IntegerField()
    ratio = serializers.FloatField()


class StepArtifactOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    content_type = serializers.CharField()
    frames = serializers.IntegerField()
    fps = serializers.IntegerField()
    duration = serializers.FloatField()


class StepOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    type = serializers.CharField(help_text="encode")
    format = serializers.CharField(help_text="Encode steps: mp4 or webm.")
    fps = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=[s.value for s in StepStatus],
        help_text="WAITING for the frames, QUEUED, PROCESSING, COMPLETED, FAILED, or CANCELLED (the job ended first).",
    )
    progress = StepProgressOutputSerializer()
    failures = serializers.IntegerField(help_text="Failed attempts (retried with backoff).")
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True, help_text="encode_failed, farm_unavailable, poison, ...")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    output = StepArtifactOutputSerializer(allow_null=True, help_text="What it stored (its URL: results.videos).")


class DeliveryTryOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    attempt = serializers.IntegerField(help_text="1 for the first try, 2 for the first retry...")
    status_code = serializers.IntegerField(required=False, help_text="The receiver's answer.")
    error = serializers.CharField(required=False, help_text="Why there was no answer (timeout, refused address...).")


class WebhookOutputSerializer(serializers.Serializer):
    url = serializers.CharField()
    event = serializers.CharField(allow_null=True, help_text="The end being delivered: COMPLETED, FAILED, CANCELLED.")
    job_attempt = serializers.IntegerField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["waiting", "pending", "delivered", "failed"],
        help_text="waiting: the job has not ended; pending: being delivered or retried; delivered; failed: gave up.",
    )
    deliveries = DeliveryTryOutputSerializer(many=True, help_text="The last ten tries.")


class QuoteOutputSerializer(serializers.Serializer):
    frames = serializers.IntegerField(help_text="The quoted job's frames.")
    chunks = serializers.IntegerField(help_text="The quoted job's chunks.")
    chunk_size = serializers.IntegerField()
    ready = serializers.BooleanField(help_text="The scout job is COMPLETED: the figures below are measured.")
    seconds_per_frame = serializers.FloatField(allow_null=True, help_text="A frame after a chunk's first.")
    startup_seconds = serializers.FloatField(
        allow_null=True, help_text="A chunk's worker-seconds beyond its frames: claim, scene, Blender's start, writes."
    )
    worker_seconds = serializers.FloatField(
        allow_null=True, help_text="frames x seconds_per_frame + chunks x startup_seconds."
    )
    workers = serializers.IntegerField(allow_null=True, help_text="Live render workers now.")
    wall_seconds = serializers.FloatField(
        allow_null=True, help_text="The chunks in waves of the live workers; null with no live worker."
    )
    dollars = serializers.FloatField(allow_null=True, help_text="worker_seconds at the configured Fargate prices.")


class JobOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.CharField()
    status = serializers.ChoiceField(choices=[s.value for s in JobStatus])
    priority = serializers.CharField()
    renderer = serializers.CharField()
    scene_file = serializers.CharField(allow_null=True)
    fail_on_missing_files = serializers.BooleanField(
        help_text="Blender jobs: a file that reads files from outside itself fails (true) or renders without them."
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="What the farm changed or could not do of the file's own settings (Blender jobs), for a person.",
    )
    scene = SceneOutputSerializer()
    frame_start = serializers.IntegerField(help_text="The first frame.")
    frame_end = serializers.IntegerField(help_text="The last frame.")
    frames = serializers.CharField(
        help_text='The frames it renders, as a frame list in normal form: "1-99x2,150,200-210", or "1-24" for '
        "every frame from frame_start to frame_end."
    )
    chunk_size = serializers.IntegerField()
    attempt = serializers.IntegerField()
    progress = ProgressOutputSerializer()
    error = serializers.CharField(allow_null=True, help_text="What went wrong, for a person to read.")
    error_code = serializers.CharField(
        allow_null=True, help_text="A stable code: render_failed, farm_unavailable, poison, ..."
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    results = ResultsOutputSerializer(allow_null=True, required=False)
    callback_url = serializers.CharField(allow_null=True, help_text="POSTed the job when it ends (webhooks).")
    webhook = WebhookOutputSerializer(allow_null=True, required=False)
    steps = StepOutputSerializer(many=True, help_text="Run after the frames; the job completes with the last one.")
    worker_seconds = serializers.FloatField(
        help_text="Seconds render workers spent on it so far, from each chunk's claim (start-up included)."
    )
    quote = QuoteOutputSerializer(
        allow_null=True, help_text="A scout job's (a dry run's) quote of the job it stands for; null for others."
    )


def webhook_representation(job: Job, delivery: WebhookDelivery | None) -> dict | None:
    """The webhook of a job with a callback URL: its latest end's delivery, or `waiting` before any end."""
    if not job.callback_url:
        return None
    current = delivery is not None and delivery.job_attempt == job.attempt
    return {
        "url": job.callback_url,
        "event": str(delivery.event) if current else None,
        "job_attempt": delivery.job_attempt if current else None,
        "state": delivery.state if current else "waiting",
        "deliveries": [t.as_dict() for t in delivery.deliveries] if current else [],
    }


def steps_representation(job: Job) -> list[dict]:
    final = job.status in FINAL_STATES
    out = []
    for index, step in enumerate(job.steps):
        status = step.shown_status(job_status=job.status, job_attempt=job.attempt, final=final)
        current = step.attempt == job.attempt or status is StepStatus.COMPLETED
        out.append(
            {
                "index": index,
                **step.spec.as_dict(),
                "status": str(status),
                "progress": {
                    "frames_done": step.frames_done if current else 0,
                    "frames_total": job.frames_total,
                    "ratio": round(step.frames_done / job.frames_total, 4) if current else 0.0,
                },
                "failures": step.failures if current else 0,
                "error": step.error if current else None,
                "error_code": step.error_code if current else None,
                "started_at": step.started_at if current else None,
                "finished_at": step.finished_at if current else None,
                "output": step.artifact.as_dict() if step.artifact and status is StepStatus.COMPLETED else None,
            }
        )
    return out


def quote_representation(job: Job, quote: Quote | None) -> dict | None:
    """A scout job's quote: what it quotes, and once measured (`quote`, of a COMPLETED scout) the estimate."""
    if job.quote_for is None:
        return None
    if quote is None:
        empty = ("seconds_per_frame", "startup_seconds", "worker_seconds", "workers", "wall_seconds", "dollars")
        return {**job.quote_for.as_dict(), "ready": False, **dict.fromkeys(empty)}
    return {**quote.as_dict(), "chunk_size": job.quote_for.chunk_size, "ready": True}


def job_representation(
    job: Job,
    *,
    url: str,
    now: datetime,
    results: dict | None = None,
    webhook: dict | None = None,
    quote: Quote | None = None,
) -> dict:
    """The job as the API shows it; `results`, `webhook` and `quote` only where the caller read them (the job's
    page)."""
    data = {
        "id": job.id,
        "url": url,
        "status": str(job.status),
        "priority": str(job.priority),
        "renderer": str(job.renderer),
        "scene_file": job.scene_file,
        "fail_on_missing_files": job.fail_on_missing_files,
        "warnings": list(job.warnings),
        "scene": job.scene.as_dict(),
        "frame_start": job.frame_start,
        "frame_end": job.frame_end,
        "frames": str(job.frames),
        "chunk_size": job.chunk_size,
        "attempt": job.attempt,
        "progress": {
            "frames_done": job.frames_done,
            "frames_total": job.frames_total,
            "ratio": job.progress,
            "chunks_done": job.chunks_done,
            "chunks_total": job.chunks_total,
            "eta_seconds": job.eta_seconds(now),
        },
        "error": job.error,
        "error_code": job.error_code,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "callback_url": job.callback_url,
        "steps": steps_representation(job),
        "worker_seconds": round(job.worker_seconds, 1),
        "quote": quote_representation(job, quote),
    }
    if results is not None:
        data["results"] = results
    if webhook is not None:
        data["webhook"] = webhook
    return _job_output().to_representation(data)


@functools.cache
def _job_output() -> JobOutputSerializer:
    """One output serializer a process: DRF deep-copies a serializer's declared fields for every instance (a
    tenth of a submit's CPU); rendering with one whose fields are bound reads them only, from any thread."""
    serializer = JobOutputSerializer()
    _ = serializer.fields  # bound here, once, before threads share it
    return serializer


def job_detail(job: Job, *, url: str, now: datetime) -> dict:
    """What `GET /api/jobs/<id>` answers and a webhook POSTs: the job, its result URLs once COMPLETED, and
    its webhook's deliveries when it has a callback URL."""
    from django.conf import settings

    from jobs import wiring
    from jobs.services.quotes import job_quote
    from jobs.services.selectors import job_result_links

    results = None
    if job.status is JobStatus.COMPLETED:
        results = job_result_links(store=wiring.result_store(), job=job, expires_in=settings.RENDER_RESULT_URL_EXPIRY)
    webhook = webhook_representation(job, wiring.webhook_repository().latest(job.id)) if job.callback_url else None
    quote = None
    if job.quote_for:
        kept = settings.RENDER_BLENDER_PERSISTENT
        quote = job_quote(job=job, farm=wiring.farm_registry(), prices=wiring.prices(), now=now, kept_renderer=kept)
    return job_representation(job, url=url, now=now, results=results, webhook=webhook, quote=quote)
