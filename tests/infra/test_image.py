"""The one container image: Dockerfile lint, and its entry point's commands run directly (no Docker engine here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from jobs.devstack.stack import ENTRYPOINT, ROOT, Stack, free_port, wait_for_http

DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET = "x" * 50
BIN = Path(sys.executable).parent


def test_hadolint_is_clean():
    result = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_image_shape_multi_stage_slim_non_root_pinned_with_healthcheck():
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", DOCKERFILE, re.M)
    assert stages == [
        ("python:3.11-slim-bookworm", "build"),
        ("python:3.11-slim-bookworm", "api"),
        ("api", "worker"),
    ]
    code = "\n".join(line for line in DOCKERFILE.splitlines() if not line.startswith("#"))
    api, worker = code.split("\nFROM ")[2:]
    assert not re.search(r"apt-get|build-essential|gcc|blender", api), "the API image: no compilers, no Blender"
    # The worker image adds Debian's blender and ffmpeg (pinned) and nothing else, and drops back to the same user.
    assert re.search(r"install -y --no-install-recommends blender=[\w.+~-]+ \\$", worker, re.M)
    assert re.search(r"^\s+ffmpeg=[\w.:*+~-]+ \\$", worker, re.M)
    assert not re.search(r"build-essential|gcc", worker)
    assert re.search(r"^USER 10001:10001$", worker, re.M) and 'CMD ["worker"]' in worker
    final = api
    assert "pip install --no-compile -r /tmp/requirements.txt" in DOCKERFILE
    assert all(
        "==" in line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "HEALTHCHECK" in final and '"jobs.worker.healthcheck"' in final
    assert 'ENTRYPOINT ["/app/bin/entrypoint"]' in final and 'CMD ["api"]' in final
    # The code is root's (no --chown): the app's user cannot rewrite what later processes run.
    assert not re.search(r"^COPY --chown", api, re.M) and "COPY jobs ./jobs" in api
    assert 'VOLUME ["/tmp"]' in api and 'VOLUME ["/sandbox"]' in worker  # read-only roots: task volumes
    assert "chown 10001:10001 /sandbox" in worker and "chmod 0711 /sandbox" in worker
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests", "cdk.out", "node_modules"} <= set(ignored)


def build_only_secret() -> str:
    """The throwaway key the Dockerfile's collectstatic step passes (on that RUN line only)."""
    (key,) = re.findall(r"DJANGO_SECRET_KEY=(\S+)", DOCKERFILE)
    return key


def test_collectstatic_as_the_image_runs_it(tmp_path):
    (run,) = [line for line in DOCKERFILE.split("\nRUN ") if "DJANGO_SECRET_KEY=" in line]
    assert "manage.py collectstatic" in run and "ENV DJANGO_SECRET_KEY" not in DOCKERFILE  # never kept in the image
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": build_only_secret(),
        "RENDER_ENV": "production",
        "DJANGO_STATIC_ROOT": str(tmp_path),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    assert (tmp_path / "rest_framework").is_dir() and (tmp_path / "drf_spectacular_sidecar").is_dir()
    assert (tmp_path / "api" / "swagger_ui.css").is_file()  # the docs page's styles, now a file


def test_the_dockerfiles_build_only_secret_is_the_one_settings_refuse_at_run_time():
    from django.conf import settings

    assert build_only_secret() == settings.BUILD_SECRET_KEY
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {
        **clean,
        "PATH": f"{BIN}:{clean['PATH']}",
        "RENDER_ENV": "production",
        "DJANGO_SECRET_KEY": build_only_secret(),
        "RENDER_API_BIND": f"127.0.0.1:{free_port()}",
    }
    for command in (["manage", "check"], ["api"]):  # the API stops at start (a gunicorn that served would time out)
        result = subprocess.run(
            [str(ENTRYPOINT), *command], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode != 0 and "build-only key" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": SECRET}, "DJANGO_DEBUG"),
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": SECRET, "DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS"),
    ],
)
def test_production_settings_refuse_unsafe_values(env, message):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    result = subprocess.run(
        [str(ENTRYPOINT), "manage", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, "PATH": f"{BIN}:{clean['PATH']}", "RENDER_ENV": "production", **env},
    )
    assert result.returncode != 0 and message in result.stderr


