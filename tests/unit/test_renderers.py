"""The simulated renderer: timing from RENDER_SIMULATED_SECONDS and a real image per frame."""

import io
import random

import pytest
from PIL import Image

from jobs.domain import OutputFormat, Scene
from jobs.renderers import SimulatedRenderer, get_renderer, parse_seconds_range


@pytest.mark.parametrize(("spec", "expected"), [("2-5", (2.0, 5.0)), ("0", (0.0, 0.0)), ("1.5", (1.5, 1.5))])
def test_parse_seconds_range(spec, expected):
    assert parse_seconds_range(spec) == expected


@pytest.mark.parametrize("spec", ["5-2", "-1", "abc", ""])
def test_parse_seconds_range_rejects_nonsense(spec):
    with pytest.raises(ValueError):
        parse_seconds_range(spec)


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_simulated_renderer_sleeps_in_range_and_paints_an_image(make_job, fmt):
    slept = []
    renderer = SimulatedRenderer(seconds="2-5", sleep=slept.append, rng=random.Random(1))
    job = make_job(scene=Scene(name="shot", width=320, height=180, output_format=fmt, samples=4))
    image = Image.open(io.BytesIO(renderer.render(job, 1)))
    assert image.size == (320, 180)
    assert image.format == ("PNG" if fmt is OutputFormat.PNG else "JPEG")
    assert len(slept) == 1 and 2 <= slept[0] <= 5


def test_get_renderer_by_dotted_path_and_unknown_names():
    assert isinstance(get_renderer("simulated", simulated_seconds="0"), SimulatedRenderer)
    assert get_renderer("tests.fakes:ScriptedRenderer", simulated_seconds="0").render is not None
    with pytest.raises(ValueError):
        get_renderer("blender", simulated_seconds="0")


def test_a_renderer_of_the_earlier_contract_is_adapted_and_renders_a_whole_job(repo, queue, store, clock):
    """`render(job, frame)` alone was the documented plugin contract before render_chunk: it still works."""
    from tests.unit.conftest import drain, make_worker, submit

    renderer = get_renderer("tests.support.renderers:EarlierContract", simulated_seconds="0")
    job = submit(repo, queue, clock, frames=(1, 6), chunk_size=3)
    drain(repo, queue, make_worker(repo, store, clock, renderer=renderer))
    done = repo.get(job.id)
    assert done.status == "COMPLETED" and done.frames_done == 6
    assert Image.open(io.BytesIO(store.objects[f"jobs/{job.id}/frames/00004.png"])).size == (64, 32)


def test_a_class_that_is_no_renderer_is_refused_when_loaded_not_at_its_first_chunk():
    with pytest.raises(TypeError, match=r"NotARenderer has neither render_chunk.*nor render"):
        get_renderer("tests.support.renderers:NotARenderer", simulated_seconds="0")
