"""Renderers by name: `simulated` (the default; jobs/renderers/simulated.py) or a dotted path to your own.

The contract every renderer keeps is `jobs.ports.Renderer`; `FrameRenderer` (base.py) adapts a renderer
that makes one frame at a time in-process.
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
    return getattr(importlib.import_module(module), attr)()
