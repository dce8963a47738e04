"""What a confined child does between fork and exec, and the local process handle the sandboxes share.

The child dies with its parent (PR_SET_PDEATHSIG, armed after any uid change, which clears it), runs with
a umask that keeps its files from other users, lowers its resource limits and, where asked, loads the
seccomp filter (no sockets). All of it is resolved before the fork: the child does as little as possible.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
from collections.abc import Callable

from jobs.sandbox import Limits, seccomp

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None

_RLIMITS = (
    ("memory_bytes", resource.RLIMIT_AS),
    ("file_bytes", resource.RLIMIT_FSIZE),
    ("processes", resource.RLIMIT_NPROC),
    ("cpu_seconds", resource.RLIMIT_CPU),
    ("open_files", resource.RLIMIT_NOFILE),
)


def child_setup(*, parent: int, limits: Limits, umask: int = 0o007, no_sockets: bool = False) -> Callable[[], None]:
    """The preexec function of a confined child (subprocess runs it after setgroups/setgid/setuid)."""
    wanted = [(which, getattr(limits, name)) for name, which in _RLIMITS if getattr(limits, name) > 0]
    wanted.append((resource.RLIMIT_CORE, 0))  # a crash dump of the scene's process is nobody's business
    program = seccomp.program() if no_sockets else None

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
        os.umask(umask)
        for which, value in wanted:
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
        if program is not None:
            seccomp.install_program(program)

    return preexec


class LocalProcess:
    """A SandboxedProcess over a local Popen whose process group (its own session) is killed as one."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def readline(self) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(str(exc)) from None

    def send(self, line: str) -> None:
        """One line to the program's input (started with `stdin=True`). Never blocks: a program that leaves its
        input unread (a full pipe) or has ended gets OSError, and the caller kills it."""
        assert self.proc.stdin is not None, "started without an input"
        data = line.encode() + b"\n"
        written = os.write(self.proc.stdin.fileno(), data)  # non-blocking fd: BlockingIOError when full
        if written != len(data):
            raise BlockingIOError("the program's input is full")

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def popen(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    preexec: Callable[[], None],
    user: int | None = None,
    group: int | None = None,
    stdin: bool = False,
) -> LocalProcess:
    """Start `argv` in a session of its own (killed as one), output merged into one pipe; with `stdin`, an input
    pipe the worker writes to without ever blocking (LocalProcess.send), else no input at all."""
    ids = {} if user is None else {"user": user, "group": group, "extra_groups": []}
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec,
        close_fds=True,
        **ids,
    )
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
    return LocalProcess(proc)
