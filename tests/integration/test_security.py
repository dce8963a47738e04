"""Abuse before authentication, browser sessions and key scopes, in-process against the emulator."""

import uuid

import pytest
from rest_framework.test import APIClient

from jobs import wiring
from jobs.api import throttling
from jobs.api.auth import key_cache
from jobs.api.throttling import SharedCounter
from jobs.domain import utcnow
from jobs.services import api_key_create


def key_for(owner: str) -> str:
    return api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow())


def fresh_address() -> str:
    """A client address no other test used, so shared per-address counts start at zero."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


class NoLookups:
    """An API key repository that fails the test if anything asks it."""

    def __getattr__(self, name):
        raise AssertionError(f"the key repository was asked: {name}")


@pytest.fixture
def no_lookups(monkeypatch):
    key_cache.clear()
    monkeypatch.setattr(wiring, "api_key_repository", NoLookups)


@pytest.fixture
def failures(monkeypatch):
    """A limit of 3 failed authentications per address, counted in DynamoDB one by one."""
    monkeypatch.setattr(throttling, "_auth_failures", SharedCounter(limit=3, batch=1), raising=False)


@pytest.mark.parametrize(
    "key",
    [
        "rk_short",
        "rk_" + "a" * 42 + "!",
        "rk_" + "a" * 44,
        "sk_" + "a" * 43,
        "rk_" + "é" * 43,
        "x" * 5000,
    ],
)
def test_malformed_bearer_keys_get_401_without_a_lookup(emulator, no_lookups, failures, key):
    api = APIClient(REMOTE_ADDR=fresh_address())
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    resp = api.get("/api/jobs")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "authentication_failed"


def test_too_many_401s_from_an_address_get_429_without_looking_at_the_key(emulator, monkeypatch, failures):
    address, good = fresh_address(), key_for("patient")
    api = APIClient(REMOTE_ADDR=address)
    assert api.get("/api/jobs").status_code == 401  # no key at all counts too
    api.credentials(HTTP_AUTHORIZATION="Bearer rk_" + "A" * 43)  # well-formed, unknown: looked up
    assert [api.get("/api/jobs").status_code for _ in range(2)] == [401, 401]
    key_cache.clear()
    real = wiring.api_key_repository
    monkeypatch.setattr(wiring, "api_key_repository", NoLookups)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")  # even a good key is not looked at now
    resp = api.get("/api/jobs")
    assert resp.status_code == 429, resp.content
    assert resp.json()["error"]["code"] == "too_many_auth_failures" and int(resp["Retry-After"]) >= 1
    monkeypatch.setattr(wiring, "api_key_repository", real)
    other = APIClient(REMOTE_ADDR=fresh_address())
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    assert other.get("/api/jobs").status_code == 200  # per address


def test_the_failure_limit_holds_across_processes(emulator, monkeypatch):
    address = fresh_address()
    api = APIClient(REMOTE_ADDR=address)
    monkeypatch.setattr(throttling, "_auth_failures", SharedCounter(limit=3, batch=1), raising=False)
    assert [api.get("/api/jobs").status_code for _ in range(2)] == [401, 401]
    monkeypatch.setattr(throttling, "_auth_failures", SharedCounter(limit=3, batch=1), raising=False)  # another process
    assert [api.get("/api/jobs").status_code for _ in range(2)] == [401, 429]


def test_failed_browser_logins_are_limited_per_address(emulator, failures):
    browser = APIClient(REMOTE_ADDR=fresh_address())
    codes = [browser.post("/api/auth/login/", {"api_key": bad}).status_code for bad in ("nope", "rk_" + "B" * 43, "")]
    assert codes == [400, 400, 400]
    blocked = browser.post("/api/auth/login/", {"api_key": key_for("dora")})
    assert blocked.status_code == 429 and b"Too many failed attempts" in blocked.content
    assert int(blocked["Retry-After"]) >= 1
    elsewhere = APIClient(REMOTE_ADDR=fresh_address())
    assert elsewhere.post("/api/auth/login/", {"api_key": key_for("dora")}).status_code == 302


def test_malformed_keys_at_the_browser_login_are_not_looked_up(emulator, no_lookups, failures):
    browser = APIClient(REMOTE_ADDR=fresh_address())
    assert browser.post("/api/auth/login/", {"api_key": "rk_nope"}).status_code == 400


def test_readyz_answers_from_a_short_cache_with_data_plane_calls_only(emulator, settings):
    from jobs.adapters import readiness

    settings.RENDER_READYZ_CACHE_SECONDS = 60
    getattr(readiness, "clear_cache", lambda: None)()
    anon = APIClient()
    emulator.reset_emulator_counts()
    answers = [anon.get("/readyz") for _ in range(10)]
    assert all(a.status_code == 200 and a.json()["status"] == "ready" for a in answers)
    calls = {(c["service"], c["action"]): c["count"] for c in emulator.emulator_counts() if c["who"] == "system"}
    assert sum(calls.values()) <= 3, calls  # one set of checks for ten probes
    assert ("dynamodb", "DescribeTable") not in calls and calls.get(("dynamodb", "GetItem")) == 1, calls


def logged_in(owner: str) -> tuple[APIClient, str, str]:
    """A browser logged in with a new key of `owner`: (client, key, session cookie)."""
    browser = APIClient(enforce_csrf_checks=True, REMOTE_ADDR=fresh_address())
    browser.get("/api/auth/login/")
    key = key_for(owner)
    token = browser.cookies["csrftoken"].value
    resp = browser.post("/api/auth/login/", {"api_key": key, "csrfmiddlewaretoken": token})
    assert resp.status_code == 302
    assert browser.get("/api/jobs").status_code == 200
    return browser, key, browser.cookies["sessionid"].value


def with_cookie(cookie: str) -> APIClient:
    """Another browser, holding a copy of a session cookie."""
    copy = APIClient(REMOTE_ADDR=fresh_address())
    copy.cookies["sessionid"] = cookie
    return copy


def session_item(cookie: str) -> dict | None:
    import hashlib

    from django.conf import settings

    from jobs.adapters import aws

    key = {"pk": {"S": f"SESSION#{hashlib.sha256(cookie.encode()).hexdigest()}"}, "sk": {"S": "SESSION"}}
    return aws.client("dynamodb").get_item(TableName=settings.RENDER_TABLE_NAME, Key=key).get("Item")


def test_sessions_live_in_the_table_for_eight_hours_under_a_hash_of_the_cookie(emulator):
    import time

    browser, _, cookie = logged_in("erin")
    item = session_item(cookie)
    assert item is not None and cookie not in str(item)
    assert abs(int(item["expires_at"]["N"]) - (time.time() + 8 * 3600)) < 60
    assert browser.cookies["sessionid"]["max-age"] == 8 * 3600


def test_logout_is_post_only_and_ends_the_session_on_the_server(emulator):
    browser, _, cookie = logged_in("frank")
    refused = browser.get("/api/auth/logout/")
    assert refused.status_code == 405 and refused.json()["error"]["code"] == "method_not_allowed"
    assert refused["Allow"] == "POST"
    assert browser.get("/api/jobs").status_code == 200  # still logged in
    token = browser.cookies["csrftoken"].value
    assert browser.post("/api/auth/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert session_item(cookie) is None
    assert with_cookie(cookie).get("/api/jobs").status_code == 401  # a copy of the cookie is worth nothing now


def test_revoking_the_key_ends_its_browser_sessions(emulator):
    from jobs.services import hash_api_key

    browser, key, cookie = logged_in("gina")
    assert session_item(cookie) is not None
    wiring.api_key_repository().revoke(hash_api_key(key), now=utcnow())
    key_cache.clear()  # what the cache TTL does within RENDER_API_KEY_CACHE_SECONDS
    assert browser.get("/api/jobs").status_code == 401
    assert session_item(cookie) is None
    assert with_cookie(cookie).get("/api/jobs").status_code == 401


def test_junk_session_cookies_cost_no_read(emulator, no_lookups):
    emulator.reset_emulator_counts()
    assert with_cookie("not-a-session-key").get("/api/jobs").status_code == 401
    calls = {(c["service"], c["action"]) for c in emulator.emulator_counts() if c["who"] == "system"}
    assert ("dynamodb", "GetItem") not in calls, calls
