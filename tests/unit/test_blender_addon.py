"""The Blender add-on's core (clients/blender_addon/render_farm: client and submission) without Blender, against a
fake of the farm's API served over real HTTP on localhost (tests/support/fake_farm_api.py)."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from render_farm import client as addon_client
from render_farm.client import ApiError, Client, upload_file
from render_farm.submission import ENDED, ERROR, READING, STOPPED, Submission, job_body, pack_resources

from jobs.devstack.stack import ROOT
from tests.support.fake_farm_api import FakeFarmApi

KEY = "rk_" + "s3cret" * 7
ADDON = ROOT / "clients" / "blender_addon"


@pytest.fixture
def farm():
    fake = FakeFarmApi(key=KEY).start()
    yield fake
    if fake.upload_gate is not None:
        fake.upload_gate.set()
    fake.stop()


@pytest.fixture
def scene(tmp_path) -> Path:
    path = tmp_path / "copy" / "scene.blend"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def submission(farm, scene: Path, *, frame_range=None, **kwargs) -> Submission:
    packed, cleaned = [], []

    def pack(path: Path, *, should_stop) -> Path:
        packed.append(path)
        return path

    body = job_body(label="shot_010", chunk_size=2, priority="high", frame_range=frame_range)
    sub = Submission(
        client=Client(farm.url, KEY),
        scene_copy=scene,
        body=body,
        pack=pack,
        cleanup=lambda: cleaned.append(True),
        poll_seconds=kwargs.pop("poll_seconds", 0.01),
    )
    sub.packed, sub.cleaned = packed, cleaned
    return sub


def watch(sub: Submission, *, every: float = 0.02, lines: bool = True, timeout: float = 10) -> list:
    """What the panel would show, snapshot by snapshot, until the submission has ended."""
    seen, deadline = [], time.monotonic() + timeout
    while not sub.finished.is_set():
        assert time.monotonic() < deadline, sub.snapshot()
        seen.append(sub.snapshot().line if lines else sub.snapshot())
        time.sleep(every)
    return seen


def test_a_scene_is_uploaded_with_exactly_the_given_headers_then_submitted_and_followed(farm, scene):
    sub = submission(farm, scene)
    sub.run()

    snapshot = sub.snapshot()
    assert snapshot.stage == ENDED and snapshot.status == "COMPLETED" and snapshot.error is None, snapshot
    assert snapshot.fraction == 1.0 and snapshot.line == f"Job {snapshot.job_id[:8]}: COMPLETED, 3/3 frames"
    assert snapshot.console_url == f"{farm.url}/jobs/{snapshot.job_id}"
    assert sub.packed == [scene] and sub.cleaned == [True] and sub.submitted.is_set() and sub.finished.is_set()

    data = scene.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (declared,) = farm.requests("POST", "/api/assets")
    assert declared.body == f'{{"sha256": "{sha}", "size": {len(data)}}}'.encode()
    (put,) = farm.requests("PUT", "/upload/")
    headers = {name.lower(): value for name, value in put.headers.items()}
    assert put.path == f"/upload/{sha}" and put.body == data
    assert headers["content-type"] == "application/octet-stream" and headers["content-length"] == str(len(data))
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(sha)).decode()
    assert "authorization" not in headers  # the key never goes to the storage
    assert all(s.headers["Authorization"] == f"Bearer {KEY}" for s in farm.seen if s.path.startswith("/api/"))

    (submitted,) = farm.requests("POST", "/api/jobs")
    assert submitted.headers["Idempotency-Key"] == sub.idempotency_key
    assert json.loads(submitted.body) == {
        "scene": "shot_010",
        "renderer": "blender",
        "chunk_size": 2,
        "priority": "high",
        "scene_file": sha,
    }  # fmt: skip  (no frame range: the file's own)
    assert len(farm.requests("GET", f"/api/jobs/{snapshot.job_id}")) == 3  # QUEUED, PROCESSING, COMPLETED


def test_the_upload_is_streamed_from_disk_in_blocks(farm, scene):
    """urllib is given a file object, never the file's bytes: http.client reads it a block at a time."""
    sha = hashlib.sha256(scene.read_bytes()).hexdigest()
    upload = Client(farm.url, KEY).declare_asset(sha, scene.stat().st_size)["upload"]
    blocks: list[int] = []
    upload_file(upload, scene, progress=blocks.append, should_stop=lambda: False)
    assert sum(blocks) == scene.stat().st_size
    assert len(blocks) > 100 and max(blocks) <= 64 * 1024
    assert farm.requests("PUT", "/upload/")[0].body == scene.read_bytes()


