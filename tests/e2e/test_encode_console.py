"""The console's side of encode steps in a real browser: the New job form adds one, the job page shows the step
and plays the video, under the page's Content-Security-Policy with no violation or console error.

Skipped with test_console_browser.py's reason when Playwright or chromium is missing, and without ffmpeg.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.conftest import passable_directory
from tests.e2e.test_console_browser import browser, expect, watching  # noqa: F401 (the module's browser fixture)

if shutil.which("ffmpeg") is None:
    pytest.skip("ffmpeg is not on the PATH: the encode tier is skipped (.ci/run installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console-browser")]


@pytest.fixture(scope="module")
def stack(make_module_stack):
    with passable_directory() as cache:
        stack = make_module_stack(RENDER_SIMULATED_SECONDS="0", RENDER_BLENDER_CACHE_DIR=str(cache))
        stack.start_ready_worker("w1")
        yield stack


def test_the_new_job_form_adds_an_encode_and_the_job_page_plays_its_video(stack, browser):  # noqa: F811
    with watching(browser, stack, "encode") as watched:
        page = watched.page
        page.get_by_role("link", name="New job").first.click()
        page.get_by_label("Scene name").fill("with a video")
        page.get_by_label("Width").fill("160")
        page.get_by_label("Height").fill("90")
        page.get_by_label("Last frame").fill("6")
        page.get_by_label("Frames per chunk").fill("3")
        page.get_by_label("Video of the frames").select_option("mp4")
        page.get_by_label("Frames a second").fill("12")
        page.get_by_role("button", name="Submit job").click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))

        steps = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Encoded"))
        expect(steps).to_contain_text("encode mp4 at 12 fps")
        expect(page.locator("#status")).to_have_text("COMPLETED", timeout=60_000)
        expect(steps.locator("tbody tr").first).to_contain_text("COMPLETED")
        expect(steps.locator("tbody tr").first).to_contain_text("6 / 6")

        player = page.locator("video")
        expect(player).to_be_visible()
        expect(page.locator("#videos figcaption")).to_contain_text("video.mp4 · 6 frames at 12 fps · 0.5 s")
        duration = player.evaluate(
            "v => v.readyState >= 1 ? v.duration : new Promise(ok => v.addEventListener('loadedmetadata',"
            " () => ok(v.duration), { once: true }))"
        )
        assert abs(duration - 0.5) < 0.05, duration  # the browser read the video from the result bucket

        steps.get_by_role("button", name="Show").click()
        expect(page.locator("#step-log")).to_contain_text("libx264")
        watched.shot("completed")
        assert watched.errors == []
