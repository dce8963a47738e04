"""The farm at a glance, for operators (`manage.py farm_status`, `GET /api/farm`): what replaces
`celery inspect`, which needs a broadcast transport that SQS is not."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from jobs.ports import FarmRegistry, QueueStats


def farm_status(*, farm: FarmRegistry, queues: QueueStats, now: datetime) -> dict[str, Any]:
    """Live workers and what they render, queue depths per priority and the DLQ, running jobs by state."""
    workers = farm.workers(now=now)
    depths = queues.queues()
    by_state, counted_all = farm.jobs_by_state()
    return {
        "at": now.isoformat(),
        "workers": [
            {
                **{k: v for k, v in asdict(w).items() if k not in ("expires_at", "started_at", "beat_at")},
                "started_at": w.started_at.isoformat() if w.started_at else None,
                "last_beat_seconds": round((now - w.beat_at).total_seconds(), 1) if w.beat_at else None,
                "busy": w.job_id is not None,
            }
            for w in workers
        ],
        "queues": {p: asdict(d) for p, d in depths.items()},
        "in_flight": sum(d.in_flight for d in depths.values()),
        "dead_letters": queues.dead_letters().visible,
        "jobs_by_state": by_state,
        "jobs_by_state_complete": counted_all,  # False: more unfinished jobs than one count reads (a lower bound)
    }


def format_farm_status(status: dict[str, Any]) -> str:
    """The status as text for people (what `farm_status` prints)."""
    workers = status["workers"]
    busy = sum(w["busy"] for w in workers)
    lines = [f"workers: {len(workers)} alive, {busy} rendering"]
    for w in workers:
        doing = "idle"
        if w["busy"]:
            chunk = "" if w["chunk"] is None else f" chunk {w['chunk']}"
            doing = f"job {w['job_id']}{chunk} attempt {w['attempt']}, {w['frames_done']} frames done"
        lines.append(
            f"  {w['id']}  {w['host']} pid {w['pid']}  v{w['version']}  up since {w['started_at']}  "
            f"beat {w['last_beat_seconds']}s ago  {doing}"
        )
    lines.append("queues:")
    for priority, q in status["queues"].items():
        age = "-" if q["oldest_age"] is None else f"{q['oldest_age']:.0f}s"
        lines.append(
            f"  {priority:7s} {q['visible']:6d} waiting  {q['in_flight']:6d} in flight  {q['delayed']:6d} delayed  "
            f"oldest {age}"
        )
    lines.append(f"in flight: {status['in_flight']}   dead letters: {status['dead_letters']}")
    at_least = "" if status.get("jobs_by_state_complete", True) else "at least "
    lines.append("jobs: " + at_least + ", ".join(f"{state} {n}" for state, n in status["jobs_by_state"].items()))
    return "\n".join(lines)
