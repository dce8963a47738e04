"""Scene files against the emulator: the asset API, a real presigned PUT, HeadObject checks at submit."""

import base64
import hashlib
import json
from collections import Counter

import requests
from django.conf import settings

from jobs import wiring
from jobs.adapters import aws
from jobs.ports.values import INSPECT_ASSET
from tests.integration.test_api import assert_error, client, key_for  # noqa: F401 (fixture)

BODY = b"BLENDER-v304" + bytes(range(256)) * 8
SHA = hashlib.sha256(BODY).hexdigest()
SIZE = len(BODY)
BLENDER_JOB = {"scene": "shot", "renderer": "blender", "scene_file": SHA, "frame_start": 1, "frame_end": 3}


def declare(api, sha=SHA, size=SIZE):
    return api.post("/api/assets", json.dumps({"sha256": sha, "size": size}), content_type="application/json")


def put(ticket, body):
    return requests.put(ticket["url"], data=body, headers=ticket["headers"], timeout=10)


def submit(api, body):
    return api.post("/api/jobs", json.dumps(body), content_type="application/json")


def test_declare_upload_submit(client):  # noqa: F811
    resp = declare(client)
    assert resp.status_code == 201, resp.content
    ticket = resp.json()["upload"]
    assert resp.json()["sha256"] == SHA and resp.json()["size"] == len(BODY)
    assert ticket["method"] == "PUT" and ticket["expires_in"] == 3600
    # The checksum and length are signed into the URL: real S3 refuses other content or another length.
    assert "x-amz-checksum-sha256" in ticket["url"] and "content-length" in ticket["url"]
    assert set(ticket["headers"]) == {"Content-Type", "Content-Length", "x-amz-checksum-sha256"}
    assert client.get(f"/api/assets/{SHA}").json() == {
        "sha256": SHA,
        "size": len(BODY),
        "uploaded": False,
        "settings": None,
        "inspection": None,  # nothing to read before the upload
    }
    assert_error(submit(client, BLENDER_JOB), 422, "scene_file_missing")

    assert put(ticket, BODY).status_code == 200
    uploaded = client.get(f"/api/assets/{SHA}").json()
    assert uploaded["uploaded"] is True and uploaded["settings"] is None
    assert uploaded["inspection"]["state"] == "pending"  # a worker's Blender reads it (tests/e2e: the real one)
    again = declare(client)
    assert again.status_code == 200 and again.json()["upload"] is None

    job = submit(client, BLENDER_JOB)
    assert job.status_code == 201, job.content
    body = job.json()
    assert body["renderer"] == "blender" and body["scene_file"] == SHA
    assert body["scene"] | {"name": None} == {
        "name": None,
        "width": None,
        "height": None,
        "samples": None,
        "output_format": "png",
    }


def test_content_of_another_length_is_refused_at_submit(client):  # noqa: F811
    sha = hashlib.sha256(b"x" * 100).hexdigest()
    ticket = declare(client, sha=sha, size=100).json()["upload"]
    # The emulator does not enforce the signed length or checksum (S3 does): the API's HeadObject check must.
    put({**ticket, "headers": {"Content-Type": ticket["headers"]["Content-Type"]}}, b"x" * 101)
    error = assert_error(submit(client, BLENDER_JOB | {"scene_file": sha}), 422, "scene_file_mismatch")
    assert error["details"] == {"scene_file": sha, "declared_size": 100, "size": 101}
    assert client.get(f"/api/assets/{sha}").json()["uploaded"] is False


def test_asset_input_rules(client, emulator):  # noqa: F811
    assert_error(declare(client, sha=SHA.upper()), 400, "invalid")
    assert_error(declare(client, size=0), 400, "invalid")
    assert_error(declare(client, size="12"), 400, "invalid")
    error = assert_error(declare(client, size=10 * 1024**3), 413, "asset_too_large")
    assert error["details"]["limit"] > 0
    assert_error(client.get("/api/assets/" + "0" * 64), 404, "not_found")
    assert_error(client.get("/api/assets/xyz"), 404)
    # Another owner's asset is unknown to Bob.
    declare(client)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('bob')}")
    assert_error(client.get(f"/api/assets/{SHA}"), 404, "not_found")
    assert_error(submit(client, BLENDER_JOB), 422, "scene_file_missing")


