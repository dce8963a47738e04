"""The web console, the browsable API and Swagger UI in a real browser (Debian's chromium driven by Playwright)
against the real local stack, each page under its Content-Security-Policy with no violation.

One stack (API and a worker, simulated and Blender renderers) and one browser serve the whole module; each
test leaves no job running. Skipped, with the reason, when Playwright or chromium is missing (the Blender
tests also when `blender` is). Screenshots land in .artifacts/browser/ (RENDER_TEST_ARTIFACTS overrides),
also when a test fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from jobs.devstack.stack import ROOT
from tests.e2e.conftest import passable_directory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console-browser")]

CHROMIUM = os.environ.get("RENDER_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RENDER_TEST_ARTIFACTS", ROOT / ".artifacts" / "browser"))
HOSTILE = 'shot <b>"bold"</b> <img src=x onerror=alert(1)>'
DEMO_SCENE = ROOT / "scenes" / "demo_scene.py"
MARKER = "/static/console/favicon.svg?marker"  # fetched to know every earlier request has been seen
needs_blender = pytest.mark.skipif(
    shutil.which("blender") is None, reason="blender is not on the PATH: the console's Blender tests are skipped"
)

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

if sync_playwright is None or not Path(CHROMIUM).exists():
    pytest.skip(
        "browser tests skipped: needs the playwright package and Debian's chromium at "
        f"{CHROMIUM} (apt-get install chromium; set RENDER_TEST_CHROMIUM to use another)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def stack(make_module_stack):
    with passable_directory() as cache:
        stack = make_module_stack(
            RENDER_SIMULATED_SECONDS="0.5",
            RENDER_MAX_ATTEMPTS="1",  # the broken scene file fails once, not three times
            RENDER_BLENDER_CACHE_DIR=str(cache),
            RENDER_LISTING_FILTER_READS="2",  # a status-filtered page looks through two jobs (a short page)
        )
        stack.start_ready_worker("w1")
        yield stack


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def completed_job(stack) -> dict:
    """A finished simulated job of two chunks at 320x180 (the shape issue 19 was reported with)."""
    job = stack.submit(scene="completed", width=320, height=180, frame_start=1, frame_end=4, chunk_size=2)
    return stack.wait_for_status(job["id"], "COMPLETED", timeout=60)


@pytest.fixture(scope="module")
def blend_file(tmp_path_factory) -> Path:
    """The demo scene at 96x54, two frames, 16 samples: what a Blender job left to the file renders at."""
    out = tmp_path_factory.mktemp("scenes") / "demo.blend"
    argv = [
        "blender",
        "-b",
        "--factory-startup",
        "-noaudio",
        "--python",
        str(DEMO_SCENE),
        "--",
        str(out),
        "96",
        "54",
        "2",
    ]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return out


class Watched:
    """A page whose console errors, uncaught exceptions and Content-Security-Policy violations are collected
    (a test fails on any)."""

    def __init__(self, browser, name: str, **context):
        self.name = name
        self.context = browser.new_context(**context)
        self.errors: list[str] = []
        # Every document reports what its policy blocked (the directive and what it refused) as it happens.
        self.context.expose_binding(
            "reportCspViolation", lambda source, what: self.errors.append(f"{source['frame'].url}: CSP {what}")
        )
        self.context.add_init_script(
            "document.addEventListener('securitypolicyviolation', e =>"
            " window.reportCspViolation(`${e.effectiveDirective} refused ${e.blockedURI || e.sample}`))"
        )
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"{self.page.url}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"{self.page.url}: {e}"))

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(500)  # let the progress bar's width transition finish
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.contextmanager
def watching(browser, stack, name: str, **context):
    """A signed-in Watched page (desktop size unless told), a screenshot if the block fails, closed after."""
    watched = Watched(browser, name, **{"viewport": {"width": 1280, "height": 900}, **context})
    try:
        sign_in(watched, stack)
        yield watched
    except BaseException:
        watched.shot("failure")
        raise
    finally:
        watched.context.close()


def sign_in(watched: Watched, stack) -> None:
    page = watched.page
    page.goto(stack.api + "/")
    expect(page.get_by_role("heading", name="Render farm")).to_be_visible()  # the sign-in page
    page.get_by_label("API key").fill(stack.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def progress_of(page) -> int:
    return int(page.locator("main .progress").first.get_attribute("aria-valuenow") or 0)


def fact(page, name: str):
    """The value shown under a fact's name on the job page (Size, Samples...)."""
    return page.locator("#facts div").filter(has=page.get_by_text(name, exact=True)).locator("dd")


