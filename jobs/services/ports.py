"""Interfaces the services need besides the repository: the task queue, and what a render runs with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ..domain import Priority
from ..renderers import Renderer
from ..repository import JobRepository
from ..storage import ResultStore

Clock = Callable[[], datetime]


class TaskQueue(Protocol):
    """Sends messages that carry ids only, on the queue of the job's priority."""

    def enqueue_chunk(self, *, job_id: str, index: int | None, attempt: int, priority: Priority) -> None: ...
    def enqueue_fanout(self, *, job_id: str, attempt: int, priority: Priority) -> None: ...


@dataclass(frozen=True)
class RenderContext:
    """What a render runs with in a worker process: adapters, the process's identity, clock and limits."""

    repo: JobRepository
    store: ResultStore
    renderer: Renderer
    clock: Clock
    name: str
    lease_seconds: int
    max_attempts: int
    retention: timedelta
    heartbeat_seconds: float = 20.0
    max_crashes: int = 5  # claims whose holder died (poison work) before the chunk fails
    # Seconds left before a requested shutdown must be done; None while the worker is not shutting down.
    grace_left: Callable[[], float | None] = lambda: None

    def lease_until(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease_seconds)