def test_job_rules_for_renderers(client):  # noqa: F811
    base = {"scene": "s", "width": 64, "height": 36}
    assert_error(submit(client, base | {"scene_file": SHA}), 400, "invalid")  # simulated renders no file
    assert_error(submit(client, {"scene": "s", "renderer": "blender"}), 400, "invalid")  # blender needs one
    assert_error(submit(client, {"scene": "s"}), 400, "invalid")  # simulated needs width and height
    assert_error(submit(client, base | {"renderer": "maya"}), 400, "invalid")
    assert_error(submit(client, base | {"renderer": "blender", "scene_file": "abc"}), 400, "invalid")
    simulated = submit(client, base).json()
    assert simulated["renderer"] == "simulated" and simulated["scene_file"] is None
    assert simulated["scene"]["samples"] == 64


def test_task_log_is_404_until_written(client):  # noqa: F811
    job = submit(client, {"scene": "s", "width": 64, "height": 36}).json()
    assert_error(client.get(f"/api/jobs/{job['id']}/tasks/0/log"), 404, "not_found")
    assert_error(client.get(f"/api/jobs/{job['id']}/tasks/1/log"), 404, "not_found")
    wiring.result_store().put_bytes(
        key=f"jobs/{job['id']}/logs/00000.json",
        body=json.dumps({"log": "Blender 3.4.1\n", "truncated": False}).encode(),
        content_type="application/json",
    )
    got = client.get(f"/api/jobs/{job['id']}/tasks/0/log").json()
    assert got == {"job_id": job["id"], "chunk": 0, "log": "Blender 3.4.1\n", "truncated": False}


def inspection_requests(priority: str) -> Counter:
    """The scene files (SHA-256) of the inspection messages waiting on the render queue of `priority`, counted
    (read once from SQS, each message hidden for the rest of the test)."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=settings.RENDER_QUEUE_NAMES[priority])["QueueUrl"]
    found: Counter = Counter()
    receive = {"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 60, "WaitTimeSeconds": 0}
    while messages := sqs.receive_message(**receive).get("Messages"):
        for message in messages:
            envelope = json.loads(base64.b64decode(message["Body"]))
            if envelope["headers"]["task"] == INSPECT_ASSET:
                found[json.loads(base64.b64decode(envelope["body"]))[0][0]] += 1
    return found


def test_an_inspection_takes_a_worker_first_only_when_someone_waits_for_it(client):  # noqa: F811
    """A job that gives its frames is checked by its first chunk: its file's inspection goes to the low queue,
    behind the farm's waiting chunks. A range left to the file (409 until read) or a look at the asset (the
    console's form) asks at high priority."""
    bodies = [BODY + suffix for suffix in (b"given", b"left", b"looked")]
    sha_given, sha_left, sha_looked = shas = [hashlib.sha256(body).hexdigest() for body in bodies]
    for sha, body in zip(shas, bodies, strict=True):
        assert put(declare(client, sha, len(body)).json()["upload"], body).status_code == 200

    assert submit(client, BLENDER_JOB | {"scene_file": sha_given}).status_code == 201
    range_left = {k: v for k, v in BLENDER_JOB.items() if k not in ("frame_start", "frame_end")}
    assert_error(submit(client, range_left | {"scene_file": sha_left}), 409, "scene_file_inspecting")
    assert client.get(f"/api/assets/{sha_looked}").json()["inspection"]["state"] == "pending"
    low, high = inspection_requests("low"), inspection_requests("high")
    assert (low[sha_given], high[sha_given]) == (1, 0)
    assert (low[sha_left], high[sha_left]) == (0, 1)
    assert (low[sha_looked], high[sha_looked]) == (0, 1)
