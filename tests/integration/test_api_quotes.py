"""Quotes and budgets over the API, in-process against the emulator: `POST /api/jobs?dry_run=1` (the same checks
as a submit, then a scout job), a scout's quote once its frames are recorded, 429 budget_exceeded, /api/usage
and `manage.py budget`."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from jobs import wiring
from jobs.adapters import aws
from jobs.domain import FrameResult, month_of, utcnow
from jobs.repository.usage import add_spend
from tests.integration.test_api import assert_error, key_for, post

BODY = {"scene": "shot_010", "width": 320, "height": 180, "frame_end": 24, "chunk_size": 4}


@pytest.fixture
def owner(emulator):
    return f"quote-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(owner):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(owner)}")
    return api


def dry_run(client, body, **extra):
    return client.post("/api/jobs?dry_run=1", body, format="json", **extra)


def spend(owner: str, worker_seconds: float) -> None:
    """Worker-seconds on the owner's month, as the write that ends one of its jobs charges them."""
    add_spend(aws.client("dynamodb"), wiring.budgets()._table, owner, worker_seconds, utcnow())


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "width": 8},
        {**BODY, "frames": "1-10,8-12", "frame_end": None},
        {**BODY, "frame_end": 20000},
        {**BODY, "chunk_size": 0},
        {**BODY, "unknown": 1},
        {**BODY, "steps": [{"type": "encode", "format": "mp4", "fps": 500}]},
        {"width": 320, "height": 180},
    ],
)
def test_a_dry_run_is_refused_with_the_same_400_as_the_submit(client, body):
    body = {k: v for k, v in body.items() if v is not None}
    submitted, quoted = post(client, body), dry_run(client, body)
    assert submitted.status_code == quoted.status_code == 400
    assert quoted.json() == submitted.json()


def test_a_bad_dry_run_value_is_a_400_in_the_one_error_shape(client):
    resp = client.post("/api/jobs?dry_run=maybe", BODY, format="json")
    assert "dry_run" in assert_error(resp, 400, "invalid")["details"]
    typo = client.post("/api/jobs?dryrun=1", BODY, format="json")  # must not submit the real job
    assert "dryrun" in assert_error(typo, 400, "invalid")["details"]
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_dry_run_answers_202_with_a_scout_of_three_frames_and_no_steps(client):
    body = {**BODY, "steps": [{"type": "encode", "format": "mp4", "fps": 24}]}
    resp = dry_run(client, body)
    assert resp.status_code == 202, resp.content
    scout = resp.json()
    assert resp["Location"] == scout["url"] and scout["status"] == "QUEUED"
    assert scout["frames"] == "1,13,24" and scout["progress"]["frames_total"] == 3
    assert scout["progress"]["chunks_total"] == 1 and scout["steps"] == [] and scout["callback_url"] is None
    assert scout["quote"] == {
        "frames": 24,
        "chunks": 6,
        "chunk_size": 4,
        "ready": False,
        **dict.fromkeys(
            ("seconds_per_frame", "startup_seconds", "worker_seconds", "workers", "wall_seconds", "dollars")
        ),
    }
    assert client.get(scout["url"]).json()["quote"]["ready"] is False
    normal = post(client, body).json()
    assert normal["quote"] is None and normal["worker_seconds"] == 0.0


def test_a_short_job_is_scouted_whole(client):
    scout = dry_run(client, {"scene": "shot", "width": 320, "height": 180, "frames": "5,9"}).json()
    assert scout["frames"] == "5,9" and scout["quote"]["frames"] == 2


