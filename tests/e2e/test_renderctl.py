"""renderctl end to end: the command line (this checkout's code) against a real API, workers and the emulator's S3."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.devstack.stack import ROOT

pytestmark = pytest.mark.e2e

# What the console script runs (renderctl.cli:main), from this checkout: .venv's script may be another's.
RENDERCTL = [sys.executable, "-m", "renderctl"]


def run_renderctl(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RENDERCTL, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def renderctl(tmp_path):
    def run(
        stack, *args: str, key: str | None = None, timeout: float = 120, columns: int = 200
    ) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "RENDERCTL_CONFIG": str(tmp_path / "renderctl.json"),
            "RENDER_API_URL": stack.api,
            "RENDER_API_KEY": stack.key if key is None else key,
            "COLUMNS": str(columns),
        }
        return run_renderctl(*args, env=env, timeout=timeout)

    return run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_submit_a_job_file_wait_and_download_verified_then_resume(make_stack, renderctl, tmp_path):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.1")
    stack.start_ready_worker("w1")
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"scene": "cli shot", "width": 160, "height": 90, "frame_end": 9, "chunk_size": 3}))
    frames = tmp_path / "frames"
    done = renderctl(stack, "submit", str(job_file), "--wait", "--download", str(frames), "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED" and job["scene"]["name"] == "cli shot" and job["progress"]["frames_total"] == 9
    manifest = json.loads((frames / "manifest.json").read_text())
    files = {Path(f["key"]).name: f["sha256"] for f in manifest["frames"]}
    assert len(files) == 9 and all(sha256(frames / name) == digest for name, digest in files.items())

    # An interrupted download: one file missing, one truncated, a stray .part; the rerun fixes only those.
    names = sorted(files)
    (frames / names[0]).unlink()
    (frames / names[1]).write_bytes(b"half")
    (frames / (names[2] + ".part")).write_bytes(b"junk")
    again = renderctl(stack, "download", job["id"], str(frames))
    assert again.returncode == 0, again.stderr
    assert "2 downloaded, 7 already there" in again.stderr
    assert all(sha256(frames / name) == digest for name, digest in files.items())
    assert not list(frames.glob("*.part"))

    status = renderctl(stack, "status", job["id"])
    assert status.returncode == 0 and "COMPLETED" in status.stdout and "9/9 frames" in status.stdout
    listing = renderctl(stack, "list", "--status", "COMPLETED")
    assert listing.returncode == 0 and job["id"] in listing.stdout
    logs = renderctl(stack, "logs", job["id"])
    assert logs.returncode == 0 and "no render log" in logs.stderr


def test_submit_frames_renders_and_downloads_only_the_listed_frames(make_stack, renderctl, tmp_path):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.05")
    stack.start_ready_worker("w1")
    frames = tmp_path / "frames"
    shot = ["--name", "listed", "--width", "64", "--height", "64", "--chunk-size", "2"]
    done = renderctl(stack, "submit", *shot, "--frames", "1-7x3,10", "--wait", "--download", str(frames))
    assert done.returncode == 0, done.stderr
    assert "(4 frames: 1-10x3)" in done.stderr
    assert sorted(p.name for p in frames.glob("*.png")) == [f"{n:05d}.png" for n in (1, 4, 7, 10)]
    job_id = done.stdout.split()[0]
    status = renderctl(stack, "status", job_id)
    assert status.returncode == 0 and "  frames 1-10x3\n" in status.stdout and "4/4 frames" in status.stdout
    refused = renderctl(stack, "submit", "--name", "bad", "--width", "64", "--height", "64", "--frames", "1-10,5")
    assert refused.returncode == 1 and refused.stderr.startswith("error: frames: Frame 5 is listed twice")


def test_wait_exit_codes_follow_the_final_state(make_stack, renderctl):
    stack = make_stack(RENDER_SIMULATED_SECONDS="0.5")
    stack.start_ready_worker("w1")
    job_id = renderctl(stack, "submit", "--name", "long", "--width", "64", "--height", "64", "--end", "16").stdout
    job_id = job_id.strip()
    assert len(job_id) == 32
    stack.wait_for(job_id, lambda j: j["progress"]["frames_done"] >= 1)
    cancelled = renderctl(stack, "cancel", job_id, "--yes")
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    waited = renderctl(stack, "wait", job_id, "--interval", "0.3")
    assert waited.returncode == 4 and "CANCELLED" in waited.stdout, waited

    retried = renderctl(stack, "retry", job_id)
    assert retried.returncode == 0 and "QUEUED" in retried.stdout
    completed = renderctl(stack, "wait", job_id, "--interval", "0.3", timeout=180)
    assert completed.returncode == 0 and "COMPLETED" in completed.stdout, completed


def test_a_failed_job_exits_3(make_stack, renderctl):
    stack = make_stack(
        RENDER_RENDERER="tests.support.renderers:AlwaysFails", RENDER_MAX_ATTEMPTS="1", RENDER_RETRY_BACKOFF_SECONDS="1"
    )
    stack.start_ready_worker("w1")
    waited = renderctl(stack, "submit", "--name", "doomed", "--width", "64", "--height", "64", "--wait")
    assert waited.returncode == 3, waited
    assert "FAILED" in waited.stdout and "error:" in waited.stdout


def test_errors_are_the_apis_message_never_a_traceback(make_stack, renderctl, tmp_path):
    stack = make_stack(api=True)
    bad = renderctl(stack, "submit", "--name", "x", "--width", "3", "--height", "64", columns=40)
    assert bad.returncode == 1 and "width" in bad.stderr and "Traceback" not in bad.stderr
    # One line, however narrow the terminal, starting with `error: ` (no markup printed as text).
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1 and "[" not in bad.stderr
    missing = renderctl(stack, "status", "0" * 32)
    assert missing.returncode == 1 and "error:" in missing.stderr and "Traceback" not in missing.stderr
    unknown_key = renderctl(stack, "list", key="rk_" + "A" * 43)
    assert unknown_key.returncode == 1 and "Unknown or revoked API key" in unknown_key.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    refused = renderctl(stack, "submit", str(broken))
    assert refused.returncode == 1 and "not valid JSON" in refused.stderr and "Traceback" not in refused.stderr
    nowhere = run_renderctl(
        "list",
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "RENDERCTL_CONFIG": str(tmp_path / "none.json"),
            "RENDER_API_URL": "http://127.0.0.1:9",
            "RENDER_API_KEY": stack.key,
        },
    )
    assert nowhere.returncode == 1 and "cannot reach the API" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_login_saves_the_key_readable_only_by_its_owner(make_stack, renderctl, tmp_path):
    stack = make_stack()
    config = tmp_path / "cfg" / "renderctl.json"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RENDERCTL_CONFIG": str(config)}
    login = run_renderctl("login", "--url", stack.api, "--key", stack.key, env=env)
    assert login.returncode == 0, login.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"url": stack.api, "key": stack.key}
    listed = run_renderctl("list", env=env)
    assert listed.returncode == 0, listed.stderr
    wrong = run_renderctl(
        "login", "--url", stack.api, "--key", "rk_nope", env={**env, "RENDERCTL_CONFIG": str(tmp_path / "other.json")}
    )
    assert wrong.returncode == 1 and not (tmp_path / "other.json").exists()


def test_logs_list_and_id_prefixes_on_a_job_with_render_logs(make_stack, renderctl):
    stack = make_stack(RENDER_RENDERER="tests.support.renderers:WritesALog")
    stack.start_ready_worker("w1")
    submitted = renderctl(stack, "submit", "--name", "logged", "--width", "64", "--height", "64", "--end", "4",
                          "--chunk-size", "2", "--wait", "--json")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]

    # The log is printed as the renderer wrote it (text in brackets is not markup), chunk by chunk.
    logs = renderctl(stack, "logs", job_id[:8])
    assert logs.returncode == 0 and "Traceback" not in logs.stderr, logs.stderr
    assert "--- chunk 0\nFra:1 [red]Sample 1/1[/red] | Saved frame 1\nFra:2 [red]" in logs.stdout
    assert "--- chunk 1\nFra:3 [red]Sample 1/1[/red] | Saved frame 3\nFra:4 [red]" in logs.stdout

    # In a narrow terminal the listing keeps whole ids (the first column) and any case of a state works.
    listing = renderctl(stack, "list", "--status", "completed", columns=40)
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["ID", job_id]
    assert renderctl(stack, "list", "--status", "Cancelled").stdout == "No jobs.\n"

    shown = renderctl(stack, "status", job_id[:5].upper())
    assert shown.returncode == 0 and shown.stdout.startswith(f"{job_id}  COMPLETED"), shown
    unknown = renderctl(stack, "status", ("0" if job_id[0] != "0" else "1") * 6)
    assert unknown.returncode == 1 and "none of your jobs has an id starting with" in unknown.stderr
    short = renderctl(stack, "logs", job_id[:3])
    assert short.returncode == 1 and "is not a job id" in short.stderr
