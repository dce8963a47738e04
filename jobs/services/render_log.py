"""A chunk's render log (or a step's: ffmpeg's output): the tail of what its program wrote, kept in memory and
saved to S3 as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from jobs.domain import log_key
from jobs.ports import ResultStore

LOG_LIMIT = 64 * 1024  # characters kept: the end of the output, where errors are


class ChunkLog:
    """A `RenderLog` that keeps the last LOG_LIMIT characters and saves them (when changed) on `flush`; at
    `key` when given (a step's log), else at the chunk's."""

    def __init__(
        self,
        *,
        store: ResultStore,
        job_id: str,
        chunk: int,
        monotonic: Callable[[], float] = time.monotonic,
        key: str | None = None,
    ):
        self._store, self._key = store, key or log_key(job_id, chunk)
        self._text = ""
        self.warnings: list[str] = []  # in the order first seen, each once
        self._truncated = False
        self._dirty = False
        self._monotonic = monotonic
        self._saved_at = monotonic()

    def write(self, text: str) -> None:
        if not text:
            return
        self._text += text
        if len(self._text) > LOG_LIMIT:
            self._text = self._text[-LOG_LIMIT:]
            self._truncated = True
        self._dirty = True

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def text(self) -> str:
        return self._text

    def flush(self, *, every: float = 0.0) -> None:
        """Save the log if it changed and at least `every` seconds passed since the last save."""
        if not self._dirty or self._monotonic() - self._saved_at < every:
            return
        body = json.dumps({"log": self._text, "truncated": self._truncated}).encode()
        self._store.put_bytes(key=self._key, body=body, content_type="application/json")
        self._dirty, self._saved_at = False, self._monotonic()


def read_log(*, store: ResultStore, job_id: str, chunk: int, key: str | None = None) -> dict | None:
    """The saved log of a chunk (or at `key`: a step's) as `{"log", "truncated"}`, or None when there is none."""
    body = store.get_optional(key or log_key(job_id, chunk))
    return None if body is None else json.loads(body)
