"""Keeps a lease alive from a background thread while a long frame renders."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from jobs.errors import JobStateConflict

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Calls `renew` every `every` seconds unless a progress write renewed the lease more recently.

    Every progress write renews the lease (services/progress.py), so this thread only speaks during waits
    longer than `every`. When a renewal is refused (the lease was lost, or the job is stopping) it stops;
    the refusal is kept (ChunkProgress) and the render loop raises it: the render stops there. A renewal that
    fails otherwise (AWS unreachable) is tried again within a second.
    """

    def __init__(self, renew: Callable[[], None], *, every: float):
        self._renew = renew
        self._every = every
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._refused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self.renewals = 0

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def touched(self) -> None:
        self._last = time.monotonic()

    def refused(self) -> bool:
        """True once a renewal was refused: the renderer should stop (the next write says why)."""
        return self._refused.is_set()

    def _run(self) -> None:
        while not self._stop.wait(min(self._every / 4, 0.5)):  # speaks within half a second of its time
            if time.monotonic() - self._last < self._every:
                continue
            try:
                self._renew()
                self.renewals += 1
                self.touched()
            except JobStateConflict as exc:
                log.info("lease renewal refused (%s); the render stops", exc.message)
                self._refused.set()
                return
            except Exception:
                # Not touched: tried again within a second, not a heartbeat later (the lease is running out).
                log.warning("lease renewal failed; trying again", exc_info=True)
                self._stop.wait(1.0)
