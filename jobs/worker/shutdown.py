"""Graceful shutdown: SIGTERM reaches the worker's main process; its pool processes learn of it here.

The event and timestamp are created at import, in the main process, before the pool forks, so every
pool process shares them. `renderproject/celery.py` sets them on Celery's `worker_shutting_down`.
"""

from __future__ import annotations

import multiprocessing
import time

_context = multiprocessing.get_context("fork")
_requested = _context.Event()
_at = _context.Value("d", 0.0)


_requested_here = False  # this process's own flag: read without the shared event's lock


def request() -> None:
    global _requested_here
    _requested_here = True
    _at.value = time.time()
    _requested.set()


def requested() -> bool:
    """Whether shutdown was requested in this process (the worker's main process, where Celery's shutdown
    signal fires). Lock-free: the event's lock, taken here by a signal handler's `request()` while this very
    thread held it for a read, would deadlock the process."""
    return _requested_here


def grace_left(grace_seconds: float) -> float | None:
    """Seconds left of the grace period since shutdown was requested; None while not shutting down."""
    if not _requested.is_set():
        return None
    return grace_seconds - (time.time() - _at.value)
