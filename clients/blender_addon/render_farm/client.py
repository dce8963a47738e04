"""The render farm's REST API and the presigned scene upload over urllib: the standard library only, because
Blender's Python has neither httpx nor requests. No bpy here, so it runs (and is tested) outside Blender."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

API_TIMEOUT = 30.0  # seconds per socket operation of an API call
UPLOAD_TIMEOUT = 120.0  # seconds per socket operation of the upload (not for the whole file)
HASH_BLOCK = 1024 * 1024
USER_AGENT = "render-farm-blender-addon/1.0"


class ApiError(Exception):
    """An error answer of the API (its code and message), or a client-side failure (status 0)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None):
        super().__init__(one_line(message))
        self.status, self.code, self.message, self.retry_after = status, code, one_line(message), retry_after


class Stopped(Exception):
    """Raised inside a submission's thread when it is told to stop (by Cancel, or the add-on unloading)."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def http_url(url: str, *, what: str) -> str:
    """`url` if it is an absolute http(s) URL without credentials, else ApiError: urllib would open file:// too."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(0, "invalid_url", f"the {what} must be an http:// or https:// URL, not {url.strip()!r}")
    if parts.username or parts.password:
        raise ApiError(0, "invalid_url", f"the {what} must not hold credentials (the API key has a field of its own)")
    return url.strip()


def new_request(url: str, *, what: str, **kwargs) -> urllib.request.Request:
    """A urllib Request for `url`, once `http_url` has passed it (every request of the add-on is made here)."""
    return urllib.request.Request(http_url(url, what=what), **kwargs)  # noqa: S310 (http(s) only: http_url)


def open_url(request: urllib.request.Request, *, timeout: float):
    """Open a Request made by `new_request` (so for an http(s) URL only)."""
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only: see new_request)


def file_sha256(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file, read in blocks (scenes with packed textures can be gigabytes)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class Client:
    """The farm's API for one key. The key goes only into the Authorization header of API requests (never into
    a message, a repr or a redirect, and never to the storage the upload goes to)."""

    def __init__(self, url: str, key: str, *, timeout: float = API_TIMEOUT):
        self.url = http_url(url, what="API URL").rstrip("/")
        if not key.strip():
            raise ApiError(0, "no_api_key", "no API key: set it in the add-on's preferences")
        self._key, self.timeout = key.strip(), timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = new_request(self.url + path, what="API URL", data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", USER_AGENT)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        request.add_unredirected_header("Authorization", f"Bearer {self._key}")
        try:
            with open_url(request, timeout=self.timeout) as resp:
                answer = _json(resp.read())
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, "unreachable", f"cannot reach the farm at {self.url}: {reason}") from None
        if not isinstance(answer, dict):
            raise ApiError(0, "bad_answer", f"the farm at {self.url} did not answer JSON (is it the farm's API URL?)")
        return answer

    def declare_asset(self, sha256: str, size: int) -> dict:
        """201 with a presigned `upload`, or `upload` null when this owner stored these bytes before."""
        return self.request("POST", "/api/assets", {"sha256": sha256, "size": size})

    def submit(self, body: dict, *, idempotency_key: str) -> dict:
        return self.request("POST", "/api/jobs", body, headers={"Idempotency-Key": idempotency_key})

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/api/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self.request("POST", f"/api/jobs/{job_id}/cancel")

    def console_url(self, job_id: str) -> str:
        return f"{self.url}/jobs/{job_id}"


def upload_file(upload: dict, path: Path, *, progress: Callable[[int], None], should_stop: Callable[[], bool]) -> None:
    """PUT the file to the presigned URL with exactly the headers the API gave, streamed from disk (urllib sends a
    file object in blocks when Content-Length is known, so a big file is never in memory); Stopped if told to."""
    headers = dict(upload.get("headers") or {})
    if not any(name.lower() == "content-length" for name in headers):  # without it urllib would send it chunked
        headers["Content-Length"] = str(path.stat().st_size)
    with path.open("rb") as f:
        request = new_request(
            upload["url"],
            what="upload URL",
            data=_Blocks(f, progress, should_stop),
            method=upload.get("method", "PUT"),
            headers=headers,
        )
        try:
            with open_url(request, timeout=UPLOAD_TIMEOUT) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, "upload_failed", f"the storage refused the upload (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, "upload_failed", f"the scene upload failed: {reason}") from None


class _Blocks:
    """A file object for http.client's body loop: counts what it hands over, stops the upload when told to."""

    def __init__(self, f, progress: Callable[[int], None], should_stop: Callable[[], bool]):
        self.f, self.progress, self.should_stop = f, progress, should_stop

    def read(self, size: int = -1) -> bytes:
        if self.should_stop():
            raise Stopped()
        block = self.f.read(size)
        self.progress(len(block))
        return block


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    """The API's error shape `{"error": {"code", "message"}}` as an ApiError, with Retry-After when sent."""
    body = _json(exc.read())
    try:
        retry_after = float(exc.headers.get("Retry-After")) if exc.headers.get("Retry-After") else None
    except ValueError:  # an HTTP date: this API sends seconds
        retry_after = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return ApiError(exc.code, str(error.get("code", "error")), str(error["message"]), retry_after=retry_after)
    return ApiError(exc.code, "http_error", f"the farm answered HTTP {exc.code}", retry_after=retry_after)
