"""Security headers on every kind of answer: the default Content-Security-Policy (the console keeps its own),
no MIME sniffing, no Referer to other origins, no framing; and pages that need nothing inline to work."""

import uuid
from html.parser import HTMLParser

import pytest
from django.test import Client

from jobs import wiring
from jobs.api.console import content_security_policy
from jobs.api.security_headers import DEFAULT_POLICY
from jobs.domain import utcnow
from jobs.services import api_key_create

VALID = {"scene": "headers", "width": 64, "height": 64}


def signed_in(owner: str) -> Client:
    browser = Client(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.11")
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow(), scopes=frozenset())
    assert browser.post("/login", {"api_key": key, "next": "/"}).status_code == 302
    return browser


def assert_common_headers(resp, *, view: bool = True) -> None:
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in resp["Content-Security-Policy"]
    if view:  # static files leave before XFrameOptionsMiddleware; the CSP's frame-ancestors covers them
        assert resp["X-Frame-Options"] == "DENY"


class InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts (JSON data blocks are not
    run, so they pass), <style> elements, style attributes and on* event handler attributes."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{name}= on <{tag}>" for name in attrs if name == "style" or name.startswith("on")]


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def job_browser(emulator):
    browser = signed_in("headers-owner")
    job = browser.post("/api/jobs", VALID, content_type="application/json").json()
    return browser, job["id"]


def test_browsable_api_pages_get_the_default_policy_and_carry_nothing_inline(job_browser):
    browser, job_id = job_browser
    for path in ("/api/", "/api/jobs", f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/cancel", "/api/farm"):
        resp = browser.get(path, HTTP_ACCEPT="text/html")
        assert resp["Content-Type"].startswith("text/html"), path
        assert resp["Content-Security-Policy"] == DEFAULT_POLICY, path
        assert_common_headers(resp)
        assert inline_code(resp.content.decode()) == [], path


def test_the_default_policy_allows_this_origin_only_and_nothing_inline():
    directives = dict(d.split(" ", 1) for d in DEFAULT_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in DEFAULT_POLICY


def test_swagger_ui_gets_the_default_policy_and_its_init_script_is_a_file(emulator):
    client = Client()
    page = client.get("/api/docs")
    assert page.status_code == 200 and page["Content-Security-Policy"] == DEFAULT_POLICY
    assert_common_headers(page)
    html = page.content.decode()
    assert inline_code(html) == []
    assert '<script src="/api/docs?script="></script>' in html
    script = client.get("/api/docs?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode() and '"/api/schema"' in script.content.decode()
    # Junk in the query is no 500: it only becomes a parameter of the URLs the page loads.
    assert client.get("/api/docs?lang=%00%ff<x>&script=").status_code == 200


def test_console_pages_and_the_sign_in_page_keep_their_own_policy(job_browser):
    browser, job_id = job_browser
    signed_out = Client().get("/login")
    for resp in (browser.get("/"), browser.get(f"/jobs/{job_id}"), signed_out):
        assert resp.status_code == 200
        assert resp["Content-Security-Policy"] == content_security_policy() != DEFAULT_POLICY
        assert_common_headers(resp)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/jobs", 401),  # an API error, JSON
        ("/no/such/page", 404),  # the JSON 404 handler
        ("/readyz", 200),
        ("/api/schema", 200),
        ("/static/rest_framework/js/jquery-3.7.1.min.js", 200),
        ("/static/console/favicon.svg", 200),  # an SVG opened on its own runs nothing either
    ],
)
def test_json_answers_static_files_and_errors_get_the_default_policy(emulator, path, status):
    resp = Client().get(path, HTTP_ACCEPT="application/json")
    assert resp.status_code == status
    assert resp["Content-Security-Policy"] == DEFAULT_POLICY
    assert_common_headers(resp, view=not path.startswith("/static/"))


def test_a_refused_csrf_check_gets_the_default_policy(job_browser):
    browser, _ = job_browser
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = browser.cookies
    resp = strict.post("/api/auth/logout/")  # a POST without the CSRF token
    assert resp.status_code == 403 and resp["Content-Security-Policy"] == DEFAULT_POLICY
