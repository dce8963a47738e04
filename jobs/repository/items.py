"""Mapping between DynamoDB items and domain objects (jobs, tasks, frame results)."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from jobs.domain import (
    Chunk,
    FrameList,
    FrameResult,
    Job,
    JobStatus,
    OutputFormat,
    Priority,
    QuoteFor,
    RendererName,
    Scene,
    Step,
    StepArtifact,
    StepStatus,
    spec_from_dict,
)
from jobs.domain.keys import frame_key
from jobs.ports.values import IdempotencyRecord
from jobs.repository import partitions as P

_ser = TypeSerializer()
_de = TypeDeserializer()


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def seconds(value: datetime) -> Decimal:
    """Epoch seconds to the millisecond, as DynamoDB numbers want (no floats)."""
    return Decimal(f"{value.timestamp():.3f}")


def from_seconds(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


def decimal(value: float) -> Decimal:
    return Decimal(f"{value:.3f}")


# --- keys: one builder per key and index -----------------------------------------------------------
# The table's global secondary indexes and what each projects besides its keys and the table's (None:
# keys only). An index entry is rewritten only when its keys or projected attributes change, so the
# listing (gsi1) projects keys only and read the page's items with one BatchGetItem, and the
# sweeper's gsi2 projects just what it acts on. Used by bootstrap and the CDK table alike.
INDEX_PROJECTIONS: dict[str, tuple[str, ...] | None] = {
    "gsi1": None,
    "gsi2": ("id", "job_id", "index", "attempt"),
}


def job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": P.JOB + job_id}, "sk": {"S": P.JOB_KIND}}


def chunk_key(job_id: str, index: int | None) -> dict[str, Any]:
    """The item that stores a chunk: the job item for a one-chunk job (index None), else its chunk item."""
    if index is None:
        return job_key(job_id)
    return {"pk": {"S": P.JOB + job_id}, "sk": {"S": f"{P.CHUNK}{index:05d}"}}


def due_id(job_id: str, index: int | None) -> str:
    return job_id if index is None else f"{job_id}#{index:05d}"


def due_sort_key(due: datetime, item_id: str) -> str:
    """gsi2's sort key: the time the entry counts from (a job's or chunk's grace, a webhook's due time), then
    which item."""
    return f"{iso(due)}#{item_id}"


# Index partitions that many jobs write are sharded by a hash of the job id, so no partition key takes more
# than its share of a partition's 1,000 writes a second at 1,000 jobs and 10,000 frames a second (the
# arithmetic: docs/ARCHITECTURE.md, "Keys at 1,000 jobs a second"). Readers query every shard and merge.
DUE_SHARDS = 8  # gsi2: `<kind>#<status>#<n>`
OWNER_SHARDS = 8  # gsi1: `OWNER#<owner>#<n>`


def shard_of(item_id: str, shards: int) -> int:
    """An item's shard: stable, and even over ids (job ids start with a timestamp, so not their prefix)."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % shards


def due_index(kind: str, since: datetime, item_id: str) -> dict[str, str]:
    """The gsi2 attributes of a job or chunk item: written once with the item, whatever its state, and moved
    only by the sweeper (a postpone) and by the rare writes that reopen or hand over work (a retry, a
    release, a step). `since` is when the sweeper's grace period starts: it looks at the item once that
    period has passed (services/sweeper.py); a claim, a frame or an end writes no index entry.

    `kind` is JOB (job items) or TASK (chunk items of jobs of several chunks); the shard follows the item,
    so even one big job's chunks spread over every shard.
    """
    shard = shard_of(item_id, DUE_SHARDS)
    return {"gsi2pk": due_partition(kind, shard), "gsi2sk": due_sort_key(since, item_id)}


def due_partition(kind: str, shard: int) -> str:
    return f"{kind}#{shard}"


def due_partitions(kind: str) -> list[str]:
    """Every shard of one kind of work: the sweeper and the farm status read them all."""
    return [due_partition(kind, n) for n in range(DUE_SHARDS)]


def owner_partition(owner: str, job_id: str) -> str:
    """gsi1 partition: the shard of an owner's jobs that holds this job."""
    return f"{P.OWNER}{owner}#{shard_of(job_id, OWNER_SHARDS)}"


def owner_partitions(owner: str) -> list[str]:
    """Every shard of an owner's jobs: listings query them all and merge by sort key."""
    return [f"{P.OWNER}{owner}#{n}" for n in range(OWNER_SHARDS)]


# A frame's result as stored: 45 bytes (`RESULT`: format code, frame, size, SHA-256) when its key and content
# type are the ones its job's format gives (`frame_key`), as every rendered frame's are; else the whole map.
# A chunk of ten frames then stays within one write unit (ten maps were 1.7 KB: three units a write).
RESULT = struct.Struct(">BIQ32s")
RESULT_FORMATS = (OutputFormat.PNG, OutputFormat.JPEG, OutputFormat.EXR)  # codes: append, never reorder


