"""Hostile scene files end to end: real Blender in the real sandbox, through the farm and straight through the
sandbox's own launcher (so the sandbox is proven, not only the allow-list in front of it).

Each attack is a scene built by tests/support/hostile_scenes.py. Through the farm each job must end either
COMPLETED having done none of it, or FAILED with a message naming the refused feature; no file may appear
outside the chunk's scratch directory, and no secret of the worker may reach a render log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from jobs.devstack.stack import ROOT
from jobs.sandbox import SandboxUnavailable
from jobs.sandbox.bubblewrap import BubblewrapSandbox
from tests.e2e.conftest import wait_until
from tests.e2e.test_blender import inspected
from tests.e2e.test_sandbox import LIMITS, SECRET, assert_contained, listening_socket, scratch_with_scene

if shutil.which("blender") is None:
    pytest.skip("blender is not on the PATH: the Blender tier is skipped (CI installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("blender-files")]
DEMO = ROOT / "scenes" / "demo_scene.py"
HOSTILE = ROOT / "tests" / "support" / "hostile_scenes.py"


def blender(*args: str) -> None:
    subprocess.run(
        ["blender", "-b", "--factory-startup", "-noaudio", *args], check=True, capture_output=True, timeout=90
    )


listener = pytest.fixture(scope="module", name="listener")(listening_socket)


@pytest.fixture(scope="module")
def hostile(listener):
    """The demo scene, the hostile scenes built from it, and the directory outside every scratch directory
    that they aim at (emptied after the build, since building a simulation may write its cache). All of it
    where a sandbox's own uid may pass (o+x), unlike pytest's tmp_path."""
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.chmod(base, 0o711)  # noqa: S103
    outside, scenes = base / "outside", base / "scenes"
    outside.mkdir(mode=0o755)
    scenes.mkdir(mode=0o755)
    texture = base / "worker-secret.png"
    blender("--python", str(DEMO), "--", str(scenes / "demo.blend"), "64", "36", "4")
    texture.write_bytes((ROOT / "docs" / "images" / "console-job.png").read_bytes())
    config = {"outside": str(outside), "port": listener.getsockname()[1], "texture": str(texture)}
    blender("--python", str(HOSTILE), "--", str(scenes / "demo.blend"), str(scenes), json.dumps(config))
    for entry in outside.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    yield scenes, outside
    shutil.rmtree(base, ignore_errors=True)


def upload(stack, body: bytes, key: str | None = None, *, declared: bytes | None = None) -> str:
    headers = {"Authorization": f"Bearer {key or stack.key}"}
    declared = body if declared is None else declared
    sha = hashlib.sha256(declared).hexdigest()
    resp = requests.post(
        f"{stack.api}/api/assets", json={"sha256": sha, "size": len(declared)}, headers=headers, timeout=10
    )
    assert resp.status_code in (200, 201), resp.text
    if resp.json()["upload"]:
        ticket = resp.json()["upload"]
        assert requests.put(ticket["url"], data=body, headers=ticket["headers"], timeout=30).status_code == 200
    return sha


def submit(stack, sha: str, key: str | None = None) -> str:
    """A job given its frames, sent right after the upload: the file is checked by its first chunk (a job sent
    once the file has been read is checked at submit: see the end of the first test)."""
    body = {"scene": "hostile", "renderer": "blender", "scene_file": sha, "width": 64, "height": 36, "samples": 2}
    body |= {"frame_start": 1, "frame_end": 1}
    resp = requests.post(
        f"{stack.api}/api/jobs", json=body, headers={"Authorization": f"Bearer {key or stack.key}"}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def chunk_log(stack, job_id: str) -> str:
    resp = requests.get(f"{stack.api}/api/jobs/{job_id}/tasks/0/log", headers=stack.auth(), timeout=10)
    return resp.json().get("log", "") if resp.status_code == 200 else ""


def test_hostile_scene_files_through_the_farm(make_stack, hostile, render_cache):
    scenes, outside = hostile
    stack = make_stack(RENDER_BLENDER_CACHE_DIR=str(render_cache), RENDER_SECRET_OF_THE_WORKER=SECRET)
    stack.start_ready_worker()
    jobs = {
        name: submit(stack, upload(stack, (scenes / f"{name}.blend").read_bytes()))
        for name in ("freestyle", "driver", "fluid_relative", "fluid_absolute", "texture")
    }
    done = {name: stack.wait_for_status(job_id, "COMPLETED", "FAILED", timeout=120) for name, job_id in jobs.items()}

    refused = {name: done[name] for name in ("freestyle", "texture")}
    for name, job in refused.items():
        assert job["status"] == "FAILED" and job["error_code"] == "scene_refused", (name, job)
    assert "Freestyle in Python Scripting mode" in refused["freestyle"]["error"]
    assert "worker-secret.png" in refused["texture"]["error"] and "pack it" in refused["texture"]["error"]
    tasks = requests.get(f"{stack.api}/api/jobs/{jobs['freestyle']}/tasks", headers=stack.auth(), timeout=10).json()
    assert tasks["tasks"][0]["attempt"] == 1  # refused at once: trying again could not help
    for name in ("driver", "fluid_relative", "fluid_absolute"):
        assert done[name]["status"] == "COMPLETED", (name, done[name])

    # The files' inspections (low priority: these jobs gave their frames) may run after the jobs: once all are
    # done, nothing of any Blender run may be left.
    for name in jobs:
        inspected(stack, hashlib.sha256((scenes / f"{name}.blend").read_bytes()).hexdigest())
    assert list(outside.iterdir()) == [], "a scene wrote outside its scratch directory"
    assert sorted(p.name for p in render_cache.iterdir()) == ["chunks", "scenes"]
    assert list((render_cache / "chunks").iterdir()) == [], "a scratch directory (or something next to it) is left"
    for job_id in jobs.values():
        assert SECRET not in chunk_log(stack, job_id)

    # Once read (the submits above asked for it), the same files are refused at submit, naming the same things.
    for name, code, words in (("freestyle", "scene_refused", "Freestyle"), ("texture", "scene_files_missing", "png")):
        sha = hashlib.sha256((scenes / f"{name}.blend").read_bytes()).hexdigest()
        body = {"scene": "again", "renderer": "blender", "scene_file": sha}
        resp = requests.post(f"{stack.api}/api/jobs", json=body, headers=stack.auth(), timeout=10)
        assert resp.status_code == 422 and resp.json()["error"]["code"] == code, resp.text
        assert words in resp.json()["error"]["message"]


def contained_blender(sandbox, root: Path, scene: Path, outside: Path, listener) -> dict:
    """Render frame 1 of `scene` in `sandbox` WITHOUT the farm's setup script, so its own code runs."""
    scratch, _ = scratch_with_scene(root)
    workdir = sandbox.workdir(scratch)
    process = sandbox.start(
        [
            "-b",
            "-Y",
            "--factory-startup",
            "-noaudio",
            f"{workdir}/scene.blend",
            "--python-expr",
            "import bpy; bpy.context.scene.cycles.use_denoising = False",
            "-o",
            f"{workdir}/out/f_#",
            "-f",
            "1",
        ],
        scratch=scratch,
        scene=scene,
        env={"HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
        limits=LIMITS,
    )
    lines = []
    try:
        while line := process.readline():
            lines.append(line.decode(errors="replace"))
    finally:
        process.kill()
        process.close()
    report = [line for line in lines if line.startswith("HOSTILE_REPORT ")]
    assert report, "the scene's code did not run: " + "".join(lines[-20:])
    return json.loads(report[0].split(" ", 1)[1])


def test_a_scene_running_its_code_in_bubblewrap_reaches_nothing(hostile, render_cache, listener, monkeypatch):
    scenes, outside = hostile
    monkeypatch.setenv("RENDER_SECRET_OF_THE_WORKER", SECRET)
    sandbox = BubblewrapSandbox(program="blender")
    try:
        sandbox.check()
    except SandboxUnavailable as exc:
        pytest.skip(f"bubblewrap cannot run here: {exc}")
    report = contained_blender(sandbox, render_cache, scenes / "freestyle.blend", outside, listener)
    assert_contained(report, outside=outside, listener=listener)
    assert report["written"] == [] and report["outside_listing"].startswith("refused")


def test_a_scene_running_its_code_in_the_sidecar_reaches_nothing(
    hostile, render_cache, listener, monkeypatch, start_sidecar, tmp_path
):
    scenes, outside = hostile
    monkeypatch.setenv("RENDER_SECRET_OF_THE_WORKER", SECRET)
    env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": SECRET}
    sidecar = start_sidecar(root=render_cache / "chunks", socket_path=tmp_path / "s.sock", program="blender", env=env)
    report = contained_blender(sidecar.client, render_cache, scenes / "freestyle.blend", outside, listener)
    # No namespaces: the host's world-writable /tmp may take a file during the run (the sidecar's container has
    # a read-only root); the sidecar removes the run's files, then its scratch directory, after the hang-up.
    wait_until(lambda: list((render_cache / "chunks").iterdir()) == [], 30, "the sidecar to clean up the run")
    assert report["parent_environ"].startswith("refused") and report["init_environ"].startswith("refused")
    assert report["connect_local"] == "refused: PermissionError"
    assert_contained(report, outside=outside, listener=listener)


def test_owner_b_cannot_render_owner_as_scene_through_the_cache(make_stack, hostile, render_cache):
    """B declares A's hash with A's size and uploads zeros (the emulator does not check S3's signed checksum,
    as AWS would): B's own copy fails its hash; A's cached copy is never B's. A copy damaged on disk is
    noticed at its next use and fetched again."""
    scenes, _ = hostile
    stack = make_stack(RENDER_BLENDER_CACHE_DIR=str(render_cache), RENDER_MAX_ATTEMPTS="1")
    stack.start_ready_worker()
    body = (scenes / "demo.blend").read_bytes()
    sha = upload(stack, body)
    first = submit(stack, sha)
    assert stack.wait_for_status(first, "COMPLETED", "FAILED", timeout=60)["status"] == "COMPLETED"

    bob = stack.create_api_key("bob")
    assert upload(stack, bytes(len(body)), bob, declared=body) == sha
    stolen_id = submit(stack, sha, bob)
    stack.key, alice = bob, stack.key  # follow bob's job as bob
    stolen = stack.wait_for_status(stolen_id, "COMPLETED", "FAILED", timeout=60)
    stack.key = alice
    assert stolen["status"] == "FAILED" and "does not match its SHA-256" in stolen["error"], stolen

    cached = [p for p in (render_cache / "scenes").rglob(sha)]
    assert len(cached) == 1  # alice's only: bob's copy never entered the cache
    cached[0].write_bytes(bytes(len(body)))
    again = stack.wait_for_status(submit(stack, sha), "COMPLETED", "FAILED", timeout=60)
    assert again["status"] == "COMPLETED", again
    assert hashlib.sha256(cached[0].read_bytes()).hexdigest() == sha


def test_a_worker_renders_through_the_sidecar(make_stack, hostile, render_cache, start_sidecar, tmp_path):
    """The Fargate layout on this machine: the worker reaches Blender only through the sidecar's socket."""
    scenes, _ = hostile
    sock = tmp_path / "sandbox.sock"
    sidecar = start_sidecar(root=render_cache / "chunks", socket_path=sock, program="blender")
    stack = make_stack(
        RENDER_BLENDER_CACHE_DIR=str(render_cache),
        RENDER_SANDBOX="sidecar",
        RENDER_SANDBOX_SOCKET=str(sock),
        RENDER_BLENDER_IDLE_SECONDS="2",
    )
    stack.start_ready_worker()
    sha = upload(stack, (scenes / "demo.blend").read_bytes())
    resp = requests.post(
        f"{stack.api}/api/jobs",
        json={
            "scene": "s",
            "renderer": "blender",
            "scene_file": sha,
            "width": 64,
            "height": 36,
            "samples": 2,
            "frame_start": 1,
            "frame_end": 4,
            "chunk_size": 2,
        },
        headers=stack.auth(),
        timeout=10,
    )
    done = stack.wait_for_status(resp.json()["id"], "COMPLETED", "FAILED", timeout=90)
    assert done["status"] == "COMPLETED", (done, sidecar.output() if sidecar.proc.poll() is not None else "")
    assert len(done["results"]["frames"]) == 4
    frame = requests.get(done["results"]["frames"][0]["url"], timeout=10).content
    assert frame.startswith(b"\x89PNG")
    # One worker process: the second chunk went to the Blender the first one started, through the sidecar.
    logs = [
        requests.get(f"{stack.api}/api/jobs/{done['id']}/tasks/{n}/log", headers=stack.auth(), timeout=10).json()["log"]
        for n in (0, 1)
    ]
    assert "started for this job" in logs[0] and "kept from this job's previous chunk" in logs[1], logs
    # Once idle for 2 s the Blender is stopped, and the sidecar removes its scratch directory.
    wait_until(lambda: list((render_cache / "chunks").iterdir()) == [], 10, "the idle Blender's scratch to go")
