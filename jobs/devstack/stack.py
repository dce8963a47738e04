"""Starts and stops the local system's processes: emulator, worker(s), webhook worker, API. Used by devstack, tests
and bench."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "bin" / "entrypoint"  # the image's entry point: the same commands run here and in AWS
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def emulator_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        **EMULATOR_CREDENTIALS,
    }


@dataclass
class Stack:
    """A set of child processes sharing one environment; each starts in its own process group."""

    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    log_dir: Path | None = None

    def merged_env(self) -> dict[str, str]:
        # The entry point runs gunicorn and celery by name: put this interpreter's scripts first on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "DJANGO_SETTINGS_MODULE": "renderproject.settings", **self.env}

    def manage(self, *args: str) -> str:
        """Run a management command in this stack's environment; returns its stdout."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.merged_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def manage_all(self, *commands: list[str]) -> list[str]:
        """Run management commands one after another in one process (Django starts once, about a second of
        CPU saved a command); their stdouts."""
        code = (
            "import io, json, sys, django; django.setup(); from django.core.management import call_command\n"
            "outs = []\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    out = io.StringIO(); call_command(*argv, stdout=out); outs.append(out.getvalue())\n"
            "print(json.dumps(outs))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(commands)],
            cwd=ROOT,
            env=self.merged_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def create_api_key(self, owner: str, *flags: str) -> str:
        """A key for `owner` (flags such as --allow-high pass through to create_api_key)."""
        return self.manage("create_api_key", "--owner", owner, *flags).strip()

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**self.merged_env(), **(extra_env or {})}
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        self.processes[name] = proc
        return proc

    def start_emulator(self, port: int | None = None, *, latency: str = "") -> str:
        """The emulator on `port` (a free one by default); `latency` like `dynamodb=5,sqs=10` (milliseconds)."""
        port = port or free_port()
        argv = [sys.executable, "-m", "jobs.devstack.emulator", "--port", str(port)]
        proc = self._spawn("emulator", [*argv, "--latency", latency] if latency else argv)
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/_emulator/health", process=proc)
        self.env.update(emulator_env(endpoint))
        return endpoint

    def bootstrap(self) -> None:
        self.manage("bootstrap_aws")

    def start_worker(
        self,
        name: str = "worker",
        *,
        concurrency: int = 1,
        queues: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        argv = [str(ENTRYPOINT), "worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
        if queues:
            argv += ["-Q", ",".join(queues)]
        liveness = {"RENDER_LIVENESS_FILE": str((self.log_dir or ROOT / ".devstack") / f"{name}.alive")}
        return self._spawn(name, argv, {**liveness, **(extra_env or {})})

    def start_webhook_worker(
        self, name: str = "webhooks", *, concurrency: int = 2, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """A worker of webhook deliveries only (`entrypoint webhooks`: the webhook queue, a prefork pool)."""
        argv = [str(ENTRYPOINT), "webhooks", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
        liveness = {"RENDER_LIVENESS_FILE": str((self.log_dir or ROOT / ".devstack") / f"{name}.alive")}
        return self._spawn(name, argv, {**liveness, **(extra_env or {})})

    def start_api(self, port: int | None = None, *, workers: int = 2, threads: int = 4) -> str:
        port = port or free_port()
        proc = self._spawn(
            "api",
            [str(ENTRYPOINT), "api"],
            {
                "RENDER_API_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": str(workers),
                "GUNICORN_THREADS": str(threads),
            },
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", process=proc)
        return url

    def start_sweeper(self, every_seconds: int = 60) -> subprocess.Popen:
        """The sweeper on a loop, as the schedule runs it in AWS."""
        return self._spawn("sweeper", [str(ENTRYPOINT), "sweep", "--loop", str(every_seconds)])

    def emulator_counts(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.env['AWS_ENDPOINT_URL']}/_emulator/requests", timeout=5) as resp:
            return json.load(resp)["requests"]

    def reset_emulator_counts(self) -> None:
        req = urllib.request.Request(f"{self.env['AWS_ENDPOINT_URL']}/_emulator/requests/reset", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0, *, group: bool = True) -> int | None:
        """Signal a process (its whole group by default) and wait; SIGKILL the group if it outlives the timeout.

        `group=False` signals the main process alone, as `docker stop` / ECS do with a container's PID 1.
        """
        proc = self.processes.pop(name, None)
        if proc is None:
            return None
        try:
            (os.killpg if group else os.kill)(proc.pid, sig)
            return proc.wait(timeout=timeout)
        except ProcessLookupError:
            return proc.wait()
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in [n for n in self.processes if n != "emulator"]:
            self.stop(name)
        self.stop("emulator")
