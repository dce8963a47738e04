"""End-to-end fixtures: real `celery worker` and gunicorn processes on fresh resources in the session emulator."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from jobs.devstack.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


class E2EStack(Stack):
    """A Stack on its own table, queues and bucket, with helpers for driving the API."""

    api: str = ""
    key: str = ""

    def send_chunk_message(self, job_id: str, index: int | None, attempt: int) -> None:
        """Publish a chunk message through the project's own queue adapter, as a duplicate delivery would look."""
        code = (
            "import sys, django; django.setup(); from jobs import wiring; from jobs.domain import Priority;"
            " wiring.task_queue().enqueue_chunk(job_id=sys.argv[1], index=None if sys.argv[2] == '-' else"
            " int(sys.argv[2]), attempt=int(sys.argv[3]), priority=Priority.NORMAL)"
        )
        argv = [sys.executable, "-c", code, job_id, "-" if index is None else str(index), str(attempt)]
        subprocess.run(argv, cwd=ROOT, env=self.merged_env(), check=True)

    def submit(self, **body) -> dict:
        payload = {"scene": "e2e", "width": 320, "height": 180, **body}
        resp = requests.post(f"{self.api}/api/jobs", json=payload, headers=self.auth(), timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def job(self, job_id: str) -> dict:
        resp = requests.get(f"{self.api}/api/jobs/{job_id}", headers=self.auth(), timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_for(self, job_id: str, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; job is {job['status']}: {job}")
            time.sleep(0.2)

    def wait_for_status(self, job_id: str, *statuses: str, timeout: float = 60) -> dict:
        return self.wait_for(job_id, lambda j: j["status"] in statuses, timeout)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def start_ready_worker(self, name: str = "worker", timeout: float = 30, **kwargs):
        return self.wait_ready(self.start_worker(name, **kwargs), name, timeout)

    def start_ready_webhook_worker(self, name: str = "webhooks", timeout: float = 30, **kwargs):
        """A webhook worker (`entrypoint webhooks`), once it consumes: render workers never take deliveries."""
        return self.wait_ready(self.start_webhook_worker(name, **kwargs), name, timeout)

    def wait_ready(self, proc, name: str, timeout: float = 30):
        """`proc` (a worker started as `name`) once it consumes; workers started together start in parallel."""
        path = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while not (path.exists() and " ready." in path.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{self.log(name)}")
            time.sleep(0.1)
        return proc


@pytest.fixture
def make_stack(emulator, tmp_path: Path):
    """Build stacks on fresh resource names (so no stray message from another test reaches these workers)."""
    stacks: list[E2EStack] = []

    def make(*, api: bool = True, **env: str) -> E2EStack:
        suffix = uuid.uuid4().hex[:8]
        stack = E2EStack(log_dir=tmp_path / f"logs-{suffix}")
        stack.env.update(emulator.env)
        stack.env.update(
            {
                "RENDER_TABLE_NAME": f"e2e-{suffix}",
                "RENDER_BUCKET_NAME": f"e2e-{suffix}",
                "RENDER_QUEUE_PREFIX": f"e2e-{suffix}-",
                "RENDER_SIMULATED_SECONDS": "0",
                "RENDER_SQS_WAIT_SECONDS": "2",
                **env,
            }
        )
        stacks.append(stack)
        stack.bootstrap()
        stack.key = stack.create_api_key("e2e", "--allow-high")
        if api:
            stack.api = stack.start_api(workers=1, threads=4)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()
