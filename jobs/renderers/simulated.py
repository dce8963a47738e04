"""The default renderer: simulates render time and paints a real image per frame (the job's parameters on it)."""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import time
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

from jobs.domain import Job, OutputFormat
from jobs.renderers.base import FrameRenderer


def parse_seconds_range(spec: str) -> tuple[float, float]:
    """`"2-5"` -> (2.0, 5.0); `"0"` -> (0.0, 0.0). Raises ValueError on anything else."""
    low, _, high = spec.strip().partition("-")
    lo, hi = float(low), float(high or low)
    if lo < 0 or hi < lo:
        raise ValueError(f"bad seconds range {spec!r}: want 'N' or 'LOW-HIGH' with 0 <= LOW <= HIGH")
    return lo, hi


class SimulatedRenderer(FrameRenderer):
    """Sleeps a random time in the configured range, then draws the job's parameters onto an image."""

    def __init__(
        self,
        *,
        seconds: str = "2-5",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self._range = parse_seconds_range(seconds)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def render(self, job: Job, frame: int) -> bytes:
        lo, hi = self._range
        if hi > 0:
            self._sleep(self._rng.uniform(lo, hi))
        return paint_frame(job, frame)


def paint_frame(job: Job, frame: int) -> bytes:
    scene = job.scene
    hue = (int(hashlib.sha256(job.id.encode()).hexdigest()[:4], 16) / 0xFFFF + frame * 0.03) % 1.0
    top = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.55, 0.55))
    image = Image.new("RGB", (scene.width, scene.height), top)
    draw = ImageDraw.Draw(image)
    # A progress bar across the bottom shows where this frame sits in the job.
    position = job.frames.index(frame) + 1
    share = position / job.frames_total
    bar = max(4, scene.height // 40)
    draw.rectangle([0, scene.height - bar, int(scene.width * share), scene.height], fill=(240, 240, 240))
    size = max(8, min(scene.width // 28, scene.height // 12))
    font = ImageFont.load_default(size=size)
    lines = [
        f"frame {frame}  ({position}/{job.frames_total})",
        f"scene {scene.name[:60]}",
        f"{scene.width}x{scene.height}  {scene.samples} samples  {scene.output_format}",
        f"job {job.id}",
    ]
    y = size
    for line in lines:
        draw.text((size, y), line, fill=(255, 255, 255), font=font)
        y += int(size * 1.4)
    out = io.BytesIO()
    if scene.output_format is OutputFormat.PNG:
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="JPEG", quality=90)
    return out.getvalue()
