"""The web console's pages in-process: sign-in, escaping, the Content-Security-Policy, conditional requests."""

import uuid

from django.test import Client

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import api_key_create

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def signed_in(owner: str) -> Client:
    browser = Client(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9")
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow(), scopes=frozenset())
    assert browser.post("/login", {"api_key": key, "next": "/"})["Location"] == "/"
    return browser


def test_signed_out_visitors_get_the_sign_in_page(emulator):
    browser = Client()
    for path in ("/", "/jobs/new", "/jobs/" + "a" * 32):
        resp = browser.get(path)
        assert resp.status_code == 302 and resp["Location"].startswith("/login?next=")
    page = browser.get("/login?next=/")
    assert page.status_code == 200 and b"Sign in" in page.content
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_pages_carry_a_csp_and_escape_hostile_scene_names(emulator):
    browser = signed_in("console-owner")
    job = browser.post(
        "/api/jobs", {"scene": HOSTILE, "width": 64, "height": 64}, content_type="application/json"
    ).json()
    for path in ("/", "/jobs/new", f"/jobs/{job['id']}"):
        resp = browser.get(path)
        assert resp.status_code == 200, path
        csp = resp["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert b"<script>alert" not in resp.content and b"<img src=x" not in resp.content
    page = browser.get(f"/jobs/{job['id']}").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "console-owner" in page


def test_another_owners_job_page_is_a_404_page(emulator):
    alice, bob = signed_in("console-alice"), signed_in("console-bob")
    job = alice.post("/api/jobs", {"scene": "mine", "width": 64, "height": 64}, content_type="application/json")
    resp = bob.get(f"/jobs/{job.json()['id']}")
    assert resp.status_code == 404 and b"No such job" in resp.content and b"mine" not in resp.content


def test_api_reads_answer_conditional_requests_with_304(emulator):
    browser = signed_in("console-etag")
    browser.post("/api/jobs", {"scene": "etag", "width": 64, "height": 64}, content_type="application/json")
    first = browser.get("/api/jobs", HTTP_ACCEPT="application/json")
    again = browser.get("/api/jobs", HTTP_ACCEPT="application/json", HTTP_IF_NONE_MATCH=first["ETag"])
    assert first.status_code == 200 and again.status_code == 304 and again.content == b""


def test_static_files_are_served_by_the_app(emulator):
    resp = Client().get("/static/console/console.js")
    assert resp.status_code == 200 and b"textContent" in b"".join(resp.streaming_content)