def test_unknown_role_is_a_usage_error():
    result = subprocess.run([str(ENTRYPOINT), "shell"], capture_output=True, text=True)
    assert result.returncode == 64 and "usage" in result.stderr


def test_api_command_serves_healthz_behind_a_load_balancer(emulator, tmp_path):
    stack = Stack(log_dir=tmp_path)
    stack.env.update(emulator.env)
    port = free_port()
    stack.env.update(
        {
            "RENDER_ENV": "production",
            "DJANGO_SECRET_KEY": SECRET,
            "DJANGO_ALLOWED_HOSTS": "render.example.com",
            "RENDER_API_BIND": f"127.0.0.1:{port}",
        }
    )
    try:
        stack._spawn("api", [str(ENTRYPOINT), "api"])
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz")
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}  # Host is an IP: still 200
        wrong_host = requests.get(f"{base}/api/jobs", timeout=5)
        assert wrong_host.status_code == 400 and wrong_host.json()["error"]["code"] == "bad_request"
        behind_alb = {"Host": "render.example.com", "X-Forwarded-Proto": "https"}
        assert requests.get(f"{base}/api/jobs", headers=behind_alb, timeout=5).status_code == 401
        key = stack.create_api_key("prod-check")
        created = requests.post(
            f"{base}/api/jobs",
            json={"scene": "s", "width": 64, "height": 64},
            headers={**behind_alb, "Authorization": f"Bearer {key}"},
            timeout=10,
        )
        # The load balancer's X-Forwarded-Proto is trusted: links are https, on the configured host.
        assert created.status_code == 201 and created.headers["Location"].startswith("https://render.example.com/")
        check = subprocess.run(
            [sys.executable, "-m", "jobs.worker.healthcheck"],
            cwd=ROOT,
            env={**stack.merged_env(), "RENDER_ROLE": "api"},
        )
        assert check.returncode == 0
    finally:
        stack.stop_all()
    check = subprocess.run(
        [sys.executable, "-m", "jobs.worker.healthcheck"], cwd=ROOT, env={**stack.merged_env(), "RENDER_ROLE": "api"}
    )
    assert check.returncode == 1


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (CI installs it)")
def test_the_api_and_the_worker_run_on_a_read_only_root_with_a_writable_tmp(emulator, tmp_path):
    """As the task definitions run them (ReadonlyRootFilesystem, a /tmp volume): here a bubblewrap view of this
    machine, read-only but for a fresh /tmp, with the network shared so the emulator answers."""
    port = free_port()
    stack = Stack(log_dir=tmp_path)
    stack.env.update(emulator.env)
    stack.env.update(
        {
            "RENDER_ENV": "production",
            "DJANGO_SECRET_KEY": SECRET,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "RENDER_API_BIND": f"127.0.0.1:{port}",
            "PYTHONDONTWRITEBYTECODE": "1",  # as the image sets it
            "RENDER_LIVENESS_FILE": "/tmp/worker-alive",
        }
    )
    view = ["bwrap", "--ro-bind", "/", "/", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", "--die-with-parent"]
    try:
        stack._spawn("api", [*view, str(ENTRYPOINT), "api"])
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert requests.get(f"http://127.0.0.1:{port}/api/docs", timeout=10).status_code == 200
        worker = stack._spawn("worker", [*view, str(ENTRYPOINT), "worker", "--concurrency", "1"])
        deadline = time.monotonic() + 60
        while " ready." not in (tmp_path / "worker.log").read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
    finally:
        stack.stop_all()
    for name in ("api", "worker"):
        assert "Read-only file system" not in (tmp_path / f"{name}.log").read_text(errors="replace"), name
