"""A worker whose configuration cannot work refuses to start with one clear line (no messages taken)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(renderer: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RENDER_RENDERER": renderer}
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "renderproject", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_worker_with_a_renderer_that_cannot_be_loaded_refuses_to_start():
    proc = start_worker("some.module:NoSuchClass")
    assert proc.returncode != 0
    assert "render worker refuses to start: RENDER_RENDERER cannot be loaded" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_worker_whose_renderer_class_is_no_renderer_refuses_to_start_in_one_line():
    proc = start_worker("tests.support.renderers:NotARenderer")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "render worker refuses to start: RENDER_RENDERER cannot be loaded (tests.support.renderers:NotARenderer "
        "has neither render_chunk(job, frames, ...) (jobs.ports.Renderer) nor render(job, frame))"
    ]
