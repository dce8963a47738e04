"""The web console, the browsable API and Swagger UI in a real browser (Debian's chromium driven by Playwright)
against the real local stack, each page under its Content-Security-Policy with no violation.

Skipped, with the reason, when Playwright or chromium is missing. Screenshots land in .artifacts/browser/
(RENDER_TEST_ARTIFACTS overrides), also when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from jobs.devstack.stack import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("RENDER_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RENDER_TEST_ARTIFACTS", ROOT / ".artifacts" / "browser"))
HOSTILE = 'shot <b>"bold"</b> <img src=x onerror=alert(1)>'

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


@pytest.fixture
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


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


def sign_in(watched: Watched, stack) -> None:
    page = watched.page
    page.goto(stack.api + "/")
    expect(page.get_by_role("heading", name="Render farm")).to_be_visible()  # the sign-in page
    page.get_by_label("API key").fill(stack.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def progress_of(page) -> int:
    return int(page.locator("main .progress").first.get_attribute("aria-valuenow") or 0)


def test_sign_in_submit_watch_progress_and_thumbnails_then_cancel(make_stack, browser):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.5")
    stack.start_ready_worker("w1")
    watched = Watched(browser, "desktop", viewport={"width": 1280, "height": 900})
    page = watched.page
    try:
        sign_in(watched, stack)
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
        expect(page.locator("#animation")).to_be_visible()
        page.wait_for_function("() => document.getElementById('animation').naturalWidth > 0")
        expect(page.get_by_role("link", name="Download manifest.json")).to_be_visible()
        expect(page.locator("#chunks tbody tr")).to_have_count(3)
        watched.shot("job-completed")

        page.goto(stack.api + "/")
        expect(page.locator("#jobs tbody tr")).to_have_count(1)
        expect(page.locator("#jobs .badge")).to_have_text("COMPLETED")
        watched.shot("jobs")

        # A long job, cancelled from its page.
        long_job = stack.submit(scene="to cancel", frame_start=1, frame_end=60, chunk_size=10)
        page.goto(f"{stack.api}/jobs/{long_job['id']}")
        expect(page.locator("#status")).to_have_text("PROCESSING", timeout=20_000)
        page.wait_for_function("() => document.querySelectorAll('#frames img').length > 0", timeout=20_000)
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#status")).to_have_text(re.compile("CANCELLING|CANCELLED"))
        expect(page.locator("#status")).to_have_text("CANCELLED", timeout=20_000)
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        watched.shot("job-cancelled")
    except Exception:
        watched.shot("failure")
        raise
    assert watched.errors == []


def test_pages_fit_a_phone_and_log_no_errors(make_stack, browser):
    stack = make_stack()
    stack.start_ready_worker("w1")
    job = stack.submit(scene="phone " * 20, frame_start=1, frame_end=4, chunk_size=2)
    stack.wait_for_status(job["id"], "COMPLETED")
    watched = Watched(browser, "phone", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = watched.page
    sign_in(watched, stack)
    for path, label in (("/", "jobs"), (f"/jobs/{job['id']}", "job"), ("/jobs/new", "new")):
        page.goto(stack.api + path)
        page.wait_for_load_state("networkidle")
        if label == "job":
            expect(page.locator("#status")).to_have_text("COMPLETED")
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
        # The raw-content form posts a job (a form to this origin), and the answer is shown.
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
