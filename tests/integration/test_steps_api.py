"""Jobs with steps through the API in-process, against the emulator: the `steps` field, its 400s in the one
error shape, the step's state in the job's JSON, its video's presigned URL, and its log."""

import hashlib
import json
from datetime import timedelta

import pytest
import requests
from rest_framework.test import APIClient

from jobs import wiring
from jobs.domain import utcnow
from jobs.ports import RenderContext
from jobs.renderers import SimulatedRenderer
from jobs.services import api_key_create, chunk_process, job_fanout
from jobs.services.steps import step_process
from tests.fakes import FakeEncoder, FakeTaskQueue, control

ENCODE = {"type": "encode", "format": "mp4", "fps": 24}
VALID = {"scene": "shot_020", "width": 64, "height": 36, "frame_start": 1, "frame_end": 4, "chunk_size": 2}


@pytest.fixture
def client(emulator):
    api = APIClient()
    key = api_key_create(repo=wiring.api_key_repository(), owner="alice", now=utcnow(), scopes=frozenset())
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def post(client, body):
    return client.post("/api/jobs", json.dumps(body), content_type="application/json")


def invalid(resp) -> dict:
    assert resp.status_code == 400, resp.content
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "invalid" and "steps" in body["error"]["details"]
    assert body["error"]["message"].startswith("steps")
    return body["error"]


def test_a_job_with_an_encode_step_shows_it_waiting(client):
    resp = post(client, {**VALID, "steps": [ENCODE]})
    assert resp.status_code == 201, resp.content
    job = resp.json()
    assert job["status"] == "QUEUED" and job["progress"]["chunks_total"] == 2
    assert job["steps"] == [
        {
            "index": 0,
            "type": "encode",
            "format": "mp4",
            "fps": 24,
            "status": "WAITING",
            "progress": {"frames_done": 0, "frames_total": 4, "ratio": 0.0},
            "failures": 0,
            "error": None,
            "error_code": None,
            "started_at": None,
            "finished_at": None,
            "output": None,
        }
    ]
    assert post(client, VALID).json()["steps"] == []  # a job without steps says so
    missing = client.get(f"/api/jobs/{job['id']}/steps/0/log")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"/api/jobs/{job['id']}/steps/3/log").status_code == 404


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        ([{"type": "contact_sheet"}], "steps.0.type"),
        ([{**ENCODE, "fps": 0}], "steps.0.fps"),
        ([{**ENCODE, "fps": 121}], "steps.0.fps"),
        ([{**ENCODE, "fps": "24"}], "steps.0.fps"),
        ([{**ENCODE, "fps": True}], "steps.0.fps"),
        ([{**ENCODE, "format": "gif"}], "steps.0.format"),
        ([{"type": "encode", "format": "mp4"}], "steps.0.fps"),
        ([{**ENCODE, "codec": "h265"}], "steps.0.codec"),
        ([ENCODE, {**ENCODE, "fps": 12}], "One encode per format"),
        ([ENCODE, "encode"], "steps.1"),
        ({"type": "encode"}, "steps"),
        ([ENCODE] * 5, "steps"),
    ],
)
def test_bad_steps_get_400_naming_the_step_and_field(client, steps, said):
    error = invalid(post(client, {**VALID, "steps": steps}))
    assert said in error["message"], error


def test_an_encode_of_one_frame_or_of_openexr_frames_is_refused(client):
    error = invalid(post(client, {**VALID, "frame_end": 1, "steps": [ENCODE]}))
    assert "at least 2 frames" in error["message"]
    # A Blender job's OpenEXR frames: refused before anything else about the job is looked at.
    exr = {**VALID, "renderer": "blender", "scene_file": "a" * 64, "output_format": "exr", "steps": [ENCODE]}
    error = invalid(post(client, exr))
    assert "OpenEXR" in error["message"] and "tone mapping" in error["message"]


def test_an_encode_counts_the_frames_of_a_frame_list_not_its_span(client):
    span = {k: v for k, v in VALID.items() if k not in ("frame_start", "frame_end")}
    error = invalid(post(client, {**span, "frames": "7", "steps": [ENCODE]}))
    assert "at least 2 frames" in error["message"]
    resp = post(client, {**span, "frames": "1,100", "steps": [ENCODE]})
    assert resp.status_code == 201, resp.content
    assert resp.json()["frames"] == "1,100" and resp.json()["progress"]["frames_total"] == 2


def test_a_completed_encode_shows_its_video_url_manifest_entry_and_log(client, emulator):
    job = post(client, {**VALID, "steps": [{"type": "encode", "format": "webm", "fps": 8}]}).json()
    # The pipeline in-process on the real table and bucket (messages delivered by hand, the encoder a fake).
    repo, store, queue = wiring.job_repository(), wiring.result_store(), FakeTaskQueue()
    jobs = control(repo, queue, retention=timedelta(days=1))
    encoder = FakeEncoder()
    worker = RenderContext(
        jobs=jobs,
        store=store,
        renderer=SimulatedRenderer(seconds="0"),
        clock=utcnow,
        name="w-test",
        lease_seconds=30,
        max_attempts=3,
        encoder=lambda: encoder,
    )
    job_fanout(jobs=jobs, job_id=job["id"], attempt=1, now=utcnow())
    for job_id, index, attempt, _ in list(queue.chunks):
        chunk_process(ctx=worker, job_id=job_id, index=index, attempt=attempt)
    running = client.get(f"/api/jobs/{job['id']}").json()
    assert running["status"] == "PROCESSING" and running["steps"][0]["status"] == "QUEUED"
    assert running["results"] is None
    [(job_id, attempt, index, _)] = queue.steps
    step_process(ctx=worker, job_id=job_id, attempt=attempt, index=index)

    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["status"] == "COMPLETED"
    [step] = done["steps"]
    assert step["status"] == "COMPLETED" and step["progress"] == {"frames_done": 4, "frames_total": 4, "ratio": 1.0}
    assert step["output"]["content_type"] == "video/webm" and step["output"]["duration"] == 0.5
    [video] = done["results"]["videos"]
    assert (video["step"], video["format"], video["frames"], video["fps"]) == (0, "webm", 4, 8)
    body = requests.get(video["url"], timeout=10).content
    assert hashlib.sha256(body).hexdigest() == video["sha256"] == step["output"]["sha256"]
    assert len(body) == video["size"]
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [e["frame"] for e in manifest["frames"]] == [1, 2, 3, 4]
    assert manifest["steps"] == [{"step": 0, "type": "encode", **step["output"]}]
    [listed] = client.get(f"/api/jobs/{job['id']}/frames").json()["videos"]
    assert {k: v for k, v in listed.items() if k != "url"} == {k: v for k, v in video.items() if k != "url"}
    log = client.get(f"/api/jobs/{job['id']}/steps/0/log").json()
    assert log["job_id"] == job["id"] and log["step"] == 0 and "fake ffmpeg: 4 frames" in log["log"]
