"""The worker's side of the sandbox sidecar (RENDER_SANDBOX=sidecar; protocol in jobs/sandbox/sidecar.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

from jobs.sandbox import SCENE_NAME, Limits, SandboxUnavailable
from jobs.sandbox.unconfined import link_scene

CONNECT_SECONDS = 10.0


class SidecarSandbox:
    """Runs Blender (or `program`, another the sidecar offers: ffmpeg) through the sidecar of this task; the
    scratch directory must be under the sidecar's root."""

    name = "sidecar"

    def __init__(self, *, socket_path: str, program: str = "blender"):
        self.socket_path = socket_path
        self.program = program

    def workdir(self, scratch: Path) -> str:
        return str(scratch)  # the volume is mounted at the same path in both containers

    def start(
        self,
        args: list[str],
        *,
        scratch: Path,
        scene: Path | None,
        env: dict[str, str],
        limits: Limits,
        stdin: bool = False,
    ) -> SidecarProcess:
        if scene is not None:
            link_scene(scene, scratch / SCENE_NAME)
        request = {"args": args, "scratch": str(scratch), "env": env, "limits": limits.as_dict()}
        if stdin:
            request["stdin"] = True
        if self.program != "blender":
            request["program"] = self.program
        conn = self._connect()
        try:
            conn.sendall(json.dumps(request).encode() + b"\n")
            reader = conn.makefile("rb")
            first = _message(reader.readline())
        except OSError as exc:
            conn.close()
            raise SandboxUnavailable(f"the render sandbox hung up: {exc}") from None
        if "started" not in first:
            conn.close()
            raise SandboxUnavailable(f"the render sandbox refused the run: {first.get('error', first)}")
        return SidecarProcess(conn, reader)

    def check(self) -> None:
        """Raises SandboxUnavailable unless the sidecar answers (its container's health check)."""
        with contextlib.closing(self._connect()) as conn:
            conn.sendall(b'{"ping": true}\n')
            if "pong" not in _message(conn.makefile("rb").readline()):
                raise SandboxUnavailable("the render sandbox did not answer")

    def _connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(CONNECT_SECONDS)
        try:
            conn.connect(self.socket_path)
        except OSError as exc:
            conn.close()
            raise SandboxUnavailable(f"the render sandbox is not reachable at {self.socket_path}: {exc}") from None
        conn.settimeout(None)
        return conn


class SidecarProcess:
    """A run in the sidecar: output lines as they come; closing the connection kills it."""

    def __init__(self, conn: socket.socket, reader):
        self._conn = conn
        self._reader = reader
        self._status: int | None = None
        self._ended = threading.Event()

    def readline(self) -> bytes:
        if self._ended.is_set():
            return b""
        try:
            raw = self._reader.readline()
        except (OSError, ValueError):  # killed: the connection is shut
            raw = b""
        message = _message(raw) if raw else {}
        if "out" in message:
            return str(message["out"]).encode() + b"\n"
        self._status = int(message["exit"]) if "exit" in message else -9
        self._ended.set()
        return b""

    def send(self, line: str) -> None:
        """One line to the program's input, through the sidecar (`{"in": ...}`), which never blocks on it."""
        if self._ended.is_set():
            raise BrokenPipeError("the sandboxed run has ended")
        self._conn.sendall(json.dumps({"in": line}).encode() + b"\n")

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise TimeoutError("the sandboxed run has not ended")
        assert self._status is not None
        return self._status

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
        self._conn.close()


def _message(raw: bytes) -> dict:
    try:
        message = json.loads(raw)
    except ValueError:
        return {"error": "the render sandbox sent something that is not JSON"}
    return message if isinstance(message, dict) else {}
