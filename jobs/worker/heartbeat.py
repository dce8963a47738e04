"""Each worker (pool) process's heartbeat item: who it is and what it renders, every few seconds.

A daemon thread in the process puts the item (jobs/repository/farm.py) every `every` seconds with an
expiry three beats ahead; `farm_status` and `GET /api/farm` list the items that have not expired. A
failed put is logged and tried again at the next beat: the heartbeat never stops the work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from jobs.domain import utcnow
from jobs.ports.values import WorkerBeat
from jobs.worker.activity import ACTIVITY
from jobs.worker.identity import worker_id

log = logging.getLogger(__name__)
BEATS_TO_EXPIRE = 3


class Heartbeat:
    def __init__(self, registry, *, every: float, version: str):
        self.registry, self.every, self.version = registry, every, version
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def beat(self) -> WorkerBeat:
        now, current = utcnow(), ACTIVITY.snapshot()
        beat = WorkerBeat(
            id=worker_id(),
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            started_at=self.started_at,
            beat_at=now,
            expires_at=now + timedelta(seconds=self.every * BEATS_TO_EXPIRE),
            job_id=current.job_id,
            chunk=current.chunk,
            attempt=current.attempt,
            frames_done=current.frames_done,
            frames_total=current.frames_total,
        )
        self.registry.beat(beat)
        return beat

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                log.warning("heartbeat not written; trying again at the next beat", exc_info=True)
            if self._stop.wait(self.every):
                return
