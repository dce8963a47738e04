"""Rate limits shared through DynamoDB: a limit holds across processes, which per-process counters cannot do."""

import json

from jobs.adapters import aws
from jobs.api import throttling
from jobs.api.throttling import SharedCounter
from jobs.repository.counters import DynamoCounters

NOW = 1_800_000_000.0  # a fixed clock: mid-window


def counters(table):
    return DynamoCounters(client=aws.client("dynamodb"), table_name=table)


def test_two_processes_share_one_limit(table):
    shared = counters(table)
    first = SharedCounter(limit=30, batch=5, counters=shared, clock=lambda: NOW)
    second = SharedCounter(limit=30, batch=5, counters=shared, clock=lambda: NOW)
    allowed = 0
    for _ in range(20):
        for process in (first, second):
            allowed += process.hit("key:abc") is None
    # Each process alone made 20 requests, under the limit; together they are held near 30
    # (at most batch - 1 = 4 more per process slip through between flushes).
    assert 30 <= allowed <= 38
    assert first.hit("key:abc") is not None and second.hit("key:abc") is not None
    assert first.hit("key:other") is None  # per key


def test_a_new_window_starts_afresh_and_reports_when(table):
    clock = {"now": NOW}
    counter = SharedCounter(limit=2, batch=1, counters=counters(table), clock=lambda: clock["now"])
    assert [counter.hit("k") for _ in range(2)] == [None, None]
    wait = counter.hit("k")
    assert wait is not None and 0 < wait <= 60
    clock["now"] += wait + 0.01
    assert counter.hit("k") is None


def test_the_api_answers_429_with_retry_after(emulator, monkeypatch):
    from rest_framework.test import APIClient

    from jobs import wiring
    from jobs.domain import utcnow
    from jobs.services import api_key_create

    monkeypatch.setattr(throttling, "_counter", SharedCounter(limit=3, batch=1))
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(repo=wiring.api_key_repository(), owner='t', now=utcnow())}"
    )
    codes = [client.get("/api/jobs").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = client.get("/api/jobs")
    body = json.loads(resp.content)
    assert body["error"]["code"] == "throttled" and int(resp["Retry-After"]) >= 0


def test_revoked_keys_stop_working(emulator):
    from rest_framework.test import APIClient

    from jobs import wiring
    from jobs.api.auth import key_cache
    from jobs.domain import utcnow
    from jobs.ports.values import Revocation
    from jobs.services import api_key_create, hash_api_key

    repo = wiring.api_key_repository()
    key = api_key_create(repo=repo, owner="leaver", now=utcnow())
    other = api_key_create(repo=repo, owner="leaver", now=utcnow())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/jobs").status_code == 200
    assert repo.revoke(hash_api_key(key), now=utcnow()) is Revocation.REVOKED
    assert repo.revoke(hash_api_key(key), now=utcnow()) is Revocation.ALREADY_REVOKED
    assert repo.revoke("0" * 64, now=utcnow()) is Revocation.NOT_FOUND
    key_cache.clear()  # what the cache TTL does within RENDER_API_KEY_CACHE_SECONDS
    assert client.get("/api/jobs").status_code == 401
    assert sorted(repo.key_hashes_of("leaver")) == sorted([hash_api_key(key), hash_api_key(other)])


def anonymous_codes(monkeypatch, headers: list[dict], *, limit: int = 3) -> list[int]:
    """Status codes of anonymous requests to a throttled public page (the API docs), one per header set."""
    from rest_framework.test import APIClient

    monkeypatch.setattr(throttling, "_counter", SharedCounter(limit=limit, batch=1))
    client = APIClient()
    return [client.get("/api/docs", **h).status_code for h in headers]


def test_a_huge_forwarded_for_is_neither_an_error_nor_a_fresh_limit(emulator, monkeypatch, settings):
    settings.RENDER_TRUSTED_PROXIES = 1
    huge = [",".join([f"10.0.{i}.1"] * 340) + ", 203.0.113.60" for i in range(4)]  # over 3,000 characters each
    assert len(huge[0]) > 3000
    codes = anonymous_codes(monkeypatch, [{"HTTP_X_FORWARDED_FOR": h, "REMOTE_ADDR": "10.9.0.1"} for h in huge])
    assert codes == [200, 200, 200, 429]
    junk = {"HTTP_X_FORWARDED_FOR": "x" * 3000, "REMOTE_ADDR": "10.9.0.1"}  # not an address: REMOTE_ADDR counts
    assert anonymous_codes(monkeypatch, [junk] * 4) == [200, 200, 200, 429]


def test_behind_one_proxy_only_the_address_it_appended_counts(emulator, monkeypatch, settings):
    settings.RENDER_TRUSTED_PROXIES = 1
    # The client controls everything before the last element; the load balancer appends the real address.
    spoofed = [{"HTTP_X_FORWARDED_FOR": f"198.51.100.{i}, 203.0.113.7", "REMOTE_ADDR": "10.9.0.2"} for i in range(4)]
    assert anonymous_codes(monkeypatch, spoofed) == [200, 200, 200, 429]
    other = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.8", "REMOTE_ADDR": "10.9.0.2"}
    assert anonymous_codes(monkeypatch, [other]) == [200]  # another client behind the same proxy


def test_without_a_proxy_forwarded_for_is_ignored(emulator, monkeypatch, settings):
    settings.RENDER_TRUSTED_PROXIES = 0
    spoofed = [{"HTTP_X_FORWARDED_FOR": f"203.0.113.{i}", "REMOTE_ADDR": "10.9.0.3"} for i in range(4)]
    assert anonymous_codes(monkeypatch, spoofed) == [200, 200, 200, 429]


def test_counter_keys_carry_a_hash_of_the_subject_not_the_subject(table):
    counter = SharedCounter(limit=10, batch=1, counters=counters(table), clock=lambda: NOW)
    counter.hit("ip:203.0.113.9")
    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    assert len(items) == 1
    pk = items[0]["pk"]["S"]
    assert "203.0.113.9" not in pk
    prefix, digest, window = pk.split("#")
    assert prefix == "THROTTLE" and len(digest) == 32 and int(digest, 16) >= 0 and window == str(int(NOW // 60))
