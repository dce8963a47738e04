"""A small client of the render farm REST API; every error answer becomes an ApiError with the API's message."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
UPLOAD_BLOCK = 1024 * 1024
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_ID_PREFIX = re.compile(r"^[0-9a-f]{4,31}$")  # as git: at least 4 hex digits


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


class Client:
    def __init__(self, url: str, key: str, *, http: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.http = http or httpx.Client(
            timeout=TIMEOUT, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
        )

    def request(self, method: str, path: str, **kwargs) -> dict:
        try:
            resp = self.http.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach the API at {self.url}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.is_success and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ApiError(resp.status_code, error.get("code", "error"), error.get("message", ""), error.get("details"))
        raise ApiError(resp.status_code, "http_error", f"the API answered HTTP {resp.status_code}")

    # --- jobs ---
    def submit(self, body: dict, *, idempotency_key: str | None = None, dry_run: bool = False) -> dict:
        """The job (201); with `dry_run`, its scout job (202), whose quote is ready once it is COMPLETED."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        path = "/api/jobs?dry_run=1" if dry_run else "/api/jobs"
        return self.request("POST", path, json=body, headers=headers)

    def usage(self) -> dict:
        return self.request("GET", "/api/usage")

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/api/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, limit: int = 20, cursor: str | None = None) -> dict:
        params = {"limit": limit}
        if cursor:
            params = {"cursor": cursor}
        elif status:
            params["status"] = status
        return self.request("GET", "/api/jobs", params=params)

    def resolve(self, ref: str) -> str:
        """The full id of a job given by its id or a unique prefix of one of the caller's jobs.

        A prefix is looked for in every page of the caller's jobs (one request per 100 jobs), so it is
        refused when two jobs share it, and it never reaches another owner's job.
        """
        ref = ref.strip().lower()
        if JOB_ID.match(ref):
            return ref
        if not JOB_ID_PREFIX.match(ref):
            raise ApiError(0, "invalid_job_id", f"{ref!r} is not a job id: 32 hex digits, or a prefix of 4 or more")
        matches, cursor = [], None
        while True:
            page = self.jobs(limit=100, cursor=cursor)
            matches += [job["id"] for job in page["jobs"] if job["id"].startswith(ref)]
            cursor = page["next_cursor"]
            if len(matches) > 1 or not cursor:
                break
        if not matches:
            raise ApiError(404, "not_found", f"none of your jobs has an id starting with {ref}")
        if len(matches) > 1:
            shown = ", ".join(matches)
            raise ApiError(0, "ambiguous_job_id", f"more than one of your jobs starts with {ref} ({shown}): add digits")
        return matches[0]

    def cancel(self, job_id: str) -> dict:
        return self.request("POST", f"/api/jobs/{job_id}/cancel")

    def retry(self, job_id: str) -> dict:
        return self.request("POST", f"/api/jobs/{job_id}/retry")

    def tasks(self, job_id: str) -> list[dict]:
        tasks, cursor = [], None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", f"/api/jobs/{job_id}/tasks", params=params)
            tasks.extend(page["tasks"])
            cursor = page["next_cursor"]
            if not cursor:
                return tasks

    def frames(self, job_id: str) -> tuple[dict, list[dict]]:
        """The first page's links (manifest, preview) and every frame entry, all pages."""
        offset, frames, first = 0, [], None
        while offset is not None:
            page = self.request("GET", f"/api/jobs/{job_id}/frames", params={"offset": offset, "limit": 1000})
            first = first or page
            frames.extend(page["frames"])
            offset = page["frames_next_offset"]
        return first, frames

    def log(self, job_id: str, index: int) -> dict | None:
        try:
            return self.request("GET", f"/api/jobs/{job_id}/tasks/{index}/log")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # --- scene files ---
    def asset(self, sha256: str) -> dict:
        """The stored scene file and, once a worker has read it, its settings (`inspection.state`)."""
        return self.request("GET", f"/api/assets/{sha256}")

    def upload_scene(self, path: Path, *, progress: Callable[[int], None] = lambda n: None) -> str:
        """Store a scene file through the presigned upload (skipped when already stored); its sha256."""
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(UPLOAD_BLOCK), b""):
                digest.update(block)
        sha256, size = digest.hexdigest(), path.stat().st_size
        asset = self.request("POST", "/api/assets", json={"sha256": sha256, "size": size})
        upload = asset.get("upload")
        if upload is None:
            progress(size)
            return sha256

        def blocks() -> Iterator[bytes]:
            with path.open("rb") as f:
                for block in iter(lambda: f.read(UPLOAD_BLOCK), b""):
                    progress(len(block))
                    yield block

        headers = {**upload.get("headers", {}), "Content-Length": str(size)}
        try:
            resp = httpx.request(
                upload.get("method", "PUT"), upload["url"], content=blocks(), headers=headers, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, "upload_failed", f"the scene upload failed: {exc}") from exc
        if not resp.is_success:
            raise ApiError(
                resp.status_code, "upload_failed", f"the storage refused the upload (HTTP {resp.status_code})"
            )
        return sha256
