"""The REST API in-process against the emulator: the happy path, auth, and every kind of bad input."""

import json

import pytest
from rest_framework.test import APIClient

from jobs import wiring
from jobs.domain import MAX_FRAMES_PER_JOB, utcnow
from jobs.services import api_key_create

VALID = {"scene": "shot_010", "width": 320, "height": 180, "frame_start": 1, "frame_end": 2}


def key_for(owner: str, scopes=frozenset({"high"})) -> str:
    return api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow(), scopes=scopes)


@pytest.fixture
def client(emulator):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('alice')}")
    return api


def post(client, body, **extra):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/jobs", raw, content_type=extra.pop("content_type", "application/json"), **extra)


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.content
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_create_then_get_and_list(client):
    resp = post(client, VALID | {"priority": "high", "output_format": "jpeg"})
    assert resp.status_code == 201
    job = resp.json()
    assert resp["Location"].endswith(f"/api/jobs/{job['id']}")
    assert job["status"] == "QUEUED" and job["progress"] == {
        "frames_done": 0,
        "frames_total": 2,
        "ratio": 0.0,
        "chunks_done": 0,
        "chunks_total": 1,
        "eta_seconds": None,
    }
    assert job["scene"]["output_format"] == "jpeg" and job["priority"] == "high"
    got = client.get(f"/api/jobs/{job['id']}").json()
    assert got["id"] == job["id"] and got["results"] is None
    listed = client.get("/api/jobs?status=QUEUED").json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]


def test_defaults_one_frame_png_normal(client):
    job = post(client, {"scene": "s", "width": 16, "height": 16}).json()
    assert (job["frame_start"], job["frame_end"], job["priority"]) == (1, 1, "normal")
    assert job["scene"]["output_format"] == "png" and job["scene"]["samples"] == 64


def test_other_owner_sees_404_and_unknown_ids_404(client):
    job = post(client, VALID).json()
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('bob')}")
    assert_error(bob.get(f"/api/jobs/{job['id']}"), 404, "not_found")
    assert job["id"] not in [j["id"] for j in bob.get("/api/jobs").json()["jobs"]]
    assert_error(client.get("/api/jobs/" + "0" * 32), 404, "not_found")
    assert_error(client.get("/api/jobs/not-a-job-id"), 404, "not_found")
    assert_error(client.get("/nowhere"), 404, "not_found")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer rk_wrong", "authentication_failed"),
        ("Basic abc", "authentication_failed"),
        ("Bearer ", "authentication_failed"),
    ],
)
def test_missing_or_wrong_keys_get_401(emulator, header, code):
    api = APIClient()
    if header is not None:
        api.credentials(HTTP_AUTHORIZATION=header)
    resp = api.get("/api/jobs")
    assert_error(resp, 401, code)
    assert resp["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "width": "320"}, "width"),
        ({**VALID, "width": 320.5}, "width"),
        ({**VALID, "width": True}, "width"),
        ({**VALID, "scene": 12}, "scene"),
        ({**VALID, "scene": ""}, "scene"),
        ({**VALID, "scene": "x" * 201}, "scene"),
        ({**VALID, "scene": "bad\x00name"}, "scene"),
        ({**VALID, "color": "red"}, "color"),
        ({**VALID, "frame_start": 5, "frame_end": 4}, "frame_end"),
        ({**VALID, "frame_start": -1}, "frame_start"),
        ({**VALID, "frame_end": 100_000}, "frame_end"),
        ({**VALID, "frame_start": 0, "frame_end": MAX_FRAMES_PER_JOB}, "frame_end"),
        ({**VALID, "frame_start": 1, "frame_end": 2000, "chunk_size": 1}, "chunk_size"),
        ({**VALID, "chunk_size": 0}, "chunk_size"),
        ({**VALID, "chunk_size": 101}, "chunk_size"),
        ({**VALID, "width": 100_000}, "width"),
        ({**VALID, "height": 0}, "height"),
        ({**VALID, "samples": 0}, "samples"),
        ({**VALID, "output_format": "exr"}, "output_format"),
        ({**VALID, "priority": "urgent"}, "priority"),
        ({"width": 320, "height": 180}, "scene"),
    ],
)
def test_invalid_fields_get_400_naming_the_field(client, body, field):
    error = assert_error(post(client, body), 400, "invalid")
    assert field in error["details"]
    assert error["message"].startswith(field)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "null", '"text"', "[" * 5000 + "]" * 5000])
