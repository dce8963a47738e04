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
    from jobs import readiness

    settings.RENDER_READYZ_CACHE_SECONDS = 60
    getattr(readiness, "clear_cache", lambda: None)()
    anon = APIClient()
    emulator.reset_emulator_counts()
    answers = [anon.get("/readyz") for _ in range(10)]
    assert all(a.status_code == 200 and a.json()["status"] == "ready" for a in answers)
    calls = {(c["service"], c["action"]): c["count"] for c in emulator.emulator_counts() if c["who"] == "system"}
    assert sum(calls.values()) <= 3, calls  # one set of checks for ten probes
    assert ("dynamodb", "DescribeTable") not in calls and calls.get(("dynamodb", "GetItem")) == 1, calls
