"""Small input and output serializers, strict about types: "12" is not a number and unknown fields are errors."""

from __future__ import annotations

import unicodedata

from rest_framework import serializers

from .. import domain
from ..domain import Job, JobStatus, OutputFormat, Priority


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"control": "Must not contain control characters."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in data):
            self.fail("control")
        return super().to_internal_value(data)


class RejectUnknownFieldsMixin:
    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)


class JobCreateInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    scene = StrictCharField(max_length=domain.MAX_SCENE_NAME, help_text="Scene name (shown on the frames).")
    width = StrictIntegerField(min_value=domain.MIN_DIMENSION, max_value=domain.MAX_DIMENSION)
    height = StrictIntegerField(min_value=domain.MIN_DIMENSION, max_value=domain.MAX_DIMENSION)
    output_format = serializers.ChoiceField(choices=[f.value for f in OutputFormat], default="png")
    samples = StrictIntegerField(min_value=1, max_value=domain.MAX_SAMPLES, default=64)
    frame_start = StrictIntegerField(min_value=0, max_value=domain.MAX_FRAME_NUMBER, default=1)
    frame_end = StrictIntegerField(
        min_value=0, max_value=domain.MAX_FRAME_NUMBER, required=False, help_text="Defaults to frame_start."
    )
    priority = serializers.ChoiceField(choices=[p.value for p in Priority], default="normal")

    def validate(self, attrs):
        attrs.setdefault("frame_end", attrs["frame_start"])
        if attrs["frame_end"] < attrs["frame_start"]:
            raise serializers.ValidationError({"frame_end": ["Must be at least frame_start."]})
        count = attrs["frame_end"] - attrs["frame_start"] + 1
        if count > domain.MAX_FRAMES_PER_JOB:
            raise serializers.ValidationError(
                {"frame_end": [f"A job renders at most {domain.MAX_FRAMES_PER_JOB} frames; this asks for {count}."]}
            )
        return attrs


class JobListQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=[s.value for s in JobStatus], required=False)
    cursor = serializers.CharField(max_length=4096, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)


class SceneOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    output_format = serializers.CharField()
    samples = serializers.IntegerField()


class ProgressOutputSerializer(serializers.Serializer):
    frames_done = serializers.IntegerField()
    frames_total = serializers.IntegerField()
    ratio = serializers.FloatField()


class FrameOutputSerializer(serializers.Serializer):
    frame = serializers.IntegerField()
    url = serializers.URLField()
    size = serializers.IntegerField(required=False)
    sha256 = serializers.CharField(required=False)


class ResultsOutputSerializer(serializers.Serializer):
    expires_in = serializers.IntegerField(help_text="Seconds the URLs below stay valid.")
    manifest_url = serializers.URLField(allow_null=True)
    frames = FrameOutputSerializer(many=True)


class JobOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.CharField()
    status = serializers.ChoiceField(choices=[s.value for s in JobStatus])
    priority = serializers.CharField()
    scene = SceneOutputSerializer()
    frame_start = serializers.IntegerField()
    frame_end = serializers.IntegerField()
    attempt = serializers.IntegerField()
    progress = ProgressOutputSerializer()
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    results = ResultsOutputSerializer(allow_null=True, required=False)


class JobListOutputSerializer(serializers.Serializer):
    jobs = JobOutputSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


def job_representation(job: Job, *, url: str, results: dict | None = None) -> dict:
    """The job as the API shows it; `results` only where the caller asked for result URLs."""
    data = {
        "id": job.id,
        "url": url,
        "status": str(job.status),
        "priority": str(job.priority),
        "scene": {
            "name": job.scene.name,
            "width": job.scene.width,
            "height": job.scene.height,
            "output_format": str(job.scene.output_format),
            "samples": job.scene.samples,
        },
        "frame_start": job.frame_start,
        "frame_end": job.frame_end,
        "attempt": job.attempt,
        "progress": {"frames_done": job.frames_done, "frames_total": job.frames_total, "ratio": job.progress},
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
    }
    if results is not None:
        data["results"] = results
    return JobOutputSerializer(data).data
