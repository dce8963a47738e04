"""Mapping between DynamoDB items and domain objects (jobs, tasks, frame results)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from ..domain import FrameResult, Job, JobStatus, OutputFormat, Priority, Scene, Task

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


def job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def task_key(job_id: str, index: int) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"TASK#{index:05d}"}}


def active_index(kind: str, status: JobStatus, due: datetime, item_id: str) -> dict[str, str]:
    """The sparse gsi2 attributes: present only while work could get stuck, sorted by when it is due."""
    return {"gsi2pk": f"{kind}#{status}", "gsi2sk": f"{iso(due)}#{item_id}"}


def result_to_map(result: FrameResult) -> dict[str, Any]:
    return result.as_dict()


def map_to_result(value: dict[str, Any]) -> FrameResult:
    return FrameResult(
        frame=int(value["frame"]),
        key=value["key"],
        size=int(value["size"]),
        sha256=value["sha256"],
        content_type=value["content_type"],
    )


def job_to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"JOB#{job.id}",
        "sk": "JOB",
        "gsi1pk": f"OWNER#{job.owner}",
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
        "results": [result_to_map(r) for r in job.results],
        "fanout_sent": job.fanout_sent,
    }
    item.update(active_index("JOB", job.status, job.created_at, job.id))
    return item


def item_to_job(item: dict[str, Any]) -> Job:
    return Job(
        id=item["id"],
        owner=item["owner"],
        scene=Scene(
            name=item["scene"],
            width=int(item["width"]),
            height=int(item["height"]),
            output_format=OutputFormat(item["output_format"]),
            samples=int(item["samples"]),
        ),
        frame_start=int(item["frame_start"]),
        frame_end=int(item["frame_end"]),
        chunk_size=int(item["chunk_size"]),
        chunks_done=int(item.get("chunks_done", 0)),
        priority=Priority(item["priority"]),
        status=JobStatus(item["status"]),
        attempt=int(item["attempt"]),
        created_at=parse_iso(item["created_at"]),
        updated_at=parse_iso(item["updated_at"]),
        started_at=parse_iso(item.get("started_at")),
        finished_at=parse_iso(item.get("finished_at")),
        error=item.get("error"),
        frames_done=int(item.get("frames_done", 0)),
        render_failures=int(item.get("render_failures", 0)),
        worker=item.get("worker"),
        lease_token=item.get("lease_token"),
        lease_expires_at=from_seconds(item.get("lease_expires_at")),
        results=tuple(map_to_result(r) for r in item.get("results", [])),
        has_preview=bool(item.get("has_preview", False)),
        fanout_sent=int(item.get("fanout_sent", -1)),
    )


def task_to_item(task: Task, created_at: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"JOB#{task.job_id}",
        "sk": f"TASK#{task.index:05d}",
        "job_id": task.job_id,
        "index": task.index,
        "frame_start": task.frame_start,
        "frame_end": task.frame_end,
        "status": str(task.status),
        "attempt": task.attempt,
        "frames_done": task.frames_done,
        "render_failures": task.render_failures,
        "render_seconds": decimal(task.render_seconds),
        "results": [result_to_map(r) for r in task.results],
    }
    item.update(active_index("TASK", task.status, created_at, f"{task.job_id}#{task.index:05d}"))
    return item


def item_to_task(item: dict[str, Any]) -> Task:
    return Task(
        job_id=item["job_id"],
        index=int(item["index"]),
        frame_start=int(item["frame_start"]),
        frame_end=int(item["frame_end"]),
        status=JobStatus(item["status"]),
        attempt=int(item["attempt"]),
        frames_done=int(item.get("frames_done", 0)),
        render_failures=int(item.get("render_failures", 0)),
        render_seconds=float(item.get("render_seconds", 0)),
        worker=item.get("worker"),
        lease_token=item.get("lease_token"),
        lease_expires_at=from_seconds(item.get("lease_expires_at")),
        started_at=parse_iso(item.get("started_at")),
        finished_at=parse_iso(item.get("finished_at")),
        error=item.get("error"),
        results=tuple(map_to_result(r) for r in item.get("results", [])),
    )


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def serialize_value(value: Any) -> dict[str, Any]:
    return _ser.serialize(value)


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}
