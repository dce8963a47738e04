"""S3 storage against the emulator: deterministic keys, checksums, presigned downloads."""

import hashlib
import json

import requests

from jobs.domain import OutputFormat, frame_key


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
