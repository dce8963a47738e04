"""What this worker process is doing now (its chunk and frames done), for its heartbeat item and its logs.

Set by the task hooks (jobs/worker/signals.py) and by the render loop through the Metrics port, which
`ActivityMetrics` implements by passing every event on to the embedded metrics as well.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Current:
    job_id: str | None = None
    chunk: int | None = None
    attempt: int | None = None
    frames_done: int = 0
    frames_total: int = 0  # frames rendered by this process since it started


class Activity:
    def __init__(self):
        self._lock = threading.Lock()
        self.current = Current()

    def task_started(self, *, job_id: str | None, chunk: int | None, attempt: int | None) -> None:
        with self._lock:
            total = self.current.frames_total
            self.current = Current(job_id=job_id, chunk=chunk, attempt=attempt, frames_total=total)

    def task_ended(self) -> None:
        with self._lock:
            self.current = Current(frames_total=self.current.frames_total)

    def claimed(self, frames_done: int) -> None:
        with self._lock:
            self.current.frames_done = frames_done

    def frame(self) -> None:
        with self._lock:
            self.current.frames_done += 1
            self.current.frames_total += 1

    def snapshot(self) -> Current:
        with self._lock:
            return Current(**vars(self.current))


ACTIVITY = Activity()


class ActivityMetrics:
    """The render loop's Metrics port in a worker: tracks `ACTIVITY`, then passes each event on."""

    def __init__(self, inner):
        self.inner = inner

    def chunk_claimed(self, *, job_id: str, frames_done: int, queue_wait: float | None) -> None:
        ACTIVITY.claimed(frames_done)
        self.inner.chunk_claimed(job_id=job_id, frames_done=frames_done, queue_wait=queue_wait)

    def frame_rendered(self, *, seconds: float) -> None:
        ACTIVITY.frame()
        self.inner.frame_rendered(seconds=seconds)

    def job_finished(self, *, outcome: str, seconds: float | None) -> None:
        self.inner.job_finished(outcome=outcome, seconds=seconds)

    def chunk_failed(self, *, reason: str, retried: bool) -> None:
        self.inner.chunk_failed(reason=reason, retried=retried)
