"""A worker whose configuration cannot work refuses to start with one clear line (no messages taken)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_with_a_renderer_that_cannot_be_loaded_refuses_to_start():
    env = {**os.environ, "RENDER_RENDERER": "some.module:NoSuchClass"}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "renderproject", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "render worker refuses to start: RENDER_RENDERER cannot be loaded" in proc.stderr
    assert "Traceback" not in proc.stderr