def result_to_stored(job_id: str, result: FrameResult) -> bytes | dict[str, Any]:
    for code, fmt in enumerate(RESULT_FORMATS):
        if result.content_type == fmt.content_type and result.key == frame_key(job_id, result.frame, fmt):
            try:
                digest = bytes.fromhex(result.sha256)
            except ValueError:
                break
            if len(digest) == 32 and 0 <= result.frame < 2**32 and 0 <= result.size < 2**64:
                return RESULT.pack(code, result.frame, result.size, digest)
            break
    return result.as_dict()


def stored_to_result(job_id: str, value: Any) -> FrameResult:
    if isinstance(value, dict):
        return FrameResult(
            frame=int(value["frame"]),
            key=value["key"],
            size=int(value["size"]),
            sha256=value["sha256"],
            content_type=value["content_type"],
        )
    code, frame, size, digest = RESULT.unpack(value.value if isinstance(value, Binary) else value)
    fmt = RESULT_FORMATS[code]
    return FrameResult(
        frame=frame, key=frame_key(job_id, frame, fmt), size=size, sha256=digest.hex(), content_type=fmt.content_type
    )


# A job's or chunk's frame list in its normal form (`1-99x2,150`, at most MAX_FRAME_LIST characters; a chunk
# holds its own part of its job's list), absent when it renders every frame from frame_start to frame_end.
FRAMES = "frames"


def item_frames(item: dict[str, Any]) -> FrameList:
    """The frames of a job or chunk item (its list, else its range), as a write returned the item."""
    if item.get(FRAMES):
        return FrameList.stored(item[FRAMES])
    return FrameList.span(int(item["frame_start"]), int(item["frame_end"]))


def job_to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": P.JOB + job.id,
        "sk": P.JOB_KIND,
        "gsi1pk": owner_partition(job.owner, job.id),
        "gsi1sk": f"{iso(job.created_at)}#{job.id}",
        "id": job.id,
        "owner": job.owner,
        "scene": job.scene.name,
        "width": job.scene.width,
        "height": job.scene.height,
        "output_format": str(job.scene.output_format),
        "samples": job.scene.samples,
        "frame_start": job.frame_start,
        "frame_end": job.frame_end,
        "chunk_size": job.chunk_size,
        "chunks_total": job.chunks_total,
        "chunks_done": job.chunks_done,
        "priority": str(job.priority),
        "status": str(job.status),
        "attempt": job.attempt,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "frames_done": job.frames_done,
        "render_failures": job.render_failures,
        "crashes": job.crashes,
        "render_seconds": decimal(job.render_seconds),
        "worker_seconds": decimal(job.worker_seconds),
        "first_frame_seconds": decimal(job.first_frame_seconds),
        "results": [result_to_stored(job.id, r) for r in job.results],
        "fanout_sent": job.fanout_sent,
        "renderer": str(job.renderer),
        "scene_file": job.scene_file,
    }
    if job.callback_url:
        item["callback_url"] = job.callback_url
    if job.frame_list is not None:
        item[FRAMES] = str(job.frame_list)
    if not job.fail_on_missing_files:
        item["keep_missing"] = True
    if job.warnings:
        item["warnings"] = set(job.warnings)
    if job.steps:
        item["steps"] = [step_to_map(s) for s in job.steps]
    if job.steps_attempt:
        item["steps_attempt"] = job.steps_attempt
    if job.quote_for is not None:
        item["quote_for"] = job.quote_for.as_dict()
    item.update(due_index(P.JOB_KIND, job.created_at, job.id))
    return item


def item_to_job(item: dict[str, Any]) -> Job:
    job = Job(
        id=item["id"],
        owner=item["owner"],
        scene=Scene(
            name=item["scene"],
            width=_optional_int(item.get("width")),
            height=_optional_int(item.get("height")),
            output_format=OutputFormat(item["output_format"]),
            samples=_optional_int(item.get("samples")),
        ),
        chunk_size=int(item["chunk_size"]),
        chunks_done=int(item.get("chunks_done", 0)),
        priority=Priority(item["priority"]),
        created_at=parse_iso(item["created_at"]),
        updated_at=parse_iso(item["updated_at"]),
        has_preview=bool(item.get("has_preview", False)),
        fanout_sent=int(item.get("fanout_sent", -1)),
        callback_url=item.get("callback_url"),
        **_work_fields(item, item["id"]),
        renderer=RendererName(item.get("renderer", RendererName.SIMULATED)),
        scene_file=item.get("scene_file"),
        fail_on_missing_files=not item.get("keep_missing", False),
        warnings=tuple(sorted(item.get("warnings") or ())),
        steps=tuple(map_to_step(m) for m in item.get("steps") or ()),
        steps_attempt=int(item.get("steps_attempt", 0)),
        quote_for=QuoteFor(**{k: int(v) for k, v in item["quote_for"].items()}) if item.get("quote_for") else None,
    )
    return job