def chunks(page):
    return page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Worker"))


def requests_seen(page, seen: list[str]) -> list[str]:
    """`seen` once every request the page started before now is in it: the marker, fetched last, is answered
    after the browser announced every earlier request."""
    with page.expect_response(lambda r: r.url.endswith(MARKER)):
        page.evaluate("url => fetch(url)", MARKER)
    return list(seen)


def assert_images_keep_their_aspect(page) -> None:
    for name in ("Animated preview of the finished job", "Contact sheet of the finished job"):
        image = page.get_by_role("img", name=name)
        expect(image).to_be_visible()
        image.evaluate("img => img.decode()")
        shown = image.evaluate("img => [img.clientWidth, img.clientHeight, img.naturalWidth, img.naturalHeight]")
        width, height, natural_width, natural_height = shown
        assert abs(width / height - natural_width / natural_height) < 0.03, f"{name} shown {width}x{height}: {shown}"


def upload(stack, body: bytes) -> str:
    sha = hashlib.sha256(body).hexdigest()
    declared = requests.post(
        f"{stack.api}/api/assets", json={"sha256": sha, "size": len(body)}, headers=stack.auth(), timeout=10
    )
    assert declared.status_code in (200, 201), declared.text
    if ticket := declared.json()["upload"]:
        assert requests.put(ticket["url"], data=body, headers=ticket["headers"], timeout=30).status_code == 200
    return sha


def submit_blender(stack, **body) -> dict:
    """A Blender job as sent with no width, height or samples: the scene file's own."""
    resp = requests.post(
        f"{stack.api}/api/jobs", json={"renderer": "blender", **body}, headers=stack.auth(), timeout=10
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def task_states(stack, job_id: str) -> set[str]:
    resp = requests.get(f"{stack.api}/api/jobs/{job_id}/tasks", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200, resp.text
    return {t["status"] for t in resp.json()["tasks"]}


def test_sign_in_submit_and_watch_progress_and_thumbnails(stack, browser):
    with watching(browser, stack, "desktop") as watched:
        page = watched.page
        page.get_by_role("link", name="New job").first.click()
        page.get_by_label("Scene name").fill(HOSTILE)
        page.get_by_label("Last frame").fill("12")
        page.get_by_label("Frames per chunk").fill("4")
        page.get_by_role("button", name="Submit job").click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
        expect(page.locator("h1 .scene-name")).to_have_text(HOSTILE)  # shown as text, not markup

        seen = set()
        badge = page.locator("#status")
        for _ in range(200):
            seen.add(progress_of(page))
            if badge.text_content() == "COMPLETED":
                break
            page.wait_for_timeout(100)
        expect(badge).to_have_text("COMPLETED")
        seen.add(progress_of(page))
        assert len(seen - {0, 100}) >= 1 and 100 in seen, seen  # the bar moved on its own, no reload

        thumbs = page.locator("#frames img")
        expect(thumbs).to_have_count(12)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        expect(page.get_by_text("All 12 frames. Each links to its file.")).to_be_visible()
        assert_images_keep_their_aspect(page)
        expect(page.get_by_role("link", name="Download manifest.json")).to_be_visible()
        expect(chunks(page).get_by_text("COMPLETED")).to_have_count(3)
        watched.shot("job-completed")

        page.goto(stack.api + "/")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=HOSTILE))
        expect(row.get_by_text("COMPLETED")).to_be_visible()
        watched.shot("jobs")
        assert watched.errors == []


