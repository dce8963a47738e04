"""The browsable API as a person sees it: who is logged in, action buttons, an example body, plain text, a root."""

import re
import uuid
from urllib.parse import urlencode

from rest_framework.test import APIClient

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import api_key_create

VALID = {"scene": "shot_010", "width": 320, "height": 180}


def browser_for(owner: str) -> APIClient:
    browser = APIClient(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7")
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow(), scopes=frozenset())
    assert browser.post("/api/auth/login/", {"api_key": key}).status_code == 302
    return browser


def html(resp) -> str:
    assert resp.status_code == 200, resp.content[:500]
    assert resp["Content-Type"].startswith("text/html")
    return resp.content.decode()


def test_navbar_names_the_owner_and_key_not_a_repr(emulator):
    page = html(browser_for("navbar-owner").get("/api/jobs", HTTP_ACCEPT="text/html"))
    assert "navbar-owner" in page and "&middot; key " in page
    assert "ApiKeyUser(" not in page and "is_authenticated=" not in page


def test_cancel_page_opens_on_the_job_and_a_button_not_a_405(emulator):
    browser = browser_for("action-owner")
    job = browser.post("/api/jobs", VALID, format="json").json()
    opened = browser.get(f"/api/jobs/{job['id']}/cancel", HTTP_ACCEPT="text/html")
    page = html(opened)
    assert opened.status_code == 200 and "Cancel this job" in page and job["id"] in page
    assert "Method Not Allowed" not in page and "HTTP 405" not in page  # (ids and tokens may hold "405")
    assert 'name="_content"' not in page  # no empty raw-content form
    # JSON clients still learn that GET is not how to cancel.
    refused = browser.get(f"/api/jobs/{job['id']}/cancel", HTTP_ACCEPT="application/json")
    assert refused.status_code == 405 and "GET" not in refused["Allow"]
    done = browser.post(f"/api/jobs/{job['id']}/cancel", HTTP_ACCEPT="text/html")
    assert done.status_code == 200 and "CANCELLED" in done.content.decode()


def test_the_action_button_posts_as_a_browser_does_with_its_csrf_token(emulator):
    browser = browser_for("button-owner")
    job = browser.post("/api/jobs", VALID, format="json").json()
    strict = APIClient(enforce_csrf_checks=True, REMOTE_ADDR="10.0.0.8")
    strict.cookies = browser.cookies
    page = html(strict.get(f"/api/jobs/{job['id']}/cancel", HTTP_ACCEPT="text/html"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    # The button is a plain form: its body is the CSRF token, form-encoded (not JSON, which once made it a 415).
    done = strict.post(
        f"/api/jobs/{job['id']}/cancel",
        urlencode({"csrfmiddlewaretoken": token}),
        content_type="application/x-www-form-urlencoded",
        HTTP_ACCEPT="text/html",
    )
    assert done.status_code == 200 and "&quot;status&quot;: &quot;CANCELLED&quot;" in done.content.decode()
    refused = strict.post(
        f"/api/jobs/{job['id']}/retry",
        "",
        content_type="application/x-www-form-urlencoded",
        HTTP_ACCEPT="application/json",
    )
    assert refused.status_code == 403  # without the token the session's POST is refused


def test_post_form_has_an_example_body_and_descriptions_have_no_backticks(emulator):
    page = html(browser_for("form-owner").get("/api/jobs", HTTP_ACCEPT="text/html"))
    assert "&quot;scene&quot;: &quot;shot_010&quot;" in page
    description = page.split('class="pull-left">')[1].split("</div>")[0]
    assert "<code>GET /api/jobs</code>" in description and "`" not in description
    assert "<h1>Jobs</h1>" in page


def test_api_root_lists_the_endpoints(emulator):
    root = APIClient().get("/api/", HTTP_ACCEPT="application/json")
    assert root.status_code == 200
    body = root.json()
    assert body["jobs"].endswith("/api/jobs") and body["job_cancel"].endswith("/api/jobs/<job_id>/cancel")
    assert body["docs"].endswith("/api/docs")