def _work_fields(item: dict[str, Any], job_id: str) -> dict[str, Any]:
    """What a job item and a chunk item both hold: frames, state, attempt, lease, progress, outcome."""
    return {
        "frame_start": int(item["frame_start"]),
        "frame_end": int(item["frame_end"]),
        "frame_list": FrameList.stored(item[FRAMES]) if item.get(FRAMES) else None,
        "status": JobStatus(item["status"]),
        "attempt": int(item["attempt"]),
        "frames_done": int(item.get("frames_done", 0)),
        "render_failures": int(item.get("render_failures", 0)),
        "crashes": int(item.get("crashes", 0)),
        "render_seconds": float(item.get("render_seconds", 0)),
        "worker_seconds": float(item.get("worker_seconds", 0)),
        "first_frame_seconds": float(item.get("first_frame_seconds", 0)),
        "worker": item.get("worker"),
        "lease_token": item.get("lease_token"),
        "lease_expires_at": from_seconds(item.get("lease_expires_at")),
        "started_at": parse_iso(item.get("started_at")),
        "finished_at": parse_iso(item.get("finished_at")),
        "error": item.get("error"),
        "error_code": item.get("error_code"),
        "results": tuple(stored_to_result(job_id, r) for r in item.get("results", [])),
    }


def step_to_map(step: Step) -> dict[str, Any]:
    """A step on the job item: its spec and its state in one map (absent fields are not written)."""
    artifact = None
    if step.artifact is not None:
        artifact = {k: v for k, v in step.artifact.as_dict().items() if k != "duration"}  # no floats: derived
    mapped = {
        **step.spec.as_dict(),
        "status": str(step.status),
        "attempt": step.attempt,
        "frames_done": step.frames_done,
        "failures": step.failures,
        "crashes": step.crashes,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "error": step.error,
        "error_code": step.error_code,
        "artifact": artifact,
    }
    return {k: v for k, v in mapped.items() if v is not None}


def map_to_step(value: dict[str, Any]) -> Step:
    artifact = value.get("artifact")
    return Step(
        spec=spec_from_dict(value),
        status=StepStatus(value.get("status", StepStatus.WAITING)),
        attempt=int(value.get("attempt", 1)),
        frames_done=int(value.get("frames_done", 0)),
        failures=int(value.get("failures", 0)),
        crashes=int(value.get("crashes", 0)),
        started_at=parse_iso(value.get("started_at")),
        finished_at=parse_iso(value.get("finished_at")),
        error=value.get("error"),
        error_code=value.get("error_code"),
        artifact=StepArtifact.from_dict(artifact) if artifact else None,
    )


def _optional_int(value: Any) -> int | None:
    """Width, height and samples of a Blender job are absent when the scene file's own apply."""
    return None if value is None else int(value)


def chunk_to_item(chunk: Chunk) -> dict[str, Any]:
    """A chunk item (jobs of several chunks); a one-chunk job's chunk is its job item. No index entry: the
    sweeper looks at a job's chunks through its job's (services/sweeper.py)."""
    item: dict[str, Any] = {
        "pk": P.JOB + chunk.job_id,
        "sk": f"{P.CHUNK}{chunk.index:05d}",
        "job_id": chunk.job_id,
        "index": chunk.index,
        "frame_start": chunk.frame_start,
        "frame_end": chunk.frame_end,
        "status": str(chunk.status),
        "attempt": chunk.attempt,
        "frames_done": chunk.frames_done,
        "render_failures": chunk.render_failures,
        "crashes": chunk.crashes,
        "render_seconds": decimal(chunk.render_seconds),
        "worker_seconds": decimal(chunk.worker_seconds),
        "first_frame_seconds": decimal(chunk.first_frame_seconds),
        "results": [result_to_stored(chunk.job_id, r) for r in chunk.results],
    }
    if chunk.frame_list is not None:
        item[FRAMES] = str(chunk.frame_list)
    return item


def item_to_chunk(item: dict[str, Any]) -> Chunk:
    """A chunk item, or a one-chunk job's item seen as its chunk."""
    if item.get("sk") == P.JOB_KIND:
        return item_to_job(item).as_chunk()
    return Chunk(job_id=item["job_id"], index=int(item["index"]), **_work_fields(item, item["job_id"]))


IDEMPOTENCY_SK = P.fixed_sort_key(P.IDEMPOTENCY)


def idempotency_key(name: str) -> dict[str, Any]:
    """`pk=IDEMPOTENCY#<owner>#<key>, sk=IDEMPOTENCY`: which job an Idempotency-Key created."""
    return {"pk": {"S": P.IDEMPOTENCY + name}, "sk": {"S": IDEMPOTENCY_SK}}


def idempotency_to_item(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "pk": P.IDEMPOTENCY + record.name,
        "sk": IDEMPOTENCY_SK,
        "job_id": record.job_id,
        "request_hash": record.request_hash,
        "created_at": record.created_at.isoformat(),
        "expires_at": epoch(record.expires_at),
    }


def item_to_idempotency(item: dict[str, Any]) -> IdempotencyRecord:
    expires_at = datetime.fromtimestamp(int(item["expires_at"]), UTC)
    return IdempotencyRecord(
        name=item["pk"].removeprefix(P.IDEMPOTENCY),
        job_id=item["job_id"],
        request_hash=item["request_hash"],
        created_at=parse_iso(item.get("created_at")) or expires_at,
        expires_at=expires_at,
    )


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def serialize_value(value: Any) -> dict[str, Any]:
    return _ser.serialize(value)


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}
