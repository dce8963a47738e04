"""A Blender job that gives no chunk size gets chunks of about CHUNK_SECONDS, from its file's measured speed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.domain import DEFAULT_CHUNK_SIZE, OutputFormat, Priority, RendererName, Scene
from jobs.ports import INSPECTION_DONE, INSPECTION_PENDING, AssetInspection
from jobs.services.submit import CHUNK_SECONDS, CHUNK_SIZE, FRAME_RANGE, JobSpec, from_the_file

FILE = {"width": 320, "height": 180, "samples": 16, "frame_start": 1, "frame_end": 240, "output_format": "png"}


def inspected(speed: dict | None) -> AssetInspection:
    report = {"settings": FILE, "refused": [], "missing_files": [], **({"speed": speed} if speed else {})}
    return AssetInspection(state=INSPECTION_DONE, requested_at=datetime.now(UTC), report=report)


def spec(*, from_file=(CHUNK_SIZE,), width=None, height=None, samples=None, start=1, end=240) -> JobSpec:
    return JobSpec(
        scene=Scene(name="s", width=width, height=height, output_format=OutputFormat.PNG, samples=samples),
        frame_start=start,
        frame_end=end,
        chunk_size=DEFAULT_CHUNK_SIZE,
        priority=Priority.NORMAL,
        renderer=RendererName.BLENDER,
        scene_file="a" * 64,
        from_file=from_file,
    )


@pytest.mark.parametrize(
    ("seconds", "chunk"),
    [(0.3, 100), (1.0, 45), (4.5, 10), (30.0, 2), (50.0, 1), (2000.0, 1)],  # at most MAX_CHUNK_SIZE (100)
)
def test_chunks_take_about_the_target_at_the_measured_speed(seconds, chunk):
    assert CHUNK_SECONDS == 45.0
    assert from_the_file(spec(), inspected({"seconds_per_frame": seconds})).chunk_size == chunk


def test_the_jobs_overrides_scale_the_measure_by_pixels_and_samples():
    # Twice the width and height and twice the samples: 8x the work of the probe frame.
    picked = from_the_file(spec(width=640, height=360, samples=32), inspected({"seconds_per_frame": 0.5}))
    assert picked.chunk_size == round(CHUNK_SECONDS / 4.0)


def test_a_file_slower_than_the_probe_gets_one_frame_chunks_and_no_measure_keeps_the_default():
    assert from_the_file(spec(), inspected({"seconds_per_frame": None, "longer_than": 60.0})).chunk_size == 1
    assert from_the_file(spec(), inspected(None)).chunk_size == DEFAULT_CHUNK_SIZE
    pending = AssetInspection(state=INSPECTION_PENDING, requested_at=datetime.now(UTC))
    assert from_the_file(spec(), pending).chunk_size == DEFAULT_CHUNK_SIZE


def test_a_chunk_size_the_job_gives_is_kept():
    assert from_the_file(spec(from_file=()), inspected({"seconds_per_frame": 0.3})).chunk_size == DEFAULT_CHUNK_SIZE


def test_the_picked_size_applies_to_a_range_left_to_the_file_too():
    picked = from_the_file(
        spec(from_file=(CHUNK_SIZE, FRAME_RANGE), start=None, end=None), inspected({"seconds_per_frame": 1.0})
    )
    assert (picked.frame_start, picked.frame_end, picked.chunk_size) == (1, 240, 45)
