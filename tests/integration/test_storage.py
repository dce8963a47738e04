"""S3 storage against the emulator: deterministic keys, checksums, presigned downloads; S3 unreachable."""

import hashlib
import json
from datetime import timedelta

import boto3
import requests
from botocore.config import Config

from jobs.adapters.s3 import S3ResultStore
from jobs.domain import JobStatus, OutputFormat, frame_key, utcnow
from jobs.ports import RenderContext
from jobs.renderers import SimulatedRenderer
from jobs.services import Outcome, chunk_process
from tests.fakes import control


def test_put_frame_and_download_through_a_presigned_url(store):
    key = frame_key("j1", 7, OutputFormat.PNG)
    body = b"\x89PNG fake bytes"
    result = store.put_frame(key=key, frame=7, body=body, content_type="image/png")
    assert result.sha256 == hashlib.sha256(body).hexdigest() and result.size == len(body)
    resp = requests.get(store.presigned_url(key), timeout=5)
    assert resp.status_code == 200 and resp.content == body
    assert resp.headers["Content-Type"] == "image/png"


def test_rewriting_a_frame_overwrites_it(store):
    key = frame_key("j2", 1, OutputFormat.JPEG)
    store.put_frame(key=key, frame=1, body=b"one", content_type="image/jpeg")
    store.put_frame(key=key, frame=1, body=b"two", content_type="image/jpeg")
    assert requests.get(store.presigned_url(key), timeout=5).content == b"two"


def test_put_and_get_bytes(store):
    store.put_bytes(
        key="jobs/j3/manifest.json", body=json.dumps({"frames": [1]}).encode(), content_type="application/json"
    )
    resp = requests.get(store.presigned_url("jobs/j3/manifest.json"), timeout=5)
    assert resp.json() == {"frames": [1]} and resp.headers["Content-Type"] == "application/json"
    assert store.get_bytes("jobs/j3/manifest.json") == b'{"frames": [1]}'


def test_a_job_whose_frames_cannot_be_stored_fails_naming_the_farms_result_storage(dynamo_repo, make_job):
    """S3 unreachable (nothing listens where the client points) while DynamoDB works: the customer reads which
    part of the farm failed, and the chunk is retried on the outage ladder before the job fails."""
    unreachable = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=Config(connect_timeout=1, retries={"mode": "standard", "max_attempts": 1}),
    )
    down = S3ResultStore(client=unreachable, bucket="unused", url_expiry=300)
    job = make_job(frame_start=3, frame_end=4)
    dynamo_repo.add(job)
    ctx = RenderContext(
        jobs=control(dynamo_repo, retention=timedelta(days=1)),
        store=down,
        renderer=SimulatedRenderer(seconds="0"),
        clock=utcnow,
        name="w1",
        lease_seconds=30,
        max_attempts=1,
        max_outage_attempts=2,
    )
    assert chunk_process(ctx=ctx, job_id=job.id, index=None, attempt=1) == (Outcome.RETRY, 1)
    assert chunk_process(ctx=ctx, job_id=job.id, index=None, attempt=1) == (Outcome.FAILED, 2)
    failed = dynamo_repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "farm_unavailable")
    assert failed.error == "could not store frame 3: result storage unavailable"
