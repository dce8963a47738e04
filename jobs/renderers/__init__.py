"""Renderers by name: `simulated` (the default; jobs/renderers/simulated.py) or a dotted path to your own.

The contract every renderer keeps is `jobs.ports.Renderer`; `FrameRenderer` (base.py) adapts a renderer
that makes one frame at a time in-process, including a class of your own written to the earlier contract
(`render(job, frame) -> bytes` alone).
"""

from __future__ import annotations

import importlib

from jobs.errors import RenderError
from jobs.ports import Renderer
from jobs.renderers.base import FrameRenderer
from jobs.renderers.simulated import SimulatedRenderer, paint_frame, parse_seconds_range

__all__ = [
    "FrameRenderer",
    "RenderError",
    "Renderer",
    "SimulatedRenderer",
    "get_renderer",
    "paint_frame",
    "parse_seconds_range",
]


def get_renderer(name: str, *, simulated_seconds: str) -> Renderer:
    """`simulated`, or `package.module:ClassName` for a renderer of your own (constructed without args)."""
    if name == "simulated":
        return SimulatedRenderer(seconds=simulated_seconds)
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"unknown renderer {name!r}: use 'simulated' or 'package.module:ClassName'")
    made = getattr(importlib.import_module(module), attr)()
    if callable(getattr(made, "render_chunk", None)):
        return made
    if callable(getattr(made, "render", None)):
        return _OneFrameAtATime(made)
    # Checked here, so a worker refuses to start with this rather than failing every chunk it takes.
    raise TypeError(f"{name} has neither render_chunk(job, frames, ...) (jobs.ports.Renderer) nor render(job, frame)")


class _OneFrameAtATime(FrameRenderer):
    """A renderer of the earlier contract, `render(job, frame) -> bytes`, run through FrameRenderer."""

    def __init__(self, plugin):
        self._plugin = plugin

    def render(self, job, frame: int) -> bytes:
        return self._plugin.render(job, frame)
