"""The console and renderctl upload a scene file through `POST /api/assets` and the presigned PUT.

The assets endpoint and the blender renderer come from another branch (h-blender): until it is merged,
`POST /api/assets` is a 404 here and these tests skip, saying so.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from tests.e2e.test_renderctl import run_renderctl

pytestmark = pytest.mark.e2e
SCENE = b"BLENDER-v300 not really a blend file, but bytes to store\n" * 2000


def require_assets(stack) -> None:
    probe = requests.post(
        f"{stack.api}/api/assets", json={"sha256": "0" * 64, "size": 1}, headers=stack.auth(), timeout=10
    )
    if probe.status_code == 404:
        pytest.skip("POST /api/assets is not on this branch yet (the scene upload lands with h-blender)")


def test_renderctl_submit_scene_uploads_then_submits_a_blender_job(make_stack, tmp_path):
    stack = make_stack()
    require_assets(stack)
    scene = tmp_path / "shot.blend"
    scene.write_bytes(SCENE)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RENDER_API_URL": stack.api, "RENDER_API_KEY": stack.key}
    run = run_renderctl("submit", "--scene", str(scene), "--end", "2", "--json", env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert hashlib.sha256(SCENE).hexdigest() in run.stdout and '"blender"' in run.stdout
    # The same file again: already stored, no second PUT, still a job. (With no frame range renderctl would
    # wait for a worker to read the file's own; this stack has no worker.)
    again = run_renderctl("submit", "--scene", str(scene), "--end", "1", env=env)
    assert again.returncode == 0, again.stderr


def test_console_uploads_a_scene_with_a_progress_bar(make_stack, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from tests.e2e.test_console_browser import CHROMIUM, Watched, sign_in

    stack = make_stack()
    require_assets(stack)
    scene = tmp_path / "shot.blend"
    scene.write_bytes(SCENE)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        watched = Watched(browser, "upload", viewport={"width": 1280, "height": 900})
        page = watched.page
        sign_in(watched, stack)
        page.goto(stack.api + "/jobs/new")
        page.get_by_label("Renderer").select_option("blender")
        page.get_by_label("Blender scene file (.blend)").set_input_files(str(scene))
        page.get_by_label("Last frame").fill("2")
        page.get_by_role("button", name="Submit job").click()
        playwright.expect(page).to_have_url(__import__("re").compile(r"/jobs/[0-9a-f]{32}$"), timeout=30_000)
        browser.close()
    assert watched.errors == []
