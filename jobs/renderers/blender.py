"""The Blender renderer: the owner's .blend rendered by ONE `blender -b` process per chunk.

- The scene file comes from a local cache by SHA-256 (size-bounded; the download is verified before use)
  and is linked into a scratch directory of its own; Blender runs there with `-Y` (no auto-run of scripts
  or drivers in the file), `--factory-startup` (no user configuration), a minimal environment (no AWS
  credentials; HOME, TMPDIR and Blender's user dirs in the scratch directory), Cycles on CPU, denoising
  off, and the worker's output path, format, frame range and overrides (blender_setup.py).
- It reads Blender's output line by line (STYLE 11): `RENDERFARM_SAVED <frame> <path>` (printed by the
  setup script's render_write handler, flushed at once) is a finished frame, yielded at once; `Fra:<n>` is
  the frame in progress; `Error: ...` and `RENDERFARM_ERROR: ...` are the message shown to the customer if
  the process ends early. Every line but intermediate `Sample n/m` lines goes to the chunk's render log.
- Each frame has RENDER_BLENDER_FRAME_TIMEOUT seconds (the first one also START_SECONDS for Blender to
  start and load the file). Closing the iterator (cancel, lost lease, shutdown, an error) kills Blender's
  whole process group; PR_SET_PDEATHSIG kills Blender if the worker process itself dies (SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jobs.domain import Job
from jobs.errors import RenderError
from jobs.ports import RenderedFrame, RenderLog

SETUP_SCRIPT = Path(__file__).with_name("blender_setup.py")
START_SECONDS = 120.0  # allowance for Blender to start and load the scene, on top of the first frame's limit
POLL_SECONDS = 0.25  # how often a waiting render checks should_stop()
STOP_SECONDS = 5.0  # how long a killed Blender may take to be reaped

SAVED = re.compile(r"^RENDERFARM_SAVED (?P<frame>\d+) (?P<path>.+)$")
FRAME = re.compile(r"^Fra:(?P<frame>\d+) ")
SAMPLE = re.compile(r"\| Sample (?P<n>\d+)/(?P<of>\d+)")
ERROR = re.compile(r"^(?:RENDERFARM_ERROR: |Error: |ERROR |EXCEPTION[: ])(?P<message>.+)")
OUTPUT_NAME = re.compile(r"^frame_(?P<frame>\d+)\.(png|jpg)$")

_PR_SET_PDEATHSIG = 1
try:  # resolved once here: the child between fork and exec should do as little as possible
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the worker died before the signal was armed
                os._exit(1)

    return preexec


class SceneCache:
    """Scene files by SHA-256 under `root/scenes`, least recently used evicted past `max_bytes`.

    `download(owner=, sha256=, dest=)` writes the file, raising RenderError unless its SHA-256 matches.
    """

    def __init__(self, *, root: Path, max_bytes: int, download: Callable[..., None]):
        self.root = root
        self.scenes = root / "scenes"
        self.max_bytes = max_bytes
        self._download = download

    def path(self, *, owner: str, sha256: str) -> Path:
        self.scenes.mkdir(parents=True, exist_ok=True)
        dest = self.scenes / sha256
        if dest.exists():
            os.utime(dest)  # most recently used
            return dest
        part = self.scenes / f".{sha256}.{os.getpid()}.part"
        try:
            self._download(owner=owner, sha256=sha256, dest=part)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        self._evict(keep=dest)
        return dest

    def _evict(self, *, keep: Path) -> None:
        files = []
        for entry in self.scenes.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if not entry.name.startswith("."):
                    stat = entry.stat()
                    files.append((stat.st_mtime, stat.st_size, entry))
        total = sum(size for _, size, _ in files)
        for _, size, entry in sorted(files):
            if total <= self.max_bytes:
                break
            if entry != keep:
                entry.unlink(missing_ok=True)  # a render using it has its own link in its scratch directory
                total -= size


class BlenderRenderer:
    """Renders a chunk of a Blender job (`job.scene_file`) in one Blender process (see module docstring)."""

    def __init__(self, *, binary: str, cache: SceneCache, frame_timeout: float):
        self.binary = binary
        self.cache = cache
        self.frame_timeout = frame_timeout

    def render_chunk(
        self, job: Job, frames: Sequence[int], *, should_stop: Callable[[], bool], log: RenderLog | None = None
    ) -> Iterator[RenderedFrame]:
        if not frames:
            return
        if list(frames) != list(range(frames[0], frames[-1] + 1)):
            raise ValueError("a chunk's frames are consecutive")
        executable = shutil.which(self.binary)
        if executable is None:
            raise RenderError(f"Blender is not available on this worker (no {self.binary!r} on its PATH).")
        if not job.scene_file:
            raise RenderError("This job names no scene file.")
        scene = self.cache.path(owner=job.owner, sha256=job.scene_file)
        self.cache.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="chunk-", dir=self.cache.root))
        try:
            run = _BlenderRun(executable, scratch, scene, job, frames, log)
            try:
                yield from run.frames(should_stop=should_stop, frame_timeout=self.frame_timeout)
            finally:
                run.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class _BlenderRun:
    """One Blender process and the reader of its output."""

    def __init__(self, executable: str, scratch: Path, scene: Path, job: Job, frames: Sequence[int], log):
        self.log = log
        self.out = scratch / "out"
        self.out.mkdir()
        blend = scratch / "scene.blend"
        try:
            os.link(scene, blend)
        except OSError:
            shutil.copyfile(scene, blend)
        config = {
            "scene": str(blend),
            "output": str(self.out / "frame_#####"),
            "format": str(job.scene.output_format),
            "first": frames[0],
            "last": frames[-1],
            "width": job.scene.width,
            "height": job.scene.height,
            "samples": job.scene.samples,
        }
        # Line-buffered C output (stdbuf) so progress and a crashing frame's last lines reach the log.
        line_buffered = [stdbuf, "-oL", "-eL"] if (stdbuf := shutil.which("stdbuf")) else []
        argv = [
            *line_buffered,
            executable,
            "-b",
            "-Y",
            "--factory-startup",
            "-noaudio",
            str(blend),
            "--python-exit-code",
            "3",
            "--python",
            str(SETUP_SCRIPT),
            "-a",
            "--",
            json.dumps(config),
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "BLENDER_USER_CONFIG": str(scratch / "config"),
            "BLENDER_USER_SCRIPTS": str(scratch / "scripts"),
            "BLENDER_USER_DATAFILES": str(scratch / "datafiles"),
        }
        self.scratch = str(scratch)
        self.expected = list(frames)
        self.current = frames[0]
        self.error: str | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self.reader = threading.Thread(target=self._read, name="blender-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.lines.put(None)

    def frames(self, *, should_stop: Callable[[], bool], frame_timeout: float) -> Iterator[RenderedFrame]:
        started = time.monotonic()
        deadline = started + START_SECONDS + frame_timeout
        pending = list(self.expected)
        while pending:
            if should_stop():
                return
            if time.monotonic() > deadline:  # checked on every pass: a render that prints all along is limited too
                raise RenderError(f"Frame {self.current} took longer than {frame_timeout:g} s (the per-frame limit).")
            try:
                line = self.lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                raise RenderError(self._ended_early())
            path = self._take(line)
            if path is None:
                continue
            frame = self._frame_of(path)
            if frame != pending[0]:
                raise RenderError(f"Blender wrote frame {frame} where frame {pending[0]} was expected.")
            body = path.read_bytes()
            path.unlink()
            now = time.monotonic()
            yield RenderedFrame(frame=frame, body=body, seconds=now - started)
            pending.pop(0)
            started, deadline = now, now + frame_timeout
            if pending:
                self.current = pending[0]

    def _take(self, line: str) -> Path | None:
        """Log the line and note what it says; returns the path of a saved frame."""
        sample = SAMPLE.search(line)
        if self.log is not None and not (sample and sample["n"] != sample["of"]):
            self.log.write(line + "\n")
        if match := FRAME.match(line):
            self.current = int(match["frame"])
        elif match := ERROR.match(line):
            # Paths inside the scratch directory mean nothing to the customer: `scene.blend` is their file.
            self.error = self.error or match["message"].strip().replace(self.scratch + "/", "")[:300]
        elif match := SAVED.match(line):
            return Path(match["path"])
        return None

    def _frame_of(self, path: Path) -> int:
        match = OUTPUT_NAME.match(path.name)
        if path.parent != self.out or match is None:
            raise RenderError("Blender wrote a frame where the farm did not ask it to.")
        return int(match["frame"])

    def _ended_early(self) -> str:
        code = self.proc.wait()
        if self.error:
            return f"Blender failed on frame {self.current}: {self.error}"
        if code < 0:
            return f"Blender crashed on frame {self.current} ({signal.Signals(-code).name})."
        return f"Blender exited (code {code}) before frame {self.current} was written."

    def stop(self) -> None:
        """Kill Blender's process group (if it still runs), reap it, and log what it wrote last."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_SECONDS)
        self.reader.join(timeout=STOP_SECONDS)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self._take(line)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
