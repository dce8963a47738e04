"""`make worker`: a worker started from another terminal joins the running local stack, renders, and stops with it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs.devstack import envfile
from jobs.devstack.stack import EMULATOR_CREDENTIALS, ROOT

pytestmark = pytest.mark.e2e


def test_a_worker_started_from_another_terminal_joins_the_stack_renders_and_stops_with_it(make_stack, tmp_path):
    stack = make_stack()  # the API and the resources, but no worker of its own
    env_file = tmp_path / "devstack" / "env"
    values = envfile.stack_values(
        {},
        endpoint=stack.env["AWS_ENDPOINT_URL"],
        credentials=EMULATOR_CREDENTIALS,
        table=stack.env["RENDER_TABLE_NAME"],
        bucket=stack.env["RENDER_BUCKET_NAME"],
        queue_prefix=stack.env["RENDER_QUEUE_PREFIX"],
    )
    envfile.write(env_file, values, pid=os.getpid())  # this test process stands for `make run`
    # A second terminal: no venv on PATH, no stack settings, credentials that must not be used.
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENDER_", "CELERY_", "DJANGO_"))}
    shell.update(
        {
            "PATH": "/usr/bin:/bin",
            "RENDER_DEVSTACK_ENV": str(env_file),
            "AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY00",
            "AWS_SECRET_ACCESS_KEY": "real-looking-secret",
            "RENDER_SIMULATED_SECONDS": "0.1",  # settings other than the stack's pass through
            "RENDER_SQS_WAIT_SECONDS": "2",
        }
    )
    log = tmp_path / "joined.log"
    with log.open("wb") as out:
        joined = subprocess.Popen(  # what `make worker CONCURRENCY=2` runs
            [sys.executable, "manage.py", "devstack_worker", "--concurrency", "2"],
            cwd=ROOT,
            env=shell,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        job = stack.submit(frame_start=1, frame_end=6, chunk_size=2)
        done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=90)
        assert done["status"] == "COMPLETED", log.read_text()
        text = log.read_text()
        assert "Worker joined-" in text and " ready." in text and "concurrency: 2 (prefork)" in text

        envfile.remove(env_file, pid=os.getpid())  # as `make run` does when it stops
        assert joined.wait(timeout=45) == 0, log.read_text()
        text = log.read_text()
        assert "The local stack stopped; stopping this worker." in text and "Traceback" not in text
        assert not list(env_file.parent.glob("*.alive"))
    finally:
        if joined.poll() is None:
            os.killpg(joined.pid, 9)
            joined.wait()
