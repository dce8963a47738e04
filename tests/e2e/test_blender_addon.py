"""The Blender add-on end to end: `blender -b <scene> --python-expr ...` installs it from the zip `make addon`
builds, sets its preferences to a real stack, presses Submit (the operator) and follows the job through the
panel's own timer function until it ends; a real worker renders the frames with Blender in its sandbox."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from jobs.devstack.stack import ROOT

if shutil.which("blender") is None:
    pytest.skip("blender is not on the PATH: the Blender tier is skipped (CI installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("blender")]

# Runs inside Blender, on the scene the test built. The texture is an unsaved change that reads a file from outside
# the .blend (by a path relative to it): the add-on must pack it into the copy it sends, and only into the copy.
SESSION = """
import json, os, time
import bpy

bpy.ops.preferences.addon_install(filepath=os.environ["ADDON_ZIP"])
bpy.ops.preferences.addon_enable(module="render_farm")
prefs = bpy.context.preferences.addons["render_farm"].preferences
prefs.api_url, prefs.api_key = os.environ["FARM_API_URL"], os.environ["FARM_API_KEY"]

image = bpy.data.images.load(os.environ["TEXTURE"])
image.filepath = "//texture.png"
material = bpy.data.objects["cube"].active_material
texture = material.node_tree.nodes.new("ShaderNodeTexImage")
texture.image = image
bsdf = material.node_tree.nodes["Principled BSDF"]
material.node_tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])

settings = bpy.context.scene.render_farm
settings.chunk_size, settings.priority = 3, "high"
submitted = bpy.ops.render_farm.submit()

import render_farm.ui as ui
first = ui.current().snapshot()
while (wait := ui.refresh()) is not None:
    time.sleep(wait)
last = ui.current().snapshot()
print("RESULT " + json.dumps({
    "submitted": sorted(submitted), "first_line": first.line, "line": last.line, "stage": last.stage,
    "fraction": last.fraction, "job": last.job, "console_url": last.console_url,
    "packed_in_session": image.packed_file is not None, "filepath": bpy.data.filepath,
    "panel": [bpy.types.RENDER_PT_render_farm.bl_space_type, bpy.types.RENDER_PT_render_farm.bl_context],
    "progress_bar": bpy.context.window_manager.render_farm_progress,
    "can_cancel": bpy.ops.render_farm.cancel.poll(), "can_submit": bpy.ops.render_farm.submit.poll(),
}))
"""


@pytest.fixture
def addon_zip(tmp_path) -> Path:
    """The zip as `make addon` builds it (the same script), into this test's directory."""
    target = tmp_path / "dist" / "render_farm_addon.zip"
    build = ROOT / "clients" / "blender_addon" / "build.py"
    subprocess.run([sys.executable, str(build), str(target)], check=True, capture_output=True, timeout=30)
    return target


def test_the_addon_submits_the_open_file_and_its_job_completes(make_stack, render_cache, addon_zip, tmp_path):
    started = time.monotonic()
    stack = make_stack(RENDER_BLENDER_CACHE_DIR=str(render_cache))
    stack.start_ready_worker("w1")
    shot = tmp_path / "shot"
    shot.mkdir()
    scene = shot / "shot_010.blend"
    demo = ["blender", "-b", "--factory-startup", "-noaudio", "--python", str(ROOT / "scenes" / "demo_scene.py")]
    subprocess.run([*demo, "--", str(scene), "64", "36", "3"], check=True, capture_output=True, timeout=60)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(shot / "texture.png")
    on_disk = hashlib.sha256(scene.read_bytes()).hexdigest()

    home, temp = tmp_path / "home", tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "BLENDER_USER_CONFIG": str(home / "config"),
        "BLENDER_USER_SCRIPTS": str(home / "scripts"),
        "TMPDIR": str(temp),
        "ADDON_ZIP": str(addon_zip),
        "FARM_API_URL": stack.api,
        "FARM_API_KEY": stack.key,  # by the environment: never on a command line
        "TEXTURE": str(shot / "texture.png"),
    }
    argv = ["blender", "-b", "--factory-startup", "-noaudio", str(scene), "--python-exit-code", "1"]
    run = subprocess.run(
        [*argv, "--python-expr", SESSION], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert stack.key not in output  # the key is never printed
    result = json.loads(next(line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")))
    seconds = time.monotonic() - started
    print(f"add-on e2e: {seconds:.1f} s from the stack's start to the job COMPLETED in the panel")

    # The operator returned once the job existed; the panel's timer function followed it to the end.
    job = result["job"]
    assert result["submitted"] == ["FINISHED"], output
    assert result["stage"] == "ended" and job["status"] == "COMPLETED" and result["fraction"] == 1.0, result
    assert result["line"] == f"Job {job['id'][:8]}: COMPLETED, 3/3 frames"
    assert result["console_url"] == f"{stack.api}/jobs/{job['id']}"
    assert result["panel"] == ["PROPERTIES", "render"] and result["progress_bar"] == 100.0
    assert result["can_cancel"] is False and result["can_submit"] is True  # the job has ended: nothing to cancel
    # The range was left to the file (the scene's own, 1-3), the panel's fields reached the job.
    assert (job["frame_start"], job["frame_end"], job["chunk_size"], job["priority"]) == (1, 3, 3, "high")
    assert job["renderer"] == "blender" and job["scene"]["name"] == "shot_010"
    assert stack.job(job["id"])["status"] == "COMPLETED"
    # The farm was still reading the file at the first submit (409 scene_file_inspecting); the add-on waited out
    # the Retry-After and sent it again.
    submits = [line.split('" ')[1].split()[0] for line in stack.log("api").splitlines() if '"POST /api/jobs ' in line]
    assert submits[0] == "409" and submits[-1] == "201", submits

    # The copy sent had the texture packed (the farm found nothing outside it, and would have refused the job);
    # the person's file on disk, its path and its session are as they were: nothing packed there, nothing left.
    asset = requests.get(f"{stack.api}/api/assets/{job['scene_file']}", headers=stack.auth(), timeout=10).json()
    assert asset["inspection"]["state"] == "done" and asset["inspection"]["missing_files"] == [], asset
    assert hashlib.sha256(scene.read_bytes()).hexdigest() == on_disk and sorted(p.name for p in shot.iterdir()) == [
        "shot_010.blend",
        "texture.png",
    ]
    assert result["packed_in_session"] is False and result["filepath"] == str(scene)
    assert list(temp.iterdir()) == []  # the packed copy is removed once uploaded
    assert seconds < 60