def test_a_filtered_page_that_found_none_says_so_and_older_goes_on(stack, browser):
    """A status-filtered page looks through a bounded number of jobs (two in this stack): one that found none
    in the state is not "no jobs here yet", and Older reads on."""
    jobs = [stack.submit(scene=f"filtered {n}") for n in range(3)]
    for job in jobs:
        stack.wait_for_status(job["id"], "COMPLETED", timeout=60)
    with watching(browser, stack, "filtered") as watched:
        page = watched.page
        page.goto(stack.api + "/?status=CANCELLING")  # a passing state: none of the newest two is in it
        expect(page.get_by_text("None in this state among the jobs this page looked through.")).to_be_visible()
        expect(page.get_by_text("No jobs here yet.")).to_be_hidden()
        expect(page.get_by_role("button", name="Older")).to_be_enabled()
        page.goto(stack.api + "/?status=COMPLETED")
        expect(page.get_by_role("row").filter(has=page.get_by_role("link", name="filtered 2"))).to_be_visible()
        expect(page.get_by_text("None in this state among the jobs this page looked through.")).to_be_hidden()
        watched.shot("filtered")
        assert watched.errors == []


def test_a_frame_list_from_the_form_shows_its_frames_facts_and_chunks(stack, browser):
    with watching(browser, stack, "frame-list") as watched:
        page = watched.page
        page.goto(stack.api + "/jobs/new")
        page.get_by_label("Scene name").fill("listed frames")
        page.get_by_label("Frame list (optional)").fill("10, 1-7x3")
        page.get_by_label("Frames per chunk").fill("2")
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/jobs")) as submitted:
            page.get_by_role("button", name="Submit job").click()
        sent = submitted.value.post_data_json
        assert sent["frames"] == "10, 1-7x3" and not {"frame_start", "frame_end"} & set(sent), sent

        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
        expect(page.locator("#status")).to_have_text("COMPLETED", timeout=60_000)
        expect(fact(page, "Frames")).to_have_text("1-10x3 (4)")
        expect(page.locator("#frames img")).to_have_count(4)
        shown = [page.locator("#frames img").nth(i).get_attribute("alt") for i in range(4)]
        assert shown == ["Frame 1", "Frame 4", "Frame 7", "Frame 10"]
        expect(chunks(page).get_by_role("cell", name="1,4", exact=True)).to_be_visible()
        expect(chunks(page).get_by_role("cell", name="7,10", exact=True)).to_be_visible()
        watched.shot("job")
        assert watched.errors == []

        page.goto(stack.api + "/jobs/new")
        page.get_by_label("Frame list (optional)").fill("1-10,5")
        page.get_by_role("button", name="Submit job").click()
        expect(page.locator("#message")).to_contain_text('Frame 5 is listed twice ("1-10" and "5")')
        assert len(watched.errors) == 1 and "status of 400" in watched.errors[0]  # the refusal, nothing else


def test_previews_are_shown_at_their_aspect_ratio(stack, browser, completed_job):
    """Issue 19: a 320x180 job's animation was stretched to the contact sheet's height (318x359)."""
    with watching(browser, stack, "previews") as watched:
        page = watched.page
        page.goto(f"{stack.api}/jobs/{completed_job['id']}")
        expect(page.locator("#status")).to_have_text("COMPLETED")
        assert_images_keep_their_aspect(page)
        watched.shot("job")
        assert watched.errors == []