def test_a_completed_scout_quotes_its_job_from_what_its_worker_recorded(client, owner):
    scout = dry_run(client, BODY).json()
    repo = wiring.job_repository()
    now = utcnow()
    job = repo.get(scout["id"])
    repo.chunks.put(job, job.new_chunks())  # the fan-out's: a scout has a chunk item, as the job's chunks will
    _, chunk = repo.chunks.claim(scout["id"], 0, attempt=1, worker="w", token="t", now=now, lease_seconds=30)
    results = [
        FrameResult(frame=f, key=f"jobs/{scout['id']}/{f}", size=1, sha256="0" * 64, content_type="image/png")
        for f in (1, 13, 24)
    ]
    # Blender's start (3 s) in the first frame's 4 s, then 1 s a frame; 6.5 s from claim to the last write.
    repo.chunks.record_frames(
        chunk,
        token="t",
        results=results,
        render_seconds=6.0,
        first_frame_seconds=4.0,
        worker_seconds=6.5,
        now=now,
        lease_until=now + timedelta(seconds=30),
    )
    assert client.get(scout["url"]).json()["quote"]["ready"] is False  # not COMPLETED before its assembly
    repo.begin_assembly(scout["id"], attempt=1, worker="w", token="a", now=now, lease_seconds=30)
    repo.complete_assembly(scout["id"], token="a", has_preview=True, now=now, expires_at=now + timedelta(days=1))
    shown = client.get(scout["url"]).json()
    assert shown["status"] == "COMPLETED" and shown["worker_seconds"] == 6.5
    quote = shown["quote"]
    assert quote["ready"] and (quote["seconds_per_frame"], quote["startup_seconds"]) == (1.0, 3.5)
    assert quote["worker_seconds"] == 24 * 1.0 + 6 * 3.5
    assert quote["dollars"] == pytest.approx(45 * (4 * 0.04048 + 8 * 0.004445) / 3600, abs=1e-4)
    workers = quote["workers"]
    assert quote["wall_seconds"] == (None if workers == 0 else -(-6 // min(workers, 6)) * (3.5 + 4 * 1.0))
    usage = client.get("/api/usage").json()
    assert usage["worker_seconds"] == 6.5 and usage["budget"] is None and usage["remaining"] is None


def test_usage_shows_the_month_the_spend_in_dollars_and_the_budget(client, owner):
    spend(owner, 3600)
    call_command("budget", owner=owner, dollars=5, stdout=StringIO())
    usage = client.get("/api/usage").json()
    hour = 4 * 0.04048 + 8 * 0.004445  # the default worker (4 vCPU, 8 GB) for an hour
    assert usage == {
        "month": month_of(utcnow()),
        "worker_seconds": 3600.0,
        "spent": round(hour, 2),
        "budget": 5.0,
        "remaining": round(5 - hour, 2),
    }


def test_a_submit_past_the_budget_is_429_budget_exceeded_with_the_numbers(client, owner):
    out = StringIO()
    call_command("budget", owner=owner, dollars=0.05, stdout=out)
    assert f"{owner}: {month_of(utcnow())}: $0.00 spent" in out.getvalue() and "budget $0.05" in out.getvalue()
    spend(owner, 100)  # $0.0055: under the budget
    accepted = post(client, BODY)
    assert accepted.status_code == 201
    assert client.post(f"/api/jobs/{accepted.json()['id']}/cancel").status_code == 200
    spend(owner, 1000)  # $0.06 in all
    retry = client.post(f"/api/jobs/{accepted.json()['id']}/retry")  # a retry spends too
    for resp in (post(client, BODY), dry_run(client, BODY), retry):
        error = assert_error(resp, 429, "budget_exceeded")
        assert error["details"] == {"budget": 0.05, "spent": 0.06, "month": month_of(utcnow())}
        assert "$0.05" in error["message"] and "$0.06" in error["message"]
    call_command("budget", owner=owner, clear=True, stdout=StringIO())
    assert post(client, BODY).status_code == 201
    assert client.get("/api/usage").json()["budget"] is None


def test_a_budget_of_zero_refuses_every_submit(client, owner):
    call_command("budget", owner=owner, dollars=0, stdout=StringIO())
    assert_error(post(client, BODY), 429, "budget_exceeded")
    assert client.get("/api/jobs").json()["jobs"] == []  # refused before anything was written


@pytest.mark.parametrize("dollars", [-1.0, float("nan"), float("inf")])
def test_a_budget_that_is_not_a_sum_of_dollars_is_refused_in_one_line(owner, dollars):
    with pytest.raises(CommandError, match="--dollars must be a number from 0"):
        call_command("budget", owner=owner, dollars=dollars, stdout=StringIO())
