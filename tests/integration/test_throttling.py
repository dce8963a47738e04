"""Rate limits shared through DynamoDB: a limit holds across processes, which per-process counters cannot do."""

import json

from jobs import aws
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
    from jobs.api.auth import owner_cache
    from jobs.domain import utcnow
    from jobs.services import api_key_create, hash_api_key

    repo = wiring.api_key_repository()
    key = api_key_create(repo=repo, owner="leaver", now=utcnow())
    other = api_key_create(repo=repo, owner="leaver", now=utcnow())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/jobs").status_code == 200
    assert repo.revoke(hash_api_key(key), now=utcnow()) is True
    assert repo.revoke("0" * 64, now=utcnow()) is False
    owner_cache.clear()  # what the cache TTL does within RENDER_API_KEY_CACHE_SECONDS
    assert client.get("/api/jobs").status_code == 401
    assert sorted(repo.key_hashes_of("leaver")) == sorted([hash_api_key(key), hash_api_key(other)])