def test_malformed_or_non_object_bodies_get_400(client, raw):
    assert_error(post(client, raw), 400)


def test_oversized_body_gets_413(client):
    assert_error(post(client, {**VALID, "scene": "x" * 50_000}), 413, "payload_too_large")


def test_wrong_content_type_gets_415_and_wrong_method_405(client):
    assert_error(post(client, "scene=x", content_type="application/x-www-form-urlencoded"), 415)
    assert_error(client.delete("/api/jobs"), 405)


@pytest.mark.parametrize("query", ["status=DONE", "limit=0", "limit=1000", "limit=abc", "cursor=abc", "bogus=1"])
def test_bad_list_queries_get_400(client, query):
    assert_error(client.get(f"/api/jobs?{query}"), 400)


def test_health_schema_and_docs(client, emulator):
    anon = APIClient()
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"dynamodb": "ok", "sqs": "ok", "s3": "ok"}
    schema = anon.get("/api/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}"} <= set(paths)
    assert anon.get("/api/docs").status_code == 200


def test_browsable_api_login_with_a_key(emulator):
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.get("/api/auth/login/").status_code == 200
    assert browser.post("/api/auth/login/", {"api_key": "rk_nope"}).status_code == 403  # no CSRF token yet
    browser.get("/api/auth/login/")
    token = browser.cookies["csrftoken"].value
    bad = browser.post("/api/auth/login/", {"api_key": "rk_nope", "csrfmiddlewaretoken": token})
    assert bad.status_code == 400
    ok = browser.post("/api/auth/login/", {"api_key": key_for("carol"), "csrfmiddlewaretoken": token})
    assert ok.status_code == 302
    page = browser.get("/api/jobs", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"<html" in page.content
    assert_error(browser.post("/api/jobs", json.dumps(VALID), content_type="application/json"), 403)


def test_cancel_retry_tasks_and_frames_endpoints(client):
    job = post(client, {**VALID, "frame_start": 1, "frame_end": 12, "chunk_size": 5}).json()
    assert job["chunk_size"] == 5 and job["progress"]["chunks_total"] == 3
    assert_error(client.post(f"/api/jobs/{job['id']}/retry"), 409, "state_conflict")
    frames = client.get(f"/api/jobs/{job['id']}/frames")  # any job: the frames recorded so far (none yet)
    assert frames.status_code == 200 and frames.json()["frames"] == [] and frames.json()["manifest_url"] is None
    tasks = client.get(f"/api/jobs/{job['id']}/tasks").json()
    assert tasks == {"tasks": [], "next_cursor": None}  # fanned out by a worker, not by the request
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    assert_error(client.post(f"/api/jobs/{job['id']}/cancel"), 409, "state_conflict")
    retried = client.post(f"/api/jobs/{job['id']}/retry").json()
    assert (retried["status"], retried["attempt"]) == ("QUEUED", 2)
    single = post(client, VALID).json()
    only = client.get(f"/api/jobs/{single['id']}/tasks").json()["tasks"]
    assert [(t["index"], t["frame_start"], t["frame_end"], t["status"]) for t in only] == [(0, 1, 2, "QUEUED")]
    assert_error(client.get(f"/api/jobs/{single['id']}/tasks?limit=0"), 400)
    assert_error(client.get(f"/api/jobs/{single['id']}/frames?offset=-1"), 400)
    assert_error(client.get(f"/api/jobs/{single['id']}/tasks?cursor=forged"), 400, "invalid_cursor")


def test_idempotency_key_replays_and_conflicts(client):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    first = post(client, VALID, **headers)
    again = post(
        client, {"height": 180, "width": 320, "scene": "shot_010", "frame_end": 2, "frame_start": 1}, **headers
    )
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    error = assert_error(post(client, {**VALID, "scene": "other"}, **headers), 422, "idempotency_key_reused")
    assert "different request body" in error["message"]
    assert_error(post(client, VALID, HTTP_IDEMPOTENCY_KEY="bad key with spaces"), 400, "invalid")


INJECTIONS = [
    "'; DROP TABLE jobs; --",
    "$(rm -rf /)",
    "`id`",
    "../../../etc/passwd",
    "{{7*7}}",
    "<script>x</script>",
    "JOB#other#TASK#00001",
    "%00",
    "\\u0000",
]
ODD_UNICODE = [
    "shot_010 🎬",
    "مشهد",
    "e\u0301te\u0301",
    "\U0001d530\U0001d520\U0001d522\U0001d52b\U0001d522",
    "a" * 200,
]


@pytest.mark.parametrize("name", [*INJECTIONS, *ODD_UNICODE])
def test_injection_strings_and_odd_unicode_are_only_data(client, name):
    resp = post(client, {**VALID, "scene": name})
    assert resp.status_code == 201, resp.content
    job = resp.json()
    assert job["scene"]["name"] == name  # stored and returned verbatim, never interpreted
    assert client.get(f"/api/jobs/{job['id']}").json()["scene"]["name"] == name


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "\x1b[31mred", "\ud800"])
def test_control_characters_and_lone_surrogates_are_refused(client, bad):
    raw = json.dumps({**VALID, "scene": bad})
    assert_error(post(client, raw), 400)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("invoice\u202egnp.exe", "U+202E"),  # right-to-left override (Cf): shows as "invoiceexe.png"
        ("zero\u200bwidth", "U+200B"),  # zero-width space (Cf)
        ("bom\ufeff", "U+FEFF"),  # byte-order mark (Cf)
        ("line\u2028sep", "U+2028"),  # line separator (Zl)
        ("para\u2029sep", "U+2029"),  # paragraph separator (Zp)
    ],
)
def test_invisible_format_and_separator_characters_are_refused(client, bad, named):
    error = assert_error(post(client, {**VALID, "scene": bad}), 400, "invalid")
    assert "scene" in error["details"] and named in error["message"]


