"""The opaque id of a worker (pool) process, as chunks and heartbeats carry it."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket

log = logging.getLogger(__name__)


@functools.cache
def _worker_id(pid: int) -> str:
    """An opaque id for this pool process (customers see it on chunks); the log maps it to host and pid."""
    host = socket.gethostname()
    wid = "w-" + hashlib.sha256(f"{host}:{pid}".encode()).hexdigest()[:12]
    log.info("worker id %s is %s pid %d", wid, host, pid)
    return wid


def worker_id() -> str:
    return _worker_id(os.getpid())
