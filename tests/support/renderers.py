"""Renderers that the e2e tests load into real workers by dotted path (RENDER_RENDERER)."""

from jobs.domain import Job
from jobs.renderers import RenderError


class AlwaysFails:
    def render(self, job: Job, frame: int) -> bytes:
        raise RenderError(f"scene {job.scene.name!r} frame {frame}: simulated crash")