def test_cancel_asks_first_and_the_page_settles_on_the_final_state(stack, browser):
    """Issue 19: Cancel needs a confirmation (dismissing it cancels nothing); once CANCELLED, the banners say so
    and the chunk table shows the chunks' real states without a reload; then the page stops polling."""
    job = stack.submit(scene="to cancel", frame_start=1, frame_end=60, chunk_size=10)
    with watching(browser, stack, "cancel") as watched:
        page = watched.page
        api_requests: list[str] = []
        page.on("request", lambda r: "/api/" in r.url and api_requests.append(f"{r.method} {r.url}"))
        page.clock.install()  # timers run at their own pace until the test moves the clock on
        page.goto(f"{stack.api}/jobs/{job['id']}")
        expect(page.locator("#status")).to_have_text("PROCESSING", timeout=20_000)
        expect(page.locator("#frames img").first).to_be_attached(timeout=20_000)
        expect(chunks(page).get_by_text("QUEUED").first).to_be_visible()
        expect(page.get_by_text("Frames appear here as they finish.")).to_be_visible()

        dialogs: list[str] = []
        page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.get_by_role("button", name="Cancel").click()
        assert len(dialogs) == 1 and "to cancel" in dialogs[0], dialogs
        assert not [r for r in requests_seen(page, api_requests) if r.startswith("POST")]  # dismissed: not sent
        assert stack.job(job["id"])["status"] == "PROCESSING"
        expect(page.get_by_role("button", name="Cancel")).to_be_visible()

        # A high-priority job takes the worker next, so the queued chunks' messages wait behind it and the job
        # is CANCELLED while they still say QUEUED, as on a busy farm.
        blocker = stack.submit(scene="busy farm", frame_start=1, frame_end=10, chunk_size=10, priority="high")
        page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#status")).to_have_text("CANCELLED", timeout=20_000)
        assert len(dialogs) == 2
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
        expect(page.get_by_text("Cancel requested")).to_be_hidden()  # the banner reflects the final state
        expect(page.get_by_text("Frames appear here as they finish.")).to_be_hidden()
        expect(page.get_by_text(re.compile(r"The \d+ frames? rendered before the job was cancelled"))).to_be_visible()

        # The queued chunks are marked CANCELLED as the worker receives their messages, after the job ended.
        table = chunks(page)
        expect(table.get_by_text("QUEUED")).to_have_count(0, timeout=30_000)
        expect(table.get_by_text("PROCESSING")).to_have_count(0)
        expect(table.get_by_text("CANCELLED")).not_to_have_count(0)
        assert task_states(stack, job["id"]) <= {"CANCELLED", "COMPLETED"}
        page.wait_for_function(
            "() => [...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        watched.shot("job-cancelled")

        before = requests_seen(page, api_requests)
        page.clock.run_for("10:00")  # every timer due in the next ten minutes fires now
        assert requests_seen(page, api_requests) == before, "the page still polls a final job"
        assert watched.errors == []
    stack.wait_for_status(blocker["id"], "COMPLETED")


def test_a_simulated_job_offers_no_render_log(stack, browser, completed_job):
    """Issue 19: the simulated renderer writes no log, so "Show" (a 404, a console error) is not offered."""
    with watching(browser, stack, "no-log") as watched:
        page = watched.page
        page.goto(f"{stack.api}/jobs/{completed_job['id']}")
        expect(chunks(page).get_by_text("COMPLETED")).to_have_count(2)
        expect(chunks(page).get_by_role("button", name="Show")).to_have_count(0)
        assert watched.errors == []


@needs_blender
def test_a_blender_job_at_the_files_resolution_says_so_and_offers_its_log(stack, browser):
    """Issue 19: a Blender job's null width, height and samples (the scene file's own) were shown as "null".
    A file that is no .blend fails in Blender: no frame ever, so the page can only say it in words; the chunk
    ran Blender, so its log is offered and shown."""
    sha = upload(stack, b"BLENDER-v300 but not a scene at all\n" * 100)
    job = submit_blender(stack, scene_file=sha, scene="broken file", frame_start=1, frame_end=1)  # not the file's
    stack.wait_for_status(job["id"], "FAILED", timeout=90)
    with watching(browser, stack, "blender-failed") as watched:
        page = watched.page
        page.goto(f"{stack.api}/jobs/{job['id']}")
        expect(page.locator("#status")).to_have_text("FAILED")
        expect(fact(page, "Size")).to_have_text("the file's resolution, png")
        expect(fact(page, "Samples")).to_have_text("the file's")
        expect(page.locator("#facts")).not_to_contain_text("null")
        expect(page.get_by_text("No frame was rendered before the job failed.")).to_be_visible()
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#log")).to_contain_text("Blender")
        watched.shot("job")
        assert watched.errors == []


@needs_blender
def test_the_form_leaves_a_blender_jobs_settings_to_the_scene_file(stack, browser, blend_file):
    """Issue 19: switching to blender kept 640x360 and 64 samples, so a 96x54 scene rendered at 640x360. Now
    they start blank, saying the file decides; once the file is chosen the farm reads it and its own values
    show as the placeholders; blank fields are not sent, and the job page shows the frames' real size."""
    with watching(browser, stack, "form-blender") as watched:
        page = watched.page
        page.goto(stack.api + "/jobs/new")
        renderer = page.get_by_label("Renderer")
        fields = [page.get_by_label(name, exact=True) for name in ("Width", "Height", "Samples")]
        renderer.select_option("blender")
        for field in fields:
            expect(field).to_have_value("")
            expect(field).to_have_attribute("placeholder", "from the file")
        expect(
            page.get_by_text("Left blank, the frame range, width, height and samples are the scene file's own")
        ).to_be_visible()
        renderer.select_option("simulated")
        for field, value in zip(fields, ("640", "360", "64"), strict=True):
            expect(field).to_have_value(value)
        renderer.select_option("blender")
        expect(fields[0]).to_have_value("")
        watched.shot("new")

        page.get_by_label("Scene name").fill("left to the file")
        page.get_by_label("Blender scene file (.blend)").set_input_files(str(blend_file))
        # Chosen, the file is uploaded and read by the farm's Blender: its own values become the placeholders.
        expect(page.get_by_text("demo.blend: cycles, frames 1\u20132, 96\u00d754, 16 samples, png.")).to_be_visible(
            timeout=60_000
        )
        for name, value in (("Width", "96"), ("Height", "54"), ("Samples", "16"), ("First frame", "1")):
            expect(page.get_by_label(name, exact=True)).to_have_attribute("placeholder", f"{value} (from the file)")
        expect(page.get_by_label("Last frame")).to_have_attribute("placeholder", "2 (from the file)")
        page.get_by_label("Frames per chunk").fill("2")
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/jobs")) as submitted:
            page.get_by_role("button", name="Submit job").click()
        sent = submitted.value.post_data_json
        left = {"width", "height", "samples", "frame_start", "frame_end", "output_format"}
        assert sent["renderer"] == "blender" and not left & set(sent), sent

        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"), timeout=30_000)
        expect(page.locator("#status")).to_have_text("COMPLETED", timeout=90_000)
        expect(fact(page, "Size")).to_have_text("96\u00d754 png (the file's)")  # the frames' own size
        expect(fact(page, "Samples")).to_have_text("the file's")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#log")).to_contain_text("RENDERFARM_SAVED 2 ")
        watched.shot("job")
        assert watched.errors == []


def test_pages_fit_a_phone_and_log_no_errors(stack, browser):
    with watching(browser, stack, "phone", viewport={"width": 390, "height": 844}, is_mobile=True) as watched:
        page = watched.page
        job = stack.submit(scene="phone " * 20, frame_start=1, frame_end=4, chunk_size=2)
        stack.wait_for_status(job["id"], "COMPLETED")
        for path, label in (("/", "jobs"), (f"/jobs/{job['id']}", "job"), ("/jobs/new", "new")):
            page.goto(stack.api + path)
            page.wait_for_load_state("networkidle")
            if label == "job":
                expect(page.locator("#status")).to_have_text("COMPLETED")
                assert_images_keep_their_aspect(page)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} is {overflow}px wider than the phone"
            watched.shot(label)
        assert watched.errors == []
        page.get_by_label("Width").fill("3")
        page.get_by_role("button", name="Submit job").click()
        expect(page.get_by_role("alert")).to_contain_text("width")  # the API's message, shown
        assert [e for e in watched.errors if "status of 400" not in e] == []  # the refused POST is the only one


