"""Render what the .blend says: scenes as artists save them, submitted with only `renderctl submit --scene`, give
the frames Blender renders from the file directly (same frame numbers, size, channels, pixels within a small
tolerance), or fail with a message naming the reason. Real Blender in the real sandbox, a real worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from jobs.devstack.stack import ROOT
from tests.e2e.conftest import passable_directory
from tests.e2e.test_renderctl import run_renderctl

if shutil.which("blender") is None:
    pytest.skip("blender is not on the PATH: the Blender tier is skipped (CI installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("blender-files")]
TOLERANCE = 2.0  # mean absolute difference per channel (0-255) between a farm frame and Blender's own


def blender(*args: str, timeout: float = 180) -> None:
    subprocess.run(
        ["blender", "-b", "--factory-startup", "-noaudio", *args], check=True, capture_output=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artist")
    blender("--python", str(ROOT / "scenes" / "demo_scene.py"), "--", str(out / "demo.blend"), "64", "36", "40")
    texture = out / "texture.png"
    Image.new("RGB", (8, 8), (200, 40, 40)).save(texture)
    blender(
        "--python",
        str(ROOT / "tests" / "support" / "artist_scenes.py"),
        "--",
        str(out / "demo.blend"),
        str(out),
        str(texture),
    )
    return out


@pytest.fixture(scope="module")
def stack(make_module_stack):
    with passable_directory() as cache:
        stack = make_module_stack(RENDER_BLENDER_CACHE_DIR=str(cache))
        stack.start_ready_worker("w1")
        yield stack


@pytest.fixture
def cli(stack, tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RENDERCTL_CONFIG": str(tmp_path / "renderctl.json"),
        "RENDER_API_URL": stack.api,
        "RENDER_API_KEY": stack.key,
        "COLUMNS": "200",
    }

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_renderctl(*args, env=env, timeout=timeout)

    return run


def direct(scene: Path, out: Path) -> tuple[dict[int, Image.Image], float]:
    """Blender's own render of the file: its engine, range, size, format (frames by number), and seconds."""
    out.mkdir()
    started = time.monotonic()
    blender("-Y", str(scene), "-o", str(out / "f_#####"), "-a")
    seconds = time.monotonic() - started
    return {int(re.search(r"(\d+)", p.stem)[1]): Image.open(p) for p in sorted(out.iterdir())}, seconds


def farm(cli, scene: Path, out: Path) -> tuple[dict, dict[int, Image.Image], float]:
    started = time.monotonic()
    run = cli("submit", "--scene", str(scene), "--wait", "--download", str(out), "--json")
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    frames = {int(p.stem): Image.open(p) for p in sorted(out.iterdir()) if p.suffix == ".png"}
    return job, frames, seconds


def assert_same_frames(farm_frames: dict, direct_frames: dict) -> None:
    assert sorted(farm_frames) == sorted(direct_frames)
    for number, theirs in direct_frames.items():
        ours = farm_frames[number]
        assert (ours.size, ours.mode) == (theirs.size, theirs.mode), number
        difference = ImageStat.Stat(ImageChops.difference(ours, theirs)).mean
        assert max(difference) <= TOLERANCE, f"frame {number} differs by {difference}"


@pytest.mark.parametrize(
    ("name", "first", "last", "mode"),
    [("cycles_alpha", 3, 38, "RGBA"), ("eevee", 1, 3, "RGB"), ("glare", 1, 2, "RGB")],
)
def test_a_scene_submitted_alone_renders_as_blender_renders_it(cli, scenes, tmp_path, name, first, last, mode):
    job, ours, farm_seconds = farm(cli, scenes / f"{name}.blend", tmp_path / "farm")
    theirs, direct_seconds = direct(scenes / f"{name}.blend", tmp_path / "direct")
    print(f"{name}: farm {farm_seconds:.1f} s (upload, reading, rendering, download), direct {direct_seconds:.1f} s")

    assert job["status"] == "COMPLETED" and (job["frame_start"], job["frame_end"]) == (first, last), job
    assert job["scene"]["width"] is None and job["scene"]["samples"] is None  # the file's own, not overridden
    assert_same_frames(ours, theirs)
    assert next(iter(ours.values())).mode == mode
    if name == "cycles_alpha":  # the transparent film: the background is see-through
        assert next(iter(ours.values())).getextrema()[3][0] == 0


def test_a_scene_reading_a_file_it_does_not_hold_fails_naming_it_or_renders_without_when_asked(cli, scenes, tmp_path):
    refused = cli("submit", "--scene", str(scenes / "unpacked.blend"), "--wait")
    assert refused.returncode == 1
    assert "texture.png" in refused.stderr and "Pack" in refused.stderr and "Traceback" not in refused.stderr

    allowed = cli("submit", "--scene", str(scenes / "unpacked.blend"), "--allow-missing", "--wait", "--json")
    assert allowed.returncode == 0, allowed.stderr
    job = json.loads(allowed.stdout)
    assert job["status"] == "COMPLETED" and job["fail_on_missing_files"] is False
    assert any("texture.png" in w and "rendered without" in w for w in job["warnings"]), job["warnings"]
    status = cli("status", job["id"])
    assert "warning: rendered without files it reads from outside itself" in status.stdout


def test_an_override_is_applied_and_said(cli, scenes, tmp_path):
    run = cli("submit", "--scene", str(scenes / "glare.blend"), "--width", "96", "--height", "54", "--wait", "--json")
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "COMPLETED" and (job["frame_start"], job["frame_end"]) == (1, 2)  # the file's range
    assert any("width 96 (the file's is 64)" in w for w in job["warnings"]), job["warnings"]


def test_openexr_frames_are_stored_as_exr_without_previews(cli, scenes, tmp_path):
    out = tmp_path / "exr"
    run = cli("submit", "--scene", str(scenes / "glare.blend"), "--format", "exr", "--wait", "--download", str(out))
    assert run.returncode == 0, run.stderr
    files = sorted(out.iterdir())
    assert [p.name for p in files if p.suffix == ".exr"] == ["00001.exr", "00002.exr"]
    assert all(p.read_bytes()[:4] == b"\x76\x2f\x31\x01" for p in files if p.suffix == ".exr")  # OpenEXR's magic
    assert not [p for p in files if p.name.startswith("preview")]  # no contact sheet of frames no browser shows
