"""Runs an untrusted program (Blender on a customer's scene file) confined: what it sees, writes and reaches.
The same sandboxes run ffmpeg on a job's frames for its encode step (a sandbox per program: `program`).

Three sandboxes keep one contract (`Sandbox`): the program runs in a scratch directory of its own (its only
writable place, `workdir()` inside), reads the scene file (if it is given one) at `<workdir>/scene.blend`, gets only the
environment and arguments it is given (the farm's setup script travels as an argument: no file of the
worker's needs to be visible), and is killed as a whole by `kill()`.

- `bwrap` (bubblewrap, jobs/sandbox/bubblewrap.py): new user, PID, IPC, UTS, cgroup and network namespaces;
  a read-only view of /usr and a few /etc files; the scratch directory at /work; an unprivileged uid of its
  own when the worker is root. Where user namespaces exist (laptops, CI, EC2 hosts).
- `sidecar` (jobs/sandbox/client.py -> jobs/sandbox/sidecar.py): for ECS Fargate, which allows no user
  namespaces. A second container of the worker's task (its own PID namespace, read-only root filesystem,
  no application secrets) runs the program under a uid of its own per slot with a seccomp filter that
  refuses every socket; the worker hands it the scratch directory on a volume both containers mount.
- `none`: no confinement (local benchmarks only; refused in production).

Every sandbox applies the same resource limits (`Limits`): address space, file size, processes (where the
program has a uid of its own), CPU seconds, open files, no core dumps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SCENE_NAME = "scene.blend"  # where the scene file appears in the work directory, read-only
KINDS = ("bwrap", "sidecar", "none")


class SandboxUnavailable(OSError):
    """The sandbox cannot run here (not installed, no namespaces, no sidecar): a fault of the worker, not the
    scene. The message says what is missing, for an operator."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (setrlimit); 0 leaves that one unlimited."""

    memory_bytes: int = 0  # RLIMIT_AS
    file_bytes: int = 0  # RLIMIT_FSIZE: the largest file the program may write
    processes: int = 0  # RLIMIT_NPROC: counted per uid, so only set where the program has a uid of its own
    cpu_seconds: int = 0  # RLIMIT_CPU
    open_files: int = 1024  # RLIMIT_NOFILE

    def as_dict(self) -> dict[str, int]:
        return {
            "memory_bytes": self.memory_bytes,
            "file_bytes": self.file_bytes,
            "processes": self.processes,
            "cpu_seconds": self.cpu_seconds,
            "open_files": self.open_files,
        }


class SandboxedProcess(Protocol):
    """A running confined program: its output (stdout and stderr merged) line by line, and its end."""

    def readline(self) -> bytes:
        """The next line of output, b"" once it has ended (blocks until then)."""
        ...

    def kill(self) -> None:
        """Kill the program and everything it started (idempotent)."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status (negative: killed by that signal); raises TimeoutError past `timeout`."""
        ...

    def send(self, line: str) -> None:
        """Write one line to the program's input (only when started with `stdin=True`); OSError if it cannot
        take it now (ended, or its input is full: never blocks)."""
        ...

    def close(self) -> None: ...


class Sandbox(Protocol):
    name: str

    def workdir(self, scratch: Path) -> str:
        """Where the scratch directory appears to the program."""
        ...

    def check(self) -> object:
        """Raises SandboxUnavailable, saying what is missing, unless a run could start here now."""
        ...

    def start(
        self,
        args: list[str],
        *,
        scratch: Path,
        scene: Path | None,
        env: dict[str, str],
        limits: Limits,
        stdin: bool = False,
    ) -> SandboxedProcess:
        """Start the sandbox's program (Blender, or ffmpeg) with `args`, confined, in `scratch` (made by the
        caller, removed by the caller after `kill()`), with `scene` (if any) readable at `<workdir>/scene.blend`
        and only `env` as its environment; with `stdin`, an input pipe from the worker (`send`: a persistent
        Blender's commands), else none. Raises SandboxUnavailable when it cannot run here."""
        ...