def test_api_docs_list_the_operations_and_try_one_under_the_default_policy(make_stack, browser):
    stack = make_stack()
    watched = Watched(browser, "docs", viewport={"width": 1280, "height": 900})
    page = watched.page
    try:
        response = page.goto(stack.api + "/api/docs")
        assert "script-src 'self'" in response.headers["content-security-policy"]  # no inline script allowed
        expect(page.get_by_role("heading", name=re.compile("Render farm API"))).to_be_visible()
        expect(page.get_by_role("button", name=re.compile(r"^POST\s+\/api\/jobs$"))).to_be_visible()
        expect(page.get_by_role("button", name=re.compile(r"^GET\s+\/api\/jobs\/\{job_id\}$"))).to_be_visible()
        # Authorize with the key and run GET /api/jobs from the page: Swagger UI's own requests pass the policy.
        page.get_by_role("button", name="Authorize").click()
        bearer = page.get_by_role("textbox", name="auth-bearer-value")
        bearer.fill(stack.key)
        page.locator("form", has=bearer).get_by_role("button", name="Apply credentials").click()
        page.get_by_role("button", name="Close").first.click()
        page.get_by_role("button", name=re.compile(r"^GET\s+\/api\/jobs$")).click()
        page.get_by_role("button", name="Try it out").click()
        page.get_by_role("button", name="Execute").click()
        expect(page.locator(".live-responses-table").get_by_role("cell", name="200", exact=True)).to_be_visible()
        watched.shot("tried")
    except Exception:
        watched.shot("failure")
        raise
    assert watched.errors == []


