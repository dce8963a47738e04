"""renderctl's output and job-id prefixes, against a small fake of the API served over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from renderctl.cli import app


def job(job_id: str, status: str = "COMPLETED") -> dict:
    return {
        "id": job_id,
        "status": status,
        "priority": "normal",
        "scene": {"name": "[bold]shot[/bold]"},
        "created_at": "2026-11-30T13:35:11.239000+00:00",
        "progress": {"frames_done": 2, "frames_total": 2, "chunks_done": 1, "chunks_total": 1, "eta_seconds": None},
        "attempt": 1,
    }


class FakeApi(BaseHTTPRequestHandler):
    """The caller's jobs (newest first, two a page), a job's detail, and chunk 0's render log."""

    jobs: list[dict] = []
    paths: list[str] = []
    posted: list[dict] = []

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.paths.append(self.path)
        by_id = {j["id"]: j for j in self.jobs}
        parts = url.path.strip("/").split("/")  # api, jobs, <id>, tasks, <index>, log
        if url.path == "/api/usage":
            self.answer(200, USAGE)
        elif url.path == "/api/jobs" and query.get("status") == "FAILED" and "cursor" not in query:
            self.answer(200, {"jobs": [], "next_cursor": "0"})  # a filtered page that read its share, found none
        elif url.path == "/api/jobs":
            wanted = [j for j in self.jobs if j["status"] == query.get("status", j["status"])]
            start = int(query.get("cursor", 0))
            more = start + 2 < len(wanted)
            self.answer(200, {"jobs": wanted[start : start + 2], "next_cursor": str(start + 2) if more else None})
        elif len(parts) == 3 and parts[2] in by_id:
            self.answer(200, by_id[parts[2]])
        elif len(parts) == 6 and parts[2] in by_id and parts[4] == "0":
            log = "Fra:1 [red]Sample[/red] 1/4\n"  # brackets as a renderer's output may have them
            self.answer(200, {"job_id": parts[2], "chunk": 0, "log": log, "truncated": False})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": "No such [job].", "details": {}}})

    def do_POST(self):
        """POST /api/jobs: the body is kept; the job answered has the frames it asked for (as the API would)."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posted.append(body)
        if self.path == "/api/jobs?dry_run=1":  # a scout that has already completed, with its quote
            scout = job(C) | {"frames": "1,13,24", "quote": QUOTE}
            self.jobs.append(scout)
            self.answer(202, scout)
            return
        created = job(A, "QUEUED") | {"frames": body.get("frames", "1-2")}
        self.jobs.append(created)
        self.answer(201, created)

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def renderctl(tmp_path):
    FakeApi.jobs, FakeApi.paths, FakeApi.posted = [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "RENDER_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "RENDER_API_KEY": "rk_test",
        "RENDERCTL_CONFIG": str(tmp_path / "none.json"),
        "COLUMNS": "40",
    }
    yield lambda *args: CliRunner().invoke(app, list(args), env=env)
    server.shutdown()
    server.server_close()


QUOTE = {
    "frames": 24,
    "chunks": 6,
    "chunk_size": 4,
    "ready": True,
    "seconds_per_frame": 1.0,
    "startup_seconds": 3.5,
    "worker_seconds": 45.0,
    "workers": 2,
    "wall_seconds": 22.5,
    "dollars": 0.0025,
}
USAGE = {"month": "2026-12", "worker_seconds": 3725.0, "spent": 0.2, "budget": 50.0, "remaining": 49.8}
A = "abcd" + "0" * 28
B = "abcd" + "1" * 28
C = "abce" + "2" * 28


def test_a_unique_prefix_is_found_on_any_page_of_the_callers_jobs(renderctl):
    FakeApi.jobs = [job(A), job(B), job("9" * 32), job(C)]
    shown = renderctl("status", "ABCE")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"{C}  COMPLETED")
    assert FakeApi.paths[-1] == f"/api/jobs/{C}" and sum(p.startswith("/api/jobs?") for p in FakeApi.paths) == 2


def test_an_ambiguous_unknown_or_short_prefix_is_refused_in_one_line(renderctl):
    FakeApi.jobs = [job(A), job(B), job(C)]
    ambiguous = renderctl("wait", "abcd")
    assert ambiguous.exit_code == 1
    assert ambiguous.stderr == f"error: more than one of your jobs starts with abcd ({A}, {B}): add digits\n"
    unknown = renderctl("cancel", "--yes", "abcf")
    assert unknown.exit_code == 1 and unknown.stderr == "error: none of your jobs has an id starting with abcf\n"
    short = renderctl("logs", "abc")
    assert short.exit_code == 1 and "is not a job id" in short.stderr
    assert not any("cancel" in p for p in FakeApi.paths)


def test_errors_print_the_apis_message_literally_on_one_line(renderctl):
    missing = renderctl("status", "f" * 32)
    assert missing.exit_code == 1 and missing.stderr == "error: No such [job].\n"


def test_list_prints_whole_ids_in_a_narrow_terminal_and_takes_any_case_of_a_state(renderctl):
    FakeApi.jobs = [job(A), job(B, "CANCELLED")]
    listed = renderctl("list", "--status", "cancelled")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ID", B]
    assert lines[1].split()[1:] == ["CANCELLED", "2/2", "normal", "2026-11-30", "13:35", "[bold]shot[/bold]"]
    assert "status=CANCELLED" in FakeApi.paths[-1]
    assert renderctl("list", "--status", "queued").stdout == "No jobs.\n"
    short = renderctl("list", "--status", "failed").stdout  # a page that found none yet has more below
    assert short == "No jobs among those this page read.\nmore: renderctl list --cursor 0\n"


def test_logs_print_what_the_renderer_wrote_verbatim(renderctl):
    FakeApi.jobs = [job(A)]
    logs = renderctl("logs", A, "--chunk", "0")
    assert logs.exit_code == 0, logs.output
    assert logs.stdout == "--- chunk 0\nFra:1 [red]Sample[/red] 1/4\n"


def test_submit_sends_a_frame_list_that_replaces_a_job_files_range_and_status_shows_it(renderctl, tmp_path):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"scene": "s", "width": 64, "height": 64, "frame_start": 1, "frame_end": 9}))
    submitted = renderctl("submit", str(job_file), "--frames", "1-100x2,150")
    assert submitted.exit_code == 0, submitted.output
    assert FakeApi.posted == [{"scene": "s", "width": 64, "height": 64, "frames": "1-100x2,150"}]
    assert "(2 frames: 1-100x2,150)" in submitted.stderr and submitted.stdout == f"{A}\n"
    shown = renderctl("status", A)
    assert shown.stdout.splitlines()[1] == "  frames 1-100x2,150"
    job_file.write_text(json.dumps({"scene": "s", "width": 64, "height": 64, "frames": "3,5"}))
    assert renderctl("submit", str(job_file), "--start", "2", "--end", "4").exit_code == 0
    assert FakeApi.posted[-1] == {"scene": "s", "width": 64, "height": 64, "frame_start": 2, "frame_end": 4}


def test_submit_quote_waits_for_the_scout_and_prints_one_line_of_estimate(renderctl):
    quoted = renderctl("submit", "--name", "s", "--width", "64", "--height", "64", "--end", "24", "--quote")
    assert quoted.exit_code == 0, quoted.output
    assert FakeApi.posted == [{"scene": "s", "width": 64, "height": 64, "frame_end": 24}]
    assert quoted.stdout == (
        "quote: 24 frames in 6 chunks: 45s of worker time, 22s wall on 2 worker(s), $0.00 "
        "(1 s a frame, 3.5 s start-up a chunk)\n"
    )
    assert f"scout job {C} renders frames 1,13,24" in quoted.stderr
    as_json = renderctl("submit", "--name", "s", "--width", "64", "--height", "64", "--quote", "--json")
    assert json.loads(as_json.stdout) == QUOTE


def test_usage_prints_the_months_spend_and_budget(renderctl):
    shown = renderctl("usage")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "2026-12: $0.20 spent (1h02m of worker time), budget $50.00, $49.80 left\n"
    assert json.loads(renderctl("usage", "--json").stdout) == USAGE