def test_a_range_left_to_the_file_waits_out_scene_file_inspecting_with_one_idempotency_key(farm, scene):
    farm.inspecting, farm.retry_after = 2, "0.6"
    sub = submission(farm, scene)
    started = time.monotonic()
    stages = [snapshot.stage for snapshot in watch(sub.start(), every=0.05, lines=False)]
    assert time.monotonic() - started >= 1.2  # twice the Retry-After
    assert sub.snapshot().status == "COMPLETED"
    keys = {s.headers["Idempotency-Key"] for s in farm.requests("POST", "/api/jobs")}
    assert len(farm.requests("POST", "/api/jobs")) == 3 and keys == {sub.idempotency_key}
    assert READING in stages


def test_a_given_range_is_sent_and_bytes_stored_before_are_not_uploaded_again(farm, scene):
    farm.stored.add(hashlib.sha256(scene.read_bytes()).hexdigest())
    farm.inspecting = 5  # a job that gives its range is not asked to wait
    sub = submission(farm, scene, frame_range=(10, 13))
    sub.run()
    assert sub.snapshot().status == "COMPLETED" and sub.snapshot().job["progress"]["frames_total"] == 4
    assert farm.requests("PUT", "/upload/") == []
    assert len(farm.requests("POST", "/api/jobs")) == 1


def test_an_api_error_ends_the_submission_in_one_line_and_never_shows_the_key(farm, scene):
    message = "The scene file is refused:\n  Open Shading Language (material 'osl')\nswitch it off."
    farm.failures[("POST", "/api/jobs")] = [(422, {"error": {"code": "scene_refused", "message": message}})]
    sub = submission(farm, scene)
    sub.run()
    snapshot = sub.snapshot()
    assert snapshot.stage == ERROR and snapshot.job is None and sub.submitted.is_set()
    assert snapshot.line == "Error: The scene file is refused: Open Shading Language (material 'osl') switch it off."

    wrong = Submission(client=Client(farm.url, "rk_wrong_key"), scene_copy=scene, body={}, pack=lambda p, **_: p,
                       cleanup=lambda: None, poll_seconds=0.01)  # fmt: skip
    wrong.run()
    assert wrong.snapshot().line == "Error: Unknown or revoked API key"
    for text in (snapshot.line, repr(snapshot), wrong.snapshot().line, repr(wrong.snapshot()), repr(wrong.client)):
        assert KEY not in text and "rk_wrong_key" not in text


def test_an_unreachable_farm_is_one_line_and_a_passing_outage_while_following_is_waited_out(farm, scene):
    nowhere = Submission(client=Client("http://127.0.0.1:9", KEY), scene_copy=scene, body={},
                         pack=lambda p, **_: p, cleanup=lambda: None, poll_seconds=0.01)  # fmt: skip
    nowhere.run()
    assert nowhere.snapshot().line.startswith("Error: cannot reach the farm at http://127.0.0.1:9: ")

    outage = (503, {"error": {"code": "service_unavailable", "message": "DynamoDB is unreachable"}})
    farm.job_read_failures = [outage, outage]
    sub = submission(farm, scene, poll_seconds=0.2).start()
    lines = watch(sub)
    assert sub.snapshot().status == "COMPLETED" and sub.snapshot().notice is None
    assert any(line.endswith("(DynamoDB is unreachable; still trying)") for line in lines), lines


