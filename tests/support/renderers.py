"""Renderers that the e2e tests load into real workers by dotted path (RENDER_RENDERER)."""

import os
import time
from pathlib import Path

from jobs.domain import Job
from jobs.renderers import FrameRenderer, RenderError, paint_frame


class AlwaysFails(FrameRenderer):
    def render(self, job: Job, frame: int) -> bytes:
        raise RenderError(f"scene {job.scene.name!r} frame {frame}: simulated crash")


class FailsWhileFlagged(FrameRenderer):
    """Fails frames 6-10 while the file named by RENDER_TEST_FAIL_FLAG exists; otherwise paints (0.2 s a frame)."""

    def render(self, job: Job, frame: int) -> bytes:
        time.sleep(0.2)
        if 6 <= frame <= 10 and Path(os.environ["RENDER_TEST_FAIL_FLAG"]).exists():
            raise RenderError(f"frame {frame}: flagged to fail")
        return paint_frame(job, frame)


class CrashesItsWorker(FrameRenderer):
    """Kills the process that renders (as a segfault or the OOM killer would): poison work."""

    def render(self, job: Job, frame: int) -> bytes:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class WritesALog(FrameRenderer):
    """Paints frames and logs a line per frame as Blender's output would be logged, brackets included."""

    def render(self, job: Job, frame: int) -> bytes:
        return paint_frame(job, frame)

    def render_chunk(self, job: Job, frames, *, should_stop, log=None):
        for out in super().render_chunk(job, frames, should_stop=should_stop, log=log):
            log.write(f"Fra:{out.frame} [red]Sample 1/1[/red] | Saved frame {out.frame}\n")
            yield out


class EarlierContract:
    """A plugin written to the earlier documented contract: `render(job, frame) -> bytes` and nothing else."""

    def render(self, job: Job, frame: int) -> bytes:
        return paint_frame(job, frame)


class NotARenderer:
    """A class that is no renderer at all (neither render_chunk nor render)."""

    def paint(self, job: Job, frame: int) -> bytes:
        return paint_frame(job, frame)
