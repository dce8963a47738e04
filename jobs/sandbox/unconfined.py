"""No sandbox: the program runs as the worker's user in its scratch directory (RENDER_SANDBOX=none).

Only for measuring what the sandbox costs on a laptop (`make bench`, scenario blender); settings refuse it in
production. The resource limits still apply, and the environment is still only what the caller gives.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jobs.sandbox import SCENE_NAME, Limits, SandboxUnavailable
from jobs.sandbox.confine import LocalProcess, child_setup, popen


class Unconfined:
    name = "none"

    def __init__(self, *, program: str):
        self.program = program

    def workdir(self, scratch: Path) -> str:
        return str(scratch)

    def check(self) -> str:
        executable = shutil.which(self.program)
        if executable is None:
            raise SandboxUnavailable(f"{self.program!r} is not on this worker's PATH")
        return executable

    def start(
        self,
        args: list[str],
        *,
        scratch: Path,
        scene: Path | None,
        env: dict[str, str],
        limits: Limits,
        stdin: bool = False,
    ) -> LocalProcess:
        executable = self.check()
        if scene is not None:
            link_scene(scene, scratch / SCENE_NAME)
        limits = Limits(**{**limits.as_dict(), "processes": 0})  # the worker's own uid: not a limit of the run
        return popen(
            [*line_buffered(), executable, *args],
            cwd=str(scratch),
            env=env,
            preexec=child_setup(parent=os.getpid(), limits=limits),
            stdin=stdin,
        )


def link_scene(scene: Path, dest: Path) -> None:
    """The scene file at `dest` without copying where the filesystem allows (same inode, read-only)."""
    try:
        os.link(scene, dest)
    except OSError:
        shutil.copyfile(scene, dest)
        os.chmod(dest, 0o444)


def line_buffered() -> list[str]:
    """`stdbuf -oL -eL` where it exists: the program's C output reaches the reader line by line, so progress and
    a crashing frame's last lines are seen."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", "-eL"] if stdbuf else []