def test_cancel_after_submit_cancels_the_job_and_follows_it_to_cancelled(farm, scene):
    farm.statuses = ["PROCESSING"]
    sub = submission(farm, scene, poll_seconds=5).start()  # a long poll: cancel must wake the thread
    assert sub.submitted.wait(10) and sub.snapshot().job is not None
    started = time.monotonic()
    sub.cancel()
    assert sub.finished.wait(3) and time.monotonic() - started < 2
    assert sub.snapshot().status == "CANCELLED" and sub.snapshot().stage == ENDED
    assert len(farm.requests("POST", f"/api/jobs/{sub.snapshot().job_id}/cancel")) == 1


def test_cancel_during_the_upload_stops_it_and_submits_nothing(farm, scene):
    farm.upload_gate = threading.Event()
    sub = submission(farm, scene).start()
    deadline = time.monotonic() + 10
    while sub.snapshot().sent == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sub.cancel()
    farm.upload_gate.set()
    assert sub.finished.wait(10)
    assert sub.snapshot().stage == STOPPED and sub.snapshot().line == "Cancelled before the job was submitted"
    assert farm.requests("POST", "/api/jobs") == [] and sub.cleaned == [True]


def test_only_http_urls_without_credentials_are_opened(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not send")
    for url in (f"file://{secret}", "ftp://example.com/", "127.0.0.1:8000", "http://user:pw@127.0.0.1:8000"):
        with pytest.raises(ApiError) as refused:
            Client(url, KEY)
        assert refused.value.code == "invalid_url"
    with pytest.raises(ApiError, match="upload URL"):
        upload_file({"url": f"file://{secret}", "headers": {}}, secret, progress=print, should_stop=lambda: False)
    with pytest.raises(ApiError, match="no API key"):
        Client("http://127.0.0.1:8000", "  ")


def test_job_fields_are_clean_and_a_packing_failure_names_blenders_error(tmp_path):
    assert job_body(label="shot\n010\x7f", chunk_size=5, priority="normal", frame_range=(1, 24)) == {
        "scene": "shot010", "renderer": "blender", "chunk_size": 5, "priority": "normal",
        "frame_start": 1, "frame_end": 24,
    }  # fmt: skip
    assert job_body(label=" ", chunk_size=1, priority="low", frame_range=None)["scene"] == "blender scene"
    listed = job_body(label="s", chunk_size=5, priority="normal", frame_range=(1, 24), frame_list="1-24x2,30")
    assert listed["frames"] == "1-24x2,30" and "frame_start" not in listed and "frame_end" not in listed

    fake_blender = tmp_path / "blender"
    fake_blender.write_text(
        "#!/bin/sh\necho 'Read blend: x'\necho 'Error: Cannot read file \"x\": Not a blend'\nexit 1\n"
    )
    fake_blender.chmod(0o755)
    with pytest.raises(ApiError, match=r'could not pack a copy of the file: Error: Cannot read file "x"') as failed:
        pack_resources(tmp_path / "x.blend", blender=str(fake_blender), should_stop=lambda: False)
    assert failed.value.code == "packing_failed"


def test_the_core_imports_only_the_standard_library_and_the_zip_installs_the_package(tmp_path):
    """Blender's Python has no httpx or requests; only `ui` may import bpy (and it is imported by register)."""
    package = ADDON / "render_farm"
    for module in ("__init__", "client", "submission"):
        tree = ast.parse((package / f"{module}.py").read_text())
        imported = {n.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert imported <= sys.stdlib_module_names | {"__future__"}, (module, imported - sys.stdlib_module_names)
    info = ast.literal_eval(next(
        node.value for node in ast.parse((package / "__init__.py").read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "bl_info"
    ))  # fmt: skip
    assert info["blender"] == (3, 4, 0) and info["category"] == "Render"
    assert addon_client.__file__.startswith(str(package))  # tests import the add-on's own files

    target = tmp_path / "dist" / "render_farm_addon.zip"
    for _ in range(2):  # what `make addon` runs; the same sources give the same bytes
        subprocess.run([sys.executable, str(ADDON / "build.py"), str(target)], check=True, capture_output=True)
        built = target.read_bytes()
    assert built == target.read_bytes()
    names = zipfile.ZipFile(target).namelist()
    assert names == sorted(f"render_farm/{p.name}" for p in package.glob("*.py"))
    assert {"render_farm/__init__.py", "render_farm/ui.py"} <= set(names)
