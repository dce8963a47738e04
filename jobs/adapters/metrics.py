"""Metrics as CloudWatch embedded metric format (EMF): one JSON log line per event, no agent, no API call.

CloudWatch Logs turns a JSON log event with an `_aws` member into metrics (the documented EMF shape:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
so the worker and the API write them through the logger like any line, with the line's context as
searchable properties. The dashboard and alarms (infra/constructs/monitoring.py) read these metrics.
In `RENDER_LOG_FORMAT=text` the same line reads `metric Name=value ...`.

| metric | unit | dimensions | from |
|---|---|---|---|
| FramesRendered, RenderSeconds | Count, Seconds | none | each recorded frame |
| QueueWait | Seconds | none | submit to the first claim of each chunk |
| JobsFinished, JobDuration | Count, Seconds | Outcome | a job COMPLETED or FAILED by a worker |
| ChunkRetries, ChunkFailures | Count | Reason | a failed render retried, or failed for good |
| WorkerStarts | Count | none | each worker (pool) process start: crash loops show here |
| ApiRequests, ApiLatency | Count, Milliseconds | none; Status; Route, Status | each API request |
"""

from __future__ import annotations

import contextlib
import logging
import time

log = logging.getLogger("render.metrics")


class EmbeddedMetrics:
    """Writes EMF documents in `namespace`; implements the `jobs.ports.Metrics` port for the render loop."""

    def __init__(self, *, namespace: str):
        self.namespace = namespace

    def emit(
        self,
        values: dict[str, tuple[float, str]],
        *,
        dimensions: dict[str, str] | None = None,
        dimension_sets: list[list[str]] | None = None,
    ) -> None:
        """One document: `values` maps a metric name to (value, unit); each dimension set is a metric series."""
        dims = dimensions or {}
        sets = dimension_sets if dimension_sets is not None else [sorted(dims)]
        doc = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": sets,
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                    }
                ],
            },
            **dims,
            **{name: value for name, (value, _) in values.items()},
        }
        summary = " ".join([*(f"{k}={v}" for k, v in dims.items()), *(f"{n}={v:g}" for n, (v, _) in values.items())])
        with contextlib.suppress(Exception):  # metrics never fail the work
            log.info("metric %s", summary, extra=doc)

    # --- jobs.ports.Metrics ---
    def chunk_claimed(self, *, job_id: str, frames_done: int, queue_wait: float | None) -> None:
        if queue_wait is not None:
            self.emit({"QueueWait": (max(queue_wait, 0.0), "Seconds")})

    def frame_rendered(self, *, seconds: float) -> None:
        self.emit({"FramesRendered": (1, "Count"), "RenderSeconds": (seconds, "Seconds")})

    def job_finished(self, *, outcome: str, seconds: float | None) -> None:
        values = {"JobsFinished": (1, "Count")}
        if seconds is not None:
            values["JobDuration"] = (seconds, "Seconds")
        self.emit(values, dimensions={"Outcome": str(outcome)})

    def chunk_failed(self, *, reason: str, retried: bool) -> None:
        self.emit({("ChunkRetries" if retried else "ChunkFailures"): (1, "Count")}, dimensions={"Reason": reason})

    # --- the API and the worker process ---
    def api_request(self, *, route: str, status: int, milliseconds: float) -> None:
        self.emit(
            {"ApiRequests": (1, "Count"), "ApiLatency": (milliseconds, "Milliseconds")},
            dimensions={"Route": route, "Status": str(status)},
            dimension_sets=[[], ["Status"], ["Route", "Status"]],
        )

    def worker_started(self) -> None:
        self.emit({"WorkerStarts": (1, "Count")})
