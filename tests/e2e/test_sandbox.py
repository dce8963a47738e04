"""The sandboxes hold against code that runs inside them: real bubblewrap, a real sidecar daemon process.

The confined program here is Python running tests/support/escape_probe.py, which tries what a scene file's
code would (the same probe runs inside Blender in test_scene_security.py): read the worker's environment
through /proc, open sockets to the worker's host and the ECS credentials endpoint, write outside its scratch
directory. Each test puts a secret in the environment of the process that starts the sandbox (and of the
sidecar, as ECS injects the credentials URI into every container) and asserts it never reaches the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from jobs.devstack.stack import ROOT
from jobs.sandbox import Limits, SandboxUnavailable
from jobs.sandbox.bubblewrap import BubblewrapSandbox
from tests.support import escape_probe

PROBE = ROOT / "tests" / "support" / "escape_probe.py"
PYTHON = "/usr/bin/python3"  # the system's: the sandboxes show only /usr
SECRET = "canary-9f1c2d7e-the-worker-s-secret"
LIMITS = Limits(memory_bytes=2 << 30, file_bytes=64 << 20, processes=256, cpu_seconds=60)

pytestmark = [pytest.mark.e2e]
if not Path(PYTHON).exists():
    pytest.skip(f"{PYTHON} is needed as the confined program", allow_module_level=True)


def listening_socket():
    """A TCP port on the worker's loopback; the test asserts nothing ever connects to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    yield server
    server.close()


listener = pytest.fixture(name="listener")(listening_socket)


@pytest.fixture
def places(render_cache: Path):
    """The cache root (scratch directories go in it) and a directory outside it that the worker owns."""
    outside = render_cache.parent / f"{render_cache.name}-outside"
    outside.mkdir(mode=0o755)
    yield render_cache, outside
    shutil.rmtree(outside, ignore_errors=True)


def run_probe(sandbox, scratch: Path, scene: Path, config: dict) -> dict:
    """Start the probe in `sandbox` (its source travels as an argument, like Blender's setup script)."""
    process = sandbox.start(
        ["-I", "-c", PROBE.read_text(), json.dumps(config)],
        scratch=scratch,
        scene=scene,
        env={"HOME": sandbox.workdir(scratch), "LANG": "C.UTF-8"},
        limits=LIMITS,
    )
    lines = []
    try:
        while line := process.readline():
            lines.append(line.decode())
        assert process.wait(timeout=30) == 0, lines
    finally:
        process.kill()
        process.close()
    report = next(line for line in lines if line.startswith("HOSTILE_REPORT "))
    return json.loads(report.split(" ", 1)[1])


def assert_contained(report: dict, *, outside: Path, listener: socket.socket) -> None:
    assert SECRET not in json.dumps(report), "the worker's environment reached the sandbox"
    assert report["uid"] != 0
    for name in ("connect_local", "connect_credentials"):
        assert report[name].startswith("refused"), report
    with pytest.raises(TimeoutError):
        listener.accept()
    assert list(outside.iterdir()) == []
    for place in escape_probe.targets(outside)[1:5]:  # /tmp, /var/tmp, /dev/shm, /etc
        assert not os.path.exists(place), f"the probe left {place}"


def scratch_with_scene(root: Path) -> tuple[Path, Path]:
    chunks = root / "chunks"
    chunks.mkdir(mode=0o711, exist_ok=True)
    scene = root / "scene-file"
    scene.write_bytes(b"BLENDER-v300 (stands for the scene)")
    os.chmod(scene, 0o644)
    return Path(tempfile.mkdtemp(dir=chunks)), scene


def test_bubblewrap_holds_code_that_runs_inside_it(places, listener, monkeypatch):
    root, outside = places
    monkeypatch.setenv("RENDER_SECRET_OF_THE_WORKER", SECRET)
    sandbox = BubblewrapSandbox(program=PYTHON)
    try:
        sandbox.check()
    except SandboxUnavailable as exc:
        pytest.skip(f"bubblewrap cannot run here: {exc}")
    scratch, scene = scratch_with_scene(root)
    report = run_probe(sandbox, scratch, scene, {"outside": str(outside), "port": listener.getsockname()[1]})

    assert_contained(report, outside=outside, listener=listener)
    assert len(report["processes"]) <= 3, report["processes"]  # its own PID namespace: bubblewrap's init and itself
    assert report["written"] == [], report["written"]  # nothing but /work is writable, and /work/.. is not
    assert report["outside_listing"].startswith("refused")  # not even visible
    if os.geteuid() == 0:
        assert report["uid"] == sandbox.uid  # a uid of its own, not the worker's


