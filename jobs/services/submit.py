"""Submitting a job: validate limits, store it (idempotently), and enqueue its first message."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from jobs.domain import (
    MAX_CHUNK_SIZE,
    MAX_CHUNKS_PER_JOB,
    FrameList,
    Job,
    JobStatus,
    OutputFormat,
    Priority,
    QuoteFor,
    RendererName,
    Scene,
    StepSpec,
    chunk_count,
    frame_range_problem,
    new_job_id,
    new_steps,
    scout_frames,
    steps_problem,
)
from jobs.errors import (
    DomainError,
    IdempotencyKeyReused,
    IdempotencyTaken,
    JobAlreadyExists,
    JobNotFound,
    JobStateConflict,
    PriorityNotAllowed,
    SceneFileInspecting,
    SceneFileRefused,
    SceneFilesMissing,
    SceneFileUnreadable,
    ServiceUnavailable,
    StepsRefused,
    WebhookSecretMissing,
)
from jobs.ports import (
    INSPECTION_DONE,
    INSPECTION_FAILED,
    AssetInspection,
    IdempotencyRecord,
    JobControl,
    JobRepository,
    WebhookRepository,
)
from jobs.services.api_keys import SCOPE_HIGH
from jobs.services.assets import SceneFiles
from jobs.services.budgets import Spending, budget_check
from jobs.services.control import enqueue_work

log = logging.getLogger(__name__)
IDEMPOTENCY_TTL = timedelta(hours=24)


# What a Blender job may leave to its scene file: its range and format, and its chunk size (from its speed).
FRAME_RANGE, OUTPUT_FORMAT, CHUNK_SIZE = "frame_range", "output_format", "chunk_size"
CHUNK_SECONDS = 45.0  # what a chunk of a job that gives no chunk_size should take, by its file's measured speed
MISSING_LISTED = 10  # files named in a scene_files_missing answer


@dataclass(frozen=True)
class JobSpec:
    scene: Scene
    frame_start: int | None  # None (with frame_end): the scene file's range (FRAME_RANGE in from_file)
    frame_end: int | None
    chunk_size: int
    priority: Priority
    renderer: RendererName = RendererName.SIMULATED
    scene_file: str | None = None  # the SHA-256 of the owner's asset; Blender jobs only
    callback_url: str | None = None
    fail_on_missing_files: bool = True  # Blender jobs: refuse a file that reads files from outside itself
    from_file: tuple[str, ...] = ()  # what the request left to the scene file (FRAME_RANGE, OUTPUT_FORMAT, CHUNK_SIZE)
    steps: tuple[StepSpec, ...] = ()  # after the frames, one after another (jobs/domain/steps.py)
    # `frames: "1-99x2,150"`: the frames from frame_start to frame_end it renders (None: every one)
    frame_list: FrameList | None = None

    def fingerprint(self, *, dry_run: bool = False) -> str:
        """A hash of the request as validated, so the same body in another key order still matches (and the
        same frames, as a list or as a range); a dry run of it is another request."""
        defaults = {
            "callback_url": None,
            "fail_on_missing_files": True,
            "from_file": (),
            "steps": (),
            "frame_list": None,
        }
        fields = {k: v for k, v in asdict(self).items() if not (k in defaults and v == defaults[k])}
        if dry_run:
            fields["dry_run"] = True
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def job_create(
    *,
    jobs: JobControl,
    owner: str,
    spec: JobSpec,
    idempotency_key: str | None,
    now: datetime,
    scopes: frozenset[str],
    frame_limit: int,
    scene_files: SceneFiles,
    hooks: WebhookRepository,
    spending: Spending,
    dry_run: bool = False,
) -> tuple[Job, bool]:
    """Store a QUEUED job and send its first message; returns (job, replayed).

    With an Idempotency-Key the job and the key's record are written in one transaction, so concurrent
    duplicates create one job; a replay returns the original job. If the enqueue fails the job is
    withdrawn and the caller gets 503 (nothing accepted, nothing left behind).

    Fairness: priority high needs a key with the high scope, and the owner's frames waiting or rendering
    may not pass `frame_limit` (0: no limit); both are refused before anything is written.
    A job that names a scene file needs it declared and stored as declared (422 otherwise); it is then
    kept at least `scene_files.retention` longer. A job with a callback URL needs its owner to have a
    webhook secret (`hooks`), else 409 webhook_secret_missing. An owner whose spend this month has reached
    its budget is refused (429 budget_exceeded).

    A dry run (`dry_run`) is checked exactly as the job, then stores and sends a scout job instead: a few of
    its frames in one chunk, no steps, no callback, marked with what it quotes (`quote_for`; services/quotes.py).
    """
    repo = jobs.repo
    if spec.priority is Priority.HIGH and SCOPE_HIGH not in scopes:
        raise PriorityNotAllowed()
    if spec.callback_url and hooks.secret(owner) is None:
        raise WebhookSecretMissing()
    budget_check(spending=spending, owner=owner, now=now)
    request_spec = spec
    if spec.scene_file is not None:
        # Only a range left to the file makes the client wait for the inspection (409, then again): otherwise the
        # job's first chunk checks the file, and the inspection comes after the farm's waiting chunks.
        waited_for = FRAME_RANGE in spec.from_file
        inspection = scene_files.keep(owner=owner, sha256=spec.scene_file, now=now, waited_for=waited_for)
        spec = from_the_file(spec, inspection)
    if spec.steps and (problem := _steps_problem(spec)):  # the format and range may have been the file's
        raise StepsRefused(problem)
    quote_for = None
    if dry_run:
        frames = spec.frame_list or FrameList.span(spec.frame_start, spec.frame_end)
        spec, quote_for = scout_of(spec=spec, frames=frames)
    job = Job(
        id=new_job_id(),
        owner=owner,
        scene=spec.scene,
        frame_start=spec.frame_start,
        frame_end=spec.frame_end,
        frame_list=spec.frame_list,
        chunk_size=spec.chunk_size,
        priority=spec.priority,
        renderer=spec.renderer,
        scene_file=spec.scene_file,
        fail_on_missing_files=spec.fail_on_missing_files,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        callback_url=spec.callback_url,
        steps=new_steps(spec.steps),
        quote_for=quote_for,
    )
    record = None
    if idempotency_key is not None:
        record = IdempotencyRecord(
            name=f"{owner}#{idempotency_key}",
            job_id=job.id,
            # the request as sent: a replay matches before resolving (and a dry run is another request)
            request_hash=request_spec.fingerprint(dry_run=dry_run),
            created_at=now,
            expires_at=now + IDEMPOTENCY_TTL,
        )
    repo.reserve_frames(owner, job.frames_total, limit=frame_limit)
    return _store_and_send(jobs, job, record)


def scout_of(*, spec: JobSpec, frames: FrameList) -> tuple[JobSpec, QuoteFor]:
    """(the scout's spec, what it quotes): the job's first, middle and last frames in one chunk, the same scene
    and settings, no steps (a scout never encodes) and no callback."""
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


def _steps_problem(spec: JobSpec) -> str | None:
    if spec.frame_list is not None:
        frames = len(spec.frame_list)
    else:
        frames = None if spec.frame_start is None else spec.frame_end - spec.frame_start + 1
    return steps_problem(spec.steps, output_format=spec.scene.output_format, frames=frames)


def from_the_file(spec: JobSpec, inspection: AssetInspection) -> JobSpec:
    """The job with what it left to its scene file filled in from the file's inspection, after the checks
    the inspection allows at submit: what the farm refuses in the file (422 scene_refused) and files it reads
    from outside itself (422 scene_files_missing, unless the job renders without them). A range left to a
    file still being inspected is 409 scene_file_inspecting (Retry-After); a format falls back to PNG."""
    if inspection.state == INSPECTION_FAILED:
        raise SceneFileUnreadable(f"Blender could not read the scene file: {inspection.error}")
    if inspection.state != INSPECTION_DONE:
        if FRAME_RANGE in spec.from_file:
            raise SceneFileInspecting()
        return spec  # checked by the first chunk instead
    report = inspection.report or {}
    if report.get("refused"):
        raise SceneFileRefused(
            "The scene file is refused: " + "; ".join(report["refused"]) + ".", details={"refused": report["refused"]}
        )
    missing = report.get("missing_files") or []
    if missing and spec.fail_on_missing_files:
        named = "; ".join(f"{m['kind']} {m['name']!r} ({m['path'] or 'no path'})" for m in missing[:MISSING_LISTED])
        raise SceneFilesMissing(
            f"The scene file reads {len(missing)} file(s) from outside itself: {named}. Pack them into the .blend "
            "(File > External Data > Pack Resources), or submit with fail_on_missing_files false to render without.",
            details={"missing_files": missing[:MISSING_LISTED]},
        )
    settings = inspection.settings
    changes: dict = {}
    if CHUNK_SIZE in spec.from_file and (picked := chunk_size_from_speed(spec, inspection)) is not None:
        spec = replace(spec, chunk_size=picked)
    if FRAME_RANGE in spec.from_file:
        start, end = int(settings["frame_start"]), int(settings["frame_end"])
        if problem := frame_range_problem(start, end, spec.chunk_size):
            raise DomainError(
                f"The scene file's frame range {start}-{end} cannot be rendered as one job: {problem[1]} Give "
                "frame_start and frame_end, or frames (or chunk_size).",
                details={"frame_range": [start, end]},
            )
        changes.update(frame_start=start, frame_end=end)
    if OUTPUT_FORMAT in spec.from_file:
        changes["scene"] = replace(spec.scene, output_format=OutputFormat(settings.get("output_format", "png")))
    return replace(spec, **changes)


def chunk_size_from_speed(spec: JobSpec, inspection: AssetInspection) -> int | None:
    """Frames per chunk so that a chunk takes about CHUNK_SECONDS, from the seconds the inspection's probe frame
    took at the file's own size and samples, scaled by the job's overrides (pixels x samples); None without a
    measure. A file slower than the probe's limit gets chunks of one frame."""
    speed = (inspection.report or {}).get("speed") or {}
    seconds = speed.get("seconds_per_frame")
    if seconds is None:
        return 1 if speed.get("longer_than") else None
    own = inspection.settings

    def work(width, height, samples) -> float:
        return float(width or 0) * float(height or 0) * float(samples or 1)

    width, height, samples = own.get("width"), own.get("height"), own.get("samples")
    measured = work(width, height, samples)
    wanted = work(spec.scene.width or width, spec.scene.height or height, spec.scene.samples or samples)
    per_frame = max(float(seconds) * (wanted / measured if measured > 0 else 1.0), 0.001)
    picked = max(1, min(MAX_CHUNK_SIZE, round(CHUNK_SECONDS / per_frame)))
    if spec.frame_start is not None:  # no more chunks than a job may have
        frames = len(spec.frame_list) if spec.frame_list is not None else spec.frame_end - spec.frame_start + 1
        picked = max(picked, min(MAX_CHUNK_SIZE, -(-frames // MAX_CHUNKS_PER_JOB)))
    return picked


def _store_and_send(
    jobs: JobControl, job: Job, record: IdempotencyRecord | None, *, replaying: bool = False
) -> tuple[Job, bool]:
    """Store the job (after its key's record, when it has one) and send it: (the job, whether it replays).

    The job's frames are reserved: they stay with it only if this request stores it. A job of this key that
    another request with the key stored first is returned as it is (that request sends it); `replaying`: this
    request finishes a job its key's record names, under the recorded id."""
    repo = jobs.repo
    try:
        repo.add(job, idempotency=record)
    except IdempotencyTaken:
        return _replay(jobs, record, job)
    except JobAlreadyExists:
        repo.release_frames(job.owner, job.frames_total)
        if record is None and not replaying:
            raise
        return _stored(repo, job.id), True
    except Exception:
        repo.release_frames(job.owner, job.frames_total)
        raise
    _send(jobs, job)
    return job, replaying


def _replay(jobs: JobControl, record: IdempotencyRecord, job: Job) -> tuple[Job, bool]:
    """A request with a key a live record holds: the job it made, if the request is the same one (422 if not).

    A record without its job (the key's first request died between its two writes, or its job was withdrawn
    after a failed send, or it is a moment ahead of this one) is finished here, under the recorded id, as a
    submit of its own: whoever stores the job first sends it, so the key makes one job and one message."""
    repo = jobs.repo
    try:
        existing = repo.idempotency_record(record.name)
        if existing is None:  # expired, between our write and this read
            raise ServiceUnavailable("The original request with this Idempotency-Key did not complete; send it again.")
        if existing.request_hash != record.request_hash:
            raise IdempotencyKeyReused()
        found = repo.get(existing.job_id)
    except JobNotFound:
        return _store_and_send(jobs, job.replace(id=existing.job_id), None, replaying=True)
    except Exception:
        repo.release_frames(job.owner, job.frames_total)
        raise
    repo.release_frames(job.owner, job.frames_total)
    return found, True


def _stored(repo: JobRepository, job_id: str) -> Job:
    """The job another request with this key stored; gone again if that request's send failed (503: retry)."""
    try:
        return repo.get(job_id)
    except JobNotFound:
        raise ServiceUnavailable("The request with this Idempotency-Key did not complete; send it again.") from None


def _send(jobs: JobControl, job: Job) -> None:
    """Send a stored job's first message. If that fails the job is withdrawn, its frames given back, and the
    client gets 503 (a retry with its Idempotency-Key finishes it under the same id). A job a worker already
    took was sent after all (a send that failed only on its way back): it is accepted. One that cannot be
    withdrawn (DynamoDB unreachable too) stays QUEUED with its frames, for the sweeper to send; still 503."""
    try:
        enqueue_work(queue=jobs.queue, job=job)
        return
    except ServiceUnavailable as failed:
        unsent = failed
    try:
        jobs.repo.withdraw(job.id)
    except JobStateConflict:
        return
    except JobNotFound:
        pass  # withdrawn already (by another request with its key): its frames are still this request's
    except Exception:
        log.exception("could not withdraw job %s after a failed enqueue; the sweeper will send it", job.id)
        raise unsent from None
    jobs.repo.release_frames(job.owner, job.frames_total)
    raise unsent