def test_the_browsable_api_renders_posts_and_acts_under_the_default_policy(make_stack, browser):
    stack = make_stack()
    watched = Watched(browser, "browsable", viewport={"width": 1280, "height": 900})
    page = watched.page
    try:
        page.goto(stack.api + "/login?next=/api/jobs")
        page.get_by_label("API key").fill(stack.key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        # The raw-content form posts a job (a form to this origin), and the answer is shown. DRF's ajax-form.js
        # sends it as JSON: before that script has run (a loaded machine), the browser would post the form
        # itself, urlencoded (415).
        page.wait_for_load_state("load")
        body = {"scene": "from the browsable API", "width": 64, "height": 64}
        page.get_by_role("textbox", name="Content").fill(json.dumps(body))
        page.get_by_role("button", name="POST").click()
        expect(page.locator(".response-info")).to_contain_text("HTTP 201 Created")
        job_id = re.search(r'"id": "([0-9a-f]{32})"', page.locator(".response-info").inner_text()).group(1)
        # OPTIONS runs through DRF's ajax-form.js (a script file and a request to this origin).
        page.goto(f"{stack.api}/api/jobs/{job_id}")
        page.get_by_role("button", name="OPTIONS").click()
        expect(page.locator(".response-info")).to_contain_text("HTTP 200 OK")
        expect(page.locator(".request-info")).to_contain_text("OPTIONS")
        page.goto(f"{stack.api}/api/jobs/{job_id}/cancel")
        page.get_by_role("button", name="Cancel this job").click()
        expect(page.locator(".response-info")).to_contain_text('"status": "CANCELLED"')
        watched.shot("cancelled")
    except Exception:
        watched.shot("failure")
        raise
    assert watched.errors == []
