"""The opaque id of a worker (pool) process, as chunks and heartbeats carry it."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket

log = logging.getLogger(__name__)


def worker_id_of(host: str, pid: int) -> str:
    """The opaque id of the process `pid` on `host` (customers see it on chunks, not the host or pid)."""
    return "w-" + hashlib.sha256(f"{host}:{pid}".encode()).hexdigest()[:12]


@functools.cache
def _worker_id(pid: int) -> str:
    """This pool process's id; the log maps it to host and pid."""
    host = socket.gethostname()
    wid = worker_id_of(host, pid)
    log.info("worker id %s is %s pid %d", wid, host, pid)
    return wid


def worker_id() -> str:
    return _worker_id(os.getpid())
