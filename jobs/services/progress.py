"""A rendering chunk's frames on their way from S3 to its item: recorded in batches, one write at a time.

Each frame is stored in S3 as soon as it is rendered; its result is recorded on the chunk's item by one
write that carries every frame rendered since the last write. A write is made when the chunk's last frame
is in, or when the last write is `progress_seconds` old; between writes the lease keeper's thread
(`keep_alive`) records the frames waiting, or renews the lease alone when none wait. So a chunk of short
frames costs a write (and, for a job of several chunks, a progress publish on the job, where cancels are
noticed) per `progress_seconds`, not per frame.

Frames rendered but not yet recorded when a worker dies are rendered again by the chunk's next holder (to
the same S3 keys); nothing is recorded twice, because every write requires the frames done that it follows.
A refused write (lost lease, stopped job) is kept and raised again by every later call, whichever thread
meets it first. Any other error (AWS unreachable, a timeout) is retried a few times as the same write (one
write id, so a try that applied but lost its response counts as done), then raised.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime

from jobs.domain import Chunk, FrameResult
from jobs.errors import JobStateConflict
from jobs.ports import RenderContext

log = logging.getLogger(__name__)
WRITE_TRIES = 3  # a progress write after an AWS error: tried again after 0.5 s, then 1 s


class ChunkProgress:
    def __init__(self, ctx: RenderContext, chunk: Chunk, *, token: str, claimed_at: datetime):
        self._ctx = ctx
        self._token = token
        self._lock = threading.Lock()
        self._pending: list[FrameResult] = []
        self._pending_seconds = 0.0
        self._pending_first = 0.0  # the seconds of this holder's first frame, until written
        self._first_seen = False
        self._written_at = ctx.clock()  # the claim wrote the chunk last
        self._worked_until = claimed_at  # worker-seconds are counted from the claim to each write
        self._refused: JobStateConflict | None = None
        self._has_preview = False  # for the write holding a one-chunk job's last frame (its outputs are made)
        # The id and size of a write that raised (it may have applied): the same batch is written as it again.
        self._unsure: tuple[str, int] | None = None
        self.current = chunk  # the chunk as its item now stands

    @property
    def frames_rendered(self) -> int:
        """Frames recorded plus frames waiting to be."""
        with self._lock:
            return self.current.frames_done + len(self._pending)

    @property
    def complete(self) -> bool:
        """Every frame of the chunk is recorded (the chunk, or the one-chunk job, is COMPLETED)."""
        with self._lock:
            return self._complete()

    def _complete(self) -> bool:
        return self.current.frames_done == len(self.current.frames)

    def results(self) -> list[FrameResult]:
        with self._lock:
            return [*self.current.results, *self._pending]

    def add(self, result: FrameResult, seconds: float, *, has_preview: bool = False) -> bool:
        """A frame is stored in S3; True if it was recorded now (it is the chunk's last, or a write was due)."""
        with self._lock:
            self._raise_refusal()
            self._pending.append(result)
            self._pending_seconds += seconds
            if not self._first_seen:  # its seconds hold the renderer's start (Blender's), as the quote needs
                self._first_seen = True
                self._pending_first = seconds
            self._has_preview = self._has_preview or has_preview
            now = self._ctx.clock()
            last = self.current.frames_done + len(self._pending) == len(self.current.frames)
            if last or (now - self._written_at).total_seconds() >= self._ctx.progress_seconds:
                self._write()
                return True
            return False

    def flush(self) -> None:
        """Record the frames waiting, if any (before a release or a failure is written)."""
        with self._lock:
            self._raise_refusal()
            if self._pending:
                self._write()

    def keep_alive(self) -> None:
        """The lease keeper's call during a long wait: record the frames waiting, else renew the lease."""
        with self._lock:
            if self._pending:
                self._write()
                return
            self._raise_refusal()
            if self._complete():
                return  # nothing holds a lease any more
            try:
                self._ctx.repo.chunks.renew(self.current, token=self._token, until=self._ctx.lease_until())
            except JobStateConflict as exc:
                self._refused = exc
                raise

    def raise_refusal(self) -> None:
        """Raise the refusal a write or renewal met (LeaseLost, JobNotRunning), if one did."""
        with self._lock:
            self._raise_refusal()

    def _raise_refusal(self) -> None:
        if self._refused is not None:
            raise self._refused

    def _write(self) -> None:
        self._raise_refusal()
        if self._unsure is not None and self._unsure[1] == len(self._pending):
            write_id = self._unsure[0]  # the same batch as the write that raised: if that one applied, this is it
        else:
            write_id = uuid.uuid4().hex  # one id for every try of this write
        for attempt in range(WRITE_TRIES):
            now = self._ctx.clock()
            try:
                self.current = self._ctx.repo.chunks.record_frames(
                    self.current,
                    token=self._token,
                    results=tuple(self._pending),
                    render_seconds=self._pending_seconds,
                    worker_seconds=max((now - self._worked_until).total_seconds(), 0.0),
                    first_frame_seconds=self._pending_first,
                    now=now,
                    lease_until=self._ctx.lease_until(),
                    has_preview=self._has_preview,
                    expires_at=now + self._ctx.retention,
                    write_id=write_id,
                )
                break
            except JobStateConflict as exc:
                self._refused = exc
                raise
            except Exception:
                if attempt + 1 == WRITE_TRIES:
                    self._unsure = (write_id, len(self._pending))
                    raise
                log.warning("%s: progress write failed; trying it again", self.current.name, exc_info=True)
                time.sleep(0.5 * 2**attempt)
        self._pending.clear()
        self._pending_seconds = 0.0
        self._pending_first = 0.0
        self._written_at = self._worked_until = now
        self._unsure = None
