"""The bubblewrap sandbox: the program in new namespaces with a read-only view of the system.

Why bubblewrap: Debian packages it (nsjail is not packaged), it needs no daemon and no root (user
namespaces), and it is what Flatpak confines desktop programs with. What the program gets:
- new user, PID, IPC, UTS, cgroup and network namespaces (`--unshare-all`): no process of the worker in its
  /proc, no network at all (only a loopback of its own), no further user namespaces (`--disable-userns`),
  no capabilities;
- a root of its own, read-only: /usr and the /etc files programs need to load their libraries and fonts,
  a fresh /proc and a minimal /dev; its scratch directory at /work (the only writable place), the scene
  file read-only at /work/scene.blend;
- no environment but what it is given (bubblewrap itself starts with that environment only, since its
  PID 1 inside keeps it);
- when the worker runs as root (CI, some containers): an unprivileged uid of its own (RENDER_SANDBOX_UID),
  so files outside and other processes are another user's, and the processes limit counts only its own.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from jobs.sandbox import SCENE_NAME, Limits, SandboxUnavailable
from jobs.sandbox.confine import LocalProcess, child_setup, popen
from jobs.sandbox.unconfined import line_buffered

WORKDIR = "/work"
# Read only when present: the loader's cache, Debian's alternatives (library symlinks point there), fonts.
ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/fonts")
CHECK_SECONDS = 10.0


class BubblewrapSandbox:
    name = "bwrap"

    def __init__(self, *, program: str, binary: str = "bwrap", uid: int = 10002):
        self.program = program
        self.binary = binary
        self.uid = uid
        self._checked = False

    def workdir(self, scratch: Path) -> str:
        return WORKDIR

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
        bwrap = self.check()
        executable = shutil.which(self.program)
        if executable is None or not executable.startswith("/usr/"):
            raise SandboxUnavailable(f"{self.program!r} is not installed under /usr on this worker")
        user = self._user()
        if user is not None:
            for path in (scratch, *([scene] if scene is not None else [])):
                if blocked := _untraversable(path.parent, user):
                    raise SandboxUnavailable(
                        f"the sandbox's uid {user} cannot reach {path.name} ({blocked} is closed to it): give "
                        "RENDER_BLENDER_CACHE_DIR and its parents o+x"
                    )
            os.chown(scratch, user, user)
            os.chmod(scratch, 0o700)
        else:
            limits = Limits(**{**limits.as_dict(), "processes": 0})  # shared with the worker's own uid
        argv = [bwrap, *self.arguments(scratch=scratch, scene=scene, env=env), *line_buffered(), executable, *args]
        return popen(
            argv,
            cwd="/",
            env=_bwrap_env(env),
            preexec=child_setup(parent=os.getpid(), limits=limits),
            stdin=stdin,
            user=user,
            group=user,
        )

    def arguments(self, *, scratch: Path, scene: Path | None, env: dict[str, str]) -> list[str]:
        """bubblewrap's options for one run (before the program's argv)."""
        argv = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]
        argv += ["--cap-drop", "ALL", "--clearenv"]
        for name, value in env.items():
            argv += ["--setenv", name, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib64", "lib32"):
            path = Path("/") / top
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), str(path)]
        for path in ETC:
            argv += ["--ro-bind-try", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
        argv += ["--bind", str(scratch), WORKDIR]
        if scene is not None:
            argv += ["--ro-bind", str(scene), f"{WORKDIR}/{SCENE_NAME}"]
        argv += ["--remount-ro", "/", "--chdir", WORKDIR, "--"]
        return argv

    def _user(self) -> int | None:
        """The uid the program runs as: its own when the worker is root, else the worker's (mapped)."""
        return self.uid if os.geteuid() == 0 else None

    def check(self) -> str:
        """bubblewrap's path, once shown to start a sandbox here (user namespaces allowed); else
        SandboxUnavailable saying what is missing."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise SandboxUnavailable(
                f"bubblewrap ({self.binary!r}) is not installed on this worker: Blender runs only in a sandbox "
                "(Debian: apt install bubblewrap)"
            )
        if not self._checked:
            user = self._user()
            ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
            probe = [binary, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"]
            try:
                result = subprocess.run(probe, capture_output=True, text=True, timeout=CHECK_SECONDS, env={}, **ids)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SandboxUnavailable(f"bubblewrap could not start here: {exc}") from None
            if result.returncode != 0:
                why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                raise SandboxUnavailable(f"bubblewrap cannot make a sandbox here (user namespaces?): {why[0]}")
            self._checked = True
        return binary


def _untraversable(directory: Path, uid: int) -> Path | None:
    """The first directory on the way to `directory` that `uid` (in no group) may not pass through, if any."""
    for path in [*reversed(directory.parents), directory]:
        info = path.stat()
        allowed = stat.S_IXUSR if info.st_uid == uid else stat.S_IXOTH
        if not info.st_mode & allowed:
            return path
    return None


def _bwrap_env(env: dict[str, str]) -> dict[str, str]:
    """bubblewrap's own environment: its PID 1 inside the sandbox keeps it, so nothing of the worker's."""
    return {"PATH": "/usr/bin:/bin", "LANG": env.get("LANG", "C.UTF-8")}