@pytest.mark.parametrize("value", [*INJECTIONS, "é" * 10, "a" * 129, ""])
def test_hostile_idempotency_keys_and_query_strings(client, value):
    assert_error(post(client, VALID, HTTP_IDEMPOTENCY_KEY=value), 400)
    from urllib.parse import quote

    assert_error(client.get(f"/api/jobs?status={quote(value)}"), 400)
    if value:
        assert_error(client.get(f"/api/jobs?cursor={quote(value)}"), 400)


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/..%2F..%2Fetc",
        "/api/jobs/" + "A" * 32,
        "/api/jobs/%27%20OR%201=1",
        "/api/jobs/" + "0" * 33,
        "/api/jobs/" + "0" * 32 + "/cancel/../retry",
    ],
)
def test_hostile_paths_are_404(client, path):
    assert_error(client.get(path), 404)


def test_priority_high_needs_a_key_granted_the_high_scope(emulator):
    plain = APIClient()
    plain.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('bob', scopes=frozenset())}")
    assert_error(post(plain, {**VALID, "priority": "high"}), 403, "priority_not_allowed")
    assert post(plain, {**VALID, "priority": "normal"}).status_code == 201


def test_an_owner_cannot_queue_more_frames_than_the_limit_and_finished_jobs_give_room_back(emulator, settings):
    settings.RENDER_MAX_ACTIVE_FRAMES_PER_OWNER = 30
    carol = APIClient()
    carol.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('carol')}")
    first = post(carol, {**VALID, "frame_end": 20})
    assert first.status_code == 201
    refused = post(carol, {**VALID, "frame_end": 11})  # 20 + 11 > 30
    error = assert_error(refused, 429, "owner_limit_reached")
    assert error["details"] == {"frames_active": 20, "frames_requested": 11, "limit": 30}
    assert "20 frames are waiting or rendering" in error["message"]
    assert post(carol, {**VALID, "frame_end": 10}).status_code == 201  # exactly at the limit
    assert carol.post(f"/api/jobs/{first.json()['id']}/cancel").json()["status"] == "CANCELLED"
    assert post(carol, {**VALID, "frame_end": 11}).status_code == 201  # the cancelled job's frames came back
