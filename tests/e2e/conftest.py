"""End-to-end fixtures: real `celery worker` and gunicorn processes on fresh resources in the session emulator."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobs.devstack.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


# How often the tests look (mostly an API request: its CPU in the API, the emulator and the test, ~20 ms, is
# what the whole run is short of on 2 cores; at 0.2 s, polling took about a tenth of it).
POLL_SECONDS = 0.5


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
    return value


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
            time.sleep(POLL_SECONDS)

    def wait_for_status(self, job_id: str, *statuses: str, timeout: float = 60) -> dict:
        return self.wait_for(job_id, lambda j: j["status"] in statuses, timeout)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def completions(self, job_id: str, *names: str, settle: float = 1.0) -> int:
        """How many times the workers `names` logged the job's completion, read once one of them has (a worker
        logs it just after the write the API shows, so a read at COMPLETED can be early) and `settle` seconds
        later (a second completion would show by then)."""
        line = f"job_completed job={job_id}"

        def logs() -> str:
            return "".join(self.log(n) for n in names if (self.log_dir / f"{n}.log").exists())

        wait_until(lambda: line in logs(), 10, f"{line!r} in the logs of {', '.join(names)}")
        time.sleep(settle)
        return logs().count(line)

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


@contextlib.contextmanager
def stack_factory(emulator, log_root: Path) -> Iterator:
    """Yields `make(**env)`, which builds a stack on fresh resource names (so no stray message from another
    test reaches its workers); every stack made is stopped on exit."""
    stacks: list[E2EStack] = []

    def make(*, api: bool = True, **env: str) -> E2EStack:
        suffix = uuid.uuid4().hex[:8]
        stack = E2EStack(log_dir=log_root / f"logs-{suffix}")
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
        _, key = stack.manage_all(["bootstrap_aws"], ["create_api_key", "--owner", "e2e", "--allow-high"])
        stack.key = key.strip()
        if api:
            stack.api = stack.start_api(workers=1, threads=4)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop_all()


@pytest.fixture
def make_stack(emulator, tmp_path: Path):
    """Stacks for one test."""
    with stack_factory(emulator, tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_stack(emulator, tmp_path_factory):
    """Stacks shared by the tests of one module (each test leaves no job running)."""
    with stack_factory(emulator, tmp_path_factory.mktemp("stacks")) as make:
        yield make


@contextlib.contextmanager
def passable_directory(prefix: str = "render-cache-") -> Iterator[Path]:
    """A worker's scene cache directory that a sandboxed render's own uid can pass through (o+x on the way),
    as RENDER_BLENDER_CACHE_DIR's default (under /tmp) is; pytest's tmp_path is under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)  # noqa: S103 (passable, not listable)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def render_cache():
    with passable_directory() as path:
        yield path


SIDECAR_SLOTS = 4


class Sidecar:
    """The render sandbox's sidecar daemon as a real process (jobs/sandbox/sidecar.py), stopped by its pid."""

    def __init__(self, *, root: Path, socket_path: Path, program: str, env: dict[str, str] | None = None):
        from jobs.sandbox import SandboxUnavailable
        from jobs.sandbox.client import SidecarSandbox

        self.root, self.socket_path = root, socket_path
        # uids of its own: sidecars of tests running at once (xdist) must not kill each other's renders
        self.uids = range(base := 20000 + secrets.randbelow(4000) * 10, base + SIDECAR_SLOTS)
        argv = [sys.executable, "-m", "jobs.sandbox.sidecar", "--socket", str(socket_path), "--root", str(root)]
        argv += ["--program", program, "--uid-base", str(base), "--slots", str(SIDECAR_SLOTS), "--worker-gid", "0"]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.client = SidecarSandbox(socket_path=str(socket_path))
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.check()
                return
            except SandboxUnavailable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the sidecar did not start: {self.output()}") from None
                time.sleep(0.05)

    def output(self) -> str:
        return self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def start_sidecar():
    """Start sidecars (root only: the daemon switches each run to a uid of its own; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("the sandbox sidecar starts as root (CI runs as root); skipped for a non-root run")
    started: list[Sidecar] = []

    def start(**kwargs) -> Sidecar:
        started.append(Sidecar(**kwargs))
        return started[-1]

    yield start
    for sidecar in started:
        sidecar.stop()
