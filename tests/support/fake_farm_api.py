"""A fake of the farm's HTTP API and its presigned upload, as a real HTTP server on localhost, for clients that must
be tested without the farm (the Blender add-on's core). It answers the shapes the API documents and records every
request; tests script it through its attributes."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeFarmApi:
    key: str
    stored: set[str] = field(default_factory=set)  # sha256 of assets stored before (no upload asked)
    inspecting: int = 0  # how many submits leaving the range to the file get 409 scene_file_inspecting
    retry_after: str = "0"
    statuses: list[str] = field(default_factory=lambda: ["QUEUED", "PROCESSING", "COMPLETED"])  # one per GET
    failures: dict[tuple[str, str], list[tuple[int, dict]]] = field(default_factory=dict)  # (method, path) -> answers
    job_read_failures: list[tuple[int, dict]] = field(default_factory=list)  # answers to the next GETs of any job
    upload_gate: threading.Event | None = None  # set: the PUT reads its first block, then waits for the gate
    seen: list[Seen] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)

    def start(self) -> FakeFarmApi:
        farm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                farm.handle(self)

            do_POST = do_PUT = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, method: str, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]

    # --- the server side ---
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = self.read_upload(h, length) if h.command == "PUT" else h.rfile.read(length)
        self.seen.append(Seen(h.command, h.path, dict(h.headers.items()), body))
        if h.command == "PUT":
            if len(body) < length:  # the client stopped sending (cancelled): it is not listening any more
                return None
            return self.answer(h, 200, None)
        if h.headers.get("Authorization") != f"Bearer {self.key}":
            return self.answer(
                h, 401, {"error": {"code": "not_authenticated", "message": "Unknown or revoked API key"}}
            )
        if answers := self.failures.get((h.command, h.path)):
            status, payload = answers.pop(0)
            return self.answer(h, status, payload)
        if (h.command, h.path) == ("POST", "/api/assets"):
            return self.declare(h, json.loads(body))
        if (h.command, h.path) == ("POST", "/api/jobs"):
            return self.submit(h, json.loads(body))
        job_id = h.path.split("/")[3] if h.path.startswith("/api/jobs/") else ""
        if job_id in self.jobs and h.command == "POST" and h.path.endswith("/cancel"):
            self.jobs[job_id]["status"] = "CANCELLED"
            return self.answer(h, 200, self.jobs[job_id])
        if job_id in self.jobs and h.command == "GET" and self.job_read_failures:
            status, payload = self.job_read_failures.pop(0)
            return self.answer(h, status, payload)
        if job_id in self.jobs and h.command == "GET":
            job = self.jobs[job_id]
            if job["status"] != "CANCELLED" and self.statuses:
                job["status"] = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            total = job["progress"]["frames_total"]
            job["progress"]["frames_done"] = total if job["status"] == "COMPLETED" else 0
            return self.answer(h, 200, job)
        return self.answer(h, 404, {"error": {"code": "not_found", "message": "Not found."}})

    def read_upload(self, h: BaseHTTPRequestHandler, length: int) -> bytes:
        parts, left = [], length
        while left:
            block = h.rfile.read(min(left, 65536))
            if not block:  # the client stopped sending
                break
            parts.append(block)
            left -= len(block)
            if self.upload_gate is not None:
                self.upload_gate.wait(10)
        return b"".join(parts)

    def declare(self, h, body: dict) -> None:
        sha, size = body["sha256"], body["size"]
        if sha in self.stored:
            return self.answer(h, 200, {"sha256": sha, "size": size, "upload": None})
        checksum = base64.b64encode(bytes.fromhex(sha)).decode()
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        headers["x-amz-checksum-sha256"] = checksum
        upload = {"url": f"{self.url}/upload/{sha}", "method": "PUT", "expires_in": 3600, "headers": headers}
        return self.answer(h, 201, {"sha256": sha, "size": size, "upload": upload})

    def submit(self, h, body: dict) -> None:
        if "frame_start" not in body and self.inspecting > 0:
            self.inspecting -= 1
            error = {"code": "scene_file_inspecting", "message": "The farm is still reading the scene file."}
            return self.answer(h, 409, {"error": error}, headers={"Retry-After": self.retry_after})
        job_id = hashlib.sha256(f"{time.monotonic_ns()}".encode()).hexdigest()[:32]
        start, end = body.get("frame_start", 1), body.get("frame_end", 3)
        self.jobs[job_id] = {
            "id": job_id,
            "status": "QUEUED",
            "scene": {"name": body["scene"]},
            "frame_start": start,
            "frame_end": end,
            "progress": {"frames_done": 0, "frames_total": end - start + 1, "eta_seconds": None},
            "warnings": ["the job overrides the file: nothing"],
            "error": None,
        }
        return self.answer(h, 201, self.jobs[job_id])

    def answer(self, h, status: int, payload, headers: dict | None = None) -> None:
        raw = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)
