"""Small input and output serializers, strict about types: "12" is not a number and unknown fields are errors."""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from rest_framework import serializers

from jobs import domain
from jobs.callbacks import MAX_CALLBACK_URL, CallbackRefused, check_callback_url
from jobs.domain import (
    MAX_FPS,
    MAX_STEPS,
    MIN_FPS,
    Chunk,
    JobStatus,
    OutputFormat,
    Priority,
    RendererName,
    StepType,
    VideoFormat,
    spec_from_dict,
    steps_problem,
)
from jobs.presentation import (  # noqa: F401 (the API's output shapes, shared with webhook bodies)
    FrameOutputSerializer,
    JobOutputSerializer,
    ProgressOutputSerializer,
    ResultsOutputSerializer,
    SceneOutputSerializer,
    WebhookOutputSerializer,
    job_representation,
)
from jobs.services.submit import CHUNK_SIZE, FRAME_RANGE, OUTPUT_FORMAT


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


# Control characters (Cc), lone surrogates (Cs), invisible format characters (Cf: U+202E right-to-left
# override, U+200B zero-width space, U+FEFF...) and line/paragraph separators (Zl, Zp). A scene name is
# shown in listings, logs and on the frames: these would let one name pass for another or break a line.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})


class StrictCharField(serializers.CharField):
    default_error_messages = {
        "control": "Must not contain control, invisible formatting or line/paragraph separator characters "
        "(found {char})."
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        refused = next((ch for ch in data if unicodedata.category(ch) in REFUSED_CATEGORIES), None)
        if refused is not None:
            self.fail("control", char=f"U+{ord(refused):04X}")
        return super().to_internal_value(data)


class CallbackUrlField(serializers.CharField):
    """An absolute URL the webhook sender may call (jobs.callbacks: scheme, length, literal addresses)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_CALLBACK_URL, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return check_callback_url(
                data,
                https_only=settings.RENDER_WEBHOOK_HTTPS_ONLY,
                allow_private=settings.RENDER_WEBHOOK_ALLOW_PRIVATE,
            )
        except CallbackRefused as exc:
            raise serializers.ValidationError(str(exc)) from exc


class WebhookSecretOutputSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Shown once. Verify X-Render-Signature with it (docs/using/webhooks.md).")
    owner = serializers.CharField()
    signature = serializers.CharField()


class RejectUnknownFieldsMixin:
    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_SAMPLES = 64  # simulated jobs; a Blender job without `samples` uses the scene file's


class Sha256Field(serializers.CharField):
    default_error_messages = {"sha256": "Must be a SHA-256 as 64 lowercase hexadecimal digits."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not SHA256_HEX.match(data):
            self.fail("sha256")
        return data


class EncodeStepInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A step after the frames (one type so far): `encode` makes a video of them with ffmpeg."""

    type = serializers.ChoiceField(choices=[t.value for t in StepType], help_text="encode: the frames as a video.")
    format = serializers.ChoiceField(
        choices=[f.value for f in VideoFormat], help_text="mp4 (H.264) or webm (VP9); yuv420p, alpha dropped."
    )
    fps = StrictIntegerField(min_value=MIN_FPS, max_value=MAX_FPS, help_text="Frames a second of the video.")


class JobCreateInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    scene = StrictCharField(max_length=domain.MAX_SCENE_NAME, help_text="Scene name (shown on the frames).")
    renderer = serializers.ChoiceField(
        choices=[r.value for r in RendererName],
        default="simulated",
        help_text="simulated (a test pattern) or blender (the scene_file's .blend, Cycles on CPU).",
    )
    scene_file = Sha256Field(
        required=False, help_text="Blender jobs: the SHA-256 of an asset you uploaded (POST /api/assets)."
    )
    width = StrictIntegerField(
        min_value=domain.MIN_DIMENSION,
        max_value=domain.MAX_DIMENSION,
        required=False,
        help_text="Required for simulated jobs; for Blender jobs it overrides the scene file's.",
    )
    height = StrictIntegerField(
        min_value=domain.MIN_DIMENSION,
        max_value=domain.MAX_DIMENSION,
        required=False,
        help_text="Required for simulated jobs; for Blender jobs it overrides the scene file's.",
    )
    output_format = serializers.ChoiceField(
        choices=[f.value for f in OutputFormat],
        required=False,
        help_text="png (default for simulated jobs), jpeg or exr (Blender jobs); Blender jobs: the file's if absent.",
    )
    samples = StrictIntegerField(
        min_value=1,
        max_value=domain.MAX_SAMPLES,
        required=False,
        help_text=f"Simulated jobs: default {DEFAULT_SAMPLES}; Blender jobs: the scene file's unless given.",
    )
    frame_start = StrictIntegerField(
        min_value=0,
        max_value=domain.MAX_FRAME_NUMBER,
        required=False,
        help_text="Default 1; Blender jobs with neither frame_start nor frame_end: the scene file's frame range.",
    )
    frame_end = StrictIntegerField(
        min_value=0, max_value=domain.MAX_FRAME_NUMBER, required=False, help_text="Defaults to frame_start."
    )
    frames = StrictCharField(
        required=False,
        allow_blank=True,  # refused by the frame list's own parser, with its message
        trim_whitespace=False,
        max_length=domain.MAX_FRAME_LIST,
        help_text='Instead of frame_start and frame_end: a frame list, as "1-100x2,150,200-210" (ranges, '
        "ranges with a step, single frames; no frame twice). Chunks hold chunk_size frames of the list.",
    )
    fail_on_missing_files = serializers.BooleanField(
        required=False,
        help_text="Blender jobs (default true): a file that reads images, fonts or caches from outside itself "
        "fails (at submit when the file is inspected, else at its first chunk); false renders without them.",
    )
    chunk_size = StrictIntegerField(
        min_value=1,
        max_value=domain.MAX_CHUNK_SIZE,
        required=False,
        help_text=f"Frames per task; chunks render in parallel on several workers. Default "
        f"{domain.DEFAULT_CHUNK_SIZE}; Blender jobs: chunks of about 45 s by the scene file's measured speed (once "
        "the file is inspected).",
    )
    priority = serializers.ChoiceField(choices=[p.value for p in Priority], default="normal")
    callback_url = CallbackUrlField(
        required=False,
        help_text="POSTed the job (signed) when it ends COMPLETED, FAILED or CANCELLED; https in production.",
    )
    steps = serializers.ListField(
        child=EncodeStepInputSerializer(),
        max_length=MAX_STEPS,
        required=False,
        help_text="Run after the frames, in order; the job completes when the last one does. "
        '[{"type": "encode", "format": "mp4", "fps": 24}] adds a video of the frames (not for exr jobs).',
    )

    def validate(self, attrs):
        self._validate_renderer(attrs)
        from_file = []
        attrs["frame_list"] = None
        if "chunk_size" not in attrs:
            attrs["chunk_size"] = domain.DEFAULT_CHUNK_SIZE
            if attrs["renderer"] == RendererName.BLENDER:
                from_file.append(CHUNK_SIZE)
        if "frames" in attrs:
            self._validate_frame_list(attrs)
        elif attrs["renderer"] == RendererName.BLENDER and "frame_start" not in attrs and "frame_end" not in attrs:
            from_file.append(FRAME_RANGE)
            attrs["frame_start"] = attrs["frame_end"] = None
        else:
            attrs.setdefault("frame_start", 1)
            attrs.setdefault("frame_end", attrs["frame_start"])
            if problem := domain.frame_range_problem(attrs["frame_start"], attrs["frame_end"], attrs["chunk_size"]):
                raise serializers.ValidationError({problem[0]: [problem[1]]})
        if "output_format" not in attrs:
            if attrs["renderer"] == RendererName.BLENDER:
                from_file.append(OUTPUT_FORMAT)
            attrs["output_format"] = OutputFormat.PNG.value
        if attrs["output_format"] == OutputFormat.EXR and attrs["renderer"] != RendererName.BLENDER:
            raise serializers.ValidationError({"output_format": ["exr is for Blender jobs."]})
        attrs["from_file"] = tuple(sorted(from_file))
        self._validate_steps(attrs)
        return attrs

    @staticmethod
    def _validate_steps(attrs) -> None:
        """Steps as specs; what can be checked before a scene file's own settings are (again at submit)."""
        attrs["steps"] = tuple(spec_from_dict(step) for step in attrs.get("steps", ()))
        if not attrs["steps"]:
            return
        start, end, listed = attrs["frame_start"], attrs["frame_end"], attrs.get("frame_list")
        frames = len(listed) if listed is not None else None if start is None else end - start + 1
        output_format = OutputFormat(attrs["output_format"])
        if problem := steps_problem(attrs["steps"], output_format=output_format, frames=frames):
            raise serializers.ValidationError({"steps": [problem]})

    @staticmethod
    def _validate_frame_list(attrs) -> None:
        """`frames` in place of frame_start and frame_end: they become its first and last frames."""
        if "frame_start" in attrs or "frame_end" in attrs:
            raise serializers.ValidationError(
                {"frames": ["Give either frames or frame_start and frame_end, not both."]}
            )
        try:
            frames = domain.FrameList.parse(attrs.pop("frames"))
        except domain.FrameListError as exc:
            raise serializers.ValidationError({"frames": [str(exc)]}) from None
        if problem := domain.chunks_problem(len(frames), attrs["chunk_size"]):
            raise serializers.ValidationError({problem[0]: [problem[1]]})
        attrs.update(frame_start=frames.first, frame_end=frames.last)
        attrs["frame_list"] = None if frames.contiguous else frames

    @staticmethod
    def _validate_renderer(attrs) -> None:
        if attrs["renderer"] == RendererName.BLENDER:
            if "scene_file" not in attrs:
                raise serializers.ValidationError({"scene_file": ["Required for renderer blender."]})
            for name in ("width", "height", "samples"):
                attrs.setdefault(name, None)
            return
        for name in ("scene_file", "fail_on_missing_files"):
            if name in attrs:
                raise serializers.ValidationError({name: ["Only for renderer blender (a scene file)."]})
        missing = [name for name in ("width", "height") if name not in attrs]
        if missing:
            raise serializers.ValidationError({name: ["This field is required."] for name in missing})
        attrs.setdefault("samples", DEFAULT_SAMPLES)


class AssetCreateInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    sha256 = Sha256Field(help_text="SHA-256 of the file, 64 lowercase hex digits.")
    size = StrictIntegerField(min_value=1, help_text="Size of the file in bytes.")


class UploadOutputSerializer(serializers.Serializer):
    url = serializers.URLField()
    method = serializers.CharField()
    headers = serializers.DictField(child=serializers.CharField(), help_text="Send exactly these headers.")
    expires_in = serializers.IntegerField()


class AssetCreateOutputSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    upload = UploadOutputSerializer(allow_null=True, help_text="null: already stored, nothing to upload.")


class SceneSettingsOutputSerializer(serializers.Serializer):
    scene = serializers.CharField(help_text="The scene Blender renders (the file's active scene).")
    engine = serializers.CharField(help_text="cycles, eevee or workbench")
    frame_start = serializers.IntegerField()
    frame_end = serializers.IntegerField()
    frame_step = serializers.IntegerField()
    fps = serializers.FloatField()
    width = serializers.IntegerField(help_text="Pixels, with the file's resolution percentage applied.")
    height = serializers.IntegerField()
    samples = serializers.IntegerField(allow_null=True)
    film_transparent = serializers.BooleanField(help_text="Frames keep an alpha channel (PNG RGBA, EXR).")
    output_format = serializers.CharField(help_text="What the job stores by default: png, jpeg or exr.")
    file_format = serializers.CharField(help_text="The file's own output format, as Blender names it.")
    color_mode = serializers.CharField()
    compositing = serializers.BooleanField()
    camera = serializers.CharField(allow_null=True)
    blender = serializers.CharField(help_text="The version of Blender that read the file.")


class MissingFileOutputSerializer(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    path = serializers.CharField()
    fix = serializers.CharField()


class InspectionOutputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["pending", "done", "failed"],
        help_text="pending: a worker's Blender is reading the file (seconds); done; failed (see error).",
    )
    error = serializers.CharField(allow_null=True)
    refused = serializers.ListField(child=serializers.CharField(), help_text="What the farm will not render.")
    missing_files = MissingFileOutputSerializer(many=True, help_text="Files it reads from outside itself.")
    substitutions = serializers.ListField(
        child=serializers.CharField(), help_text="What this farm does instead of what the file asks (warnings)."
    )


class AssetOutputSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    uploaded = serializers.BooleanField()
    settings = SceneSettingsOutputSerializer(allow_null=True, help_text="The file's settings, once inspected.")
    inspection = InspectionOutputSerializer(allow_null=True, help_text="Null until the file is uploaded.")


class TaskLogOutputSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    chunk = serializers.IntegerField()
    log = serializers.CharField(help_text="The renderer's output, its last 64 KiB.")
    truncated = serializers.BooleanField(help_text="True when earlier output was dropped.")


class StepLogOutputSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    step = serializers.IntegerField()
    log = serializers.CharField(help_text="The step's program output (ffmpeg's, for an encode), its last 64 KiB.")
    truncated = serializers.BooleanField(help_text="True when earlier output was dropped.")


IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise serializers.ValidationError(
            {"Idempotency-Key": ["Use 1-128 characters of letters, digits and _ . : - (a UUID is ideal)."]}
        )
    return value


class JobListQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=[s.value for s in JobStatus], required=False)
    cursor = serializers.CharField(max_length=4096, required=False)
    # No default: a cursor carries its listing's limit (20 when the first page named none).
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False)


class FramesQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    offset = serializers.IntegerField(min_value=0, max_value=domain.MAX_FRAMES_PER_JOB, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class JobCreateQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=False, help_text="1: a quote. The same checks, then a scout job of a few frames instead of the job."
    )


class UsageOutputSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="The calendar month, UTC: YYYY-MM.")
    worker_seconds = serializers.FloatField(
        help_text="Seconds render workers spent on your jobs that ended this month (a running job's: on the job)."
    )
    spent = serializers.FloatField(help_text="Dollars: worker_seconds at the configured Fargate prices.")
    budget = serializers.FloatField(allow_null=True, help_text="Dollars a month; null: no budget.")
    remaining = serializers.FloatField(allow_null=True, help_text="budget - spent (at least 0); null: no budget.")


class PageQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    cursor = serializers.CharField(max_length=4096, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class TaskOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    frame_start = serializers.IntegerField()
    frame_end = serializers.IntegerField()
    frames = serializers.CharField(help_text='Its frames, the next chunk_size of the job\'s list: "81-99x2,150".')
    status = serializers.CharField()
    attempt = serializers.IntegerField()
    frames_done = serializers.IntegerField()
    render_failures = serializers.IntegerField()
    worker = serializers.CharField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    seconds_per_frame = serializers.FloatField(allow_null=True)
    worker_seconds = serializers.FloatField(help_text="Its holders' wall time from each claim (start-up included).")
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)


class JobListOutputSerializer(serializers.Serializer):
    jobs = JobOutputSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class TaskListOutputSerializer(serializers.Serializer):
    tasks = TaskOutputSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


def task_representation(chunk: Chunk) -> dict:
    return {
        "index": chunk.index,
        "frame_start": chunk.frame_start,
        "frame_end": chunk.frame_end,
        "frames": str(chunk.frames),
        "status": str(chunk.status),
        "attempt": chunk.attempt,
        "frames_done": chunk.frames_done,
        "render_failures": chunk.render_failures,
        "worker": chunk.worker,
        "started_at": chunk.started_at,
        "finished_at": chunk.finished_at,
        "seconds_per_frame": chunk.seconds_per_frame,
        "worker_seconds": round(chunk.worker_seconds, 1),
        "error": chunk.error,
        "error_code": chunk.error_code,
    }


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorOutputSerializer(serializers.Serializer):
    """The one error shape: `{"error": {"code", "message", "details"}}`."""

    error = ErrorDetailSerializer()
