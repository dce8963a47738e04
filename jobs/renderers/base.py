"""The base of renderers that make one frame at a time in-process (see jobs.ports.Renderer for the contract)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from jobs.domain import Job
from jobs.ports import RenderedFrame, RenderLog


class FrameRenderer:
    """Implement `render(job, frame) -> bytes`; this turns it into the chunk-level `render_chunk`.

    Each frame is yielded as soon as it is made, and `should_stop` is checked between frames.
    """

    def render(self, job: Job, frame: int) -> bytes:
        raise NotImplementedError

    def render_chunk(
        self, job: Job, frames: Sequence[int], *, should_stop: Callable[[], bool], log: RenderLog | None = None
    ) -> Iterator[RenderedFrame]:
        """Frames made in-process write no render log (the chunk's log endpoint answers 404)."""
        for frame in frames:
            if should_stop():
                return
            started = time.monotonic()
            body = self.render(job, frame)
            yield RenderedFrame(frame=frame, body=body, seconds=time.monotonic() - started)