@pytest.fixture
def sidecar(places, tmp_path, start_sidecar):
    """The sidecar with the secret in its environment, as ECS puts the task's credentials URI in every
    container's."""
    root, _ = places
    env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": SECRET}
    return start_sidecar(root=root / "chunks", socket_path=tmp_path / "sandbox.sock", program=PYTHON, env=env)


def test_the_sidecar_holds_code_that_runs_inside_it_without_namespaces(sidecar, places, listener, monkeypatch):
    root, outside = places
    monkeypatch.setenv("RENDER_SECRET_OF_THE_WORKER", SECRET)
    scratch, scene = scratch_with_scene(root)
    report = run_probe(sidecar.client, scratch, scene, {"outside": str(outside), "port": listener.getsockname()[1]})
    # No namespaces here: the host's world-writable /tmp may take a file during the run (in the sidecar's
    # container the root filesystem is read-only); the sidecar removes the run's files, then its scratch
    # directory, once the worker hangs up.
    deadline = time.monotonic() + 30  # the clean-up walks /tmp, which may be large
    while scratch.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scratch.exists()

    assert_contained(report, outside=outside, listener=listener)
    assert report["uid"] in sidecar.uids
    assert report["parent_environ"].startswith("refused") and report["init_environ"].startswith("refused")
    assert report["connect_local"] == "refused: PermissionError"  # the seccomp filter, not a closed port


def test_the_sidecar_kills_a_run_when_the_worker_hangs_up(sidecar, places):
    root, _ = places
    scratch, scene = scratch_with_scene(root)
    # The run is a session leader (the sidecar starts it in a session of its own), so it cannot leave its
    # session; a child of it can: the sidecar must kill that one too (every process of the run's uid).
    escape = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    print('started', flush=True)\ntime.sleep(60)"
    process = sidecar.client.start(
        ["-I", "-c", escape],
        scratch=scratch,
        scene=scene,
        env={"HOME": str(scratch)},
        limits=LIMITS,
    )
    assert process.readline() == b"started\n"
    deadline = time.monotonic() + 5
    while len(pids := [p for p in os.listdir("/proc") if p.isdigit() and _owner(p) in sidecar.uids]) < 2:
        if time.monotonic() > deadline:
            running = _running(b"started")
            sidecar.stop()
            raise AssertionError(
                f"the run and its child should be alive; processes running its script, by uid: {running}, the "
                f"sidecar's uids: {list(sidecar.uids)}; the sidecar's log: {sidecar.output()}"
            )
        time.sleep(0.05)
    process.kill()  # the worker hangs up (as when it dies)
    process.close()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a run outlived its worker's connection"


def test_a_run_ends_with_its_program_and_takes_what_it_left_behind(sidecar, places):
    """A child that left the program's session would hold the run's output open after the program ended:
    the sidecar ends it with the program, so the run reports its exit at once."""
    root, _ = places
    scratch, scene = scratch_with_scene(root)
    left = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\nelse:\n    time.sleep(0.5)"
    )
    process = sidecar.client.start(["-I", "-c", left], scratch=scratch, scene=scene, env={}, limits=LIMITS)
    child = process.readline().decode().strip()
    assert child.isdigit() and _owner(child) in sidecar.uids
    try:
        end = threading.Thread(target=process.readline, daemon=True)  # the end of its output...
        end.start()
        end.join(timeout=10)  # ...comes with the program's (0.5 s), not with the child's sleep (60 s)
        assert not end.is_alive(), "the run went on after its program ended"
        assert process.wait(timeout=1) == 0
    finally:
        process.kill()
        process.close()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "a process the program left behind outlived the run"


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _running(marker: bytes) -> dict[str, int | None]:
    """pid -> owner of every process whose command line holds `marker` (to tell a dead run from a hidden one)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                found[pid] = _owner(pid)
    return found


def _alive(pid: str) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state
