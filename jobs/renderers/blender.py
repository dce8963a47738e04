"""The Blender renderer: the owner's .blend rendered by ONE sandboxed `blender -b` process per chunk.

- The scene file comes from the worker's cache of that owner's files, verified before each use
  (scene_cache.py); each chunk gets a scratch directory of its own, removed afterwards.
- Blender runs in a sandbox (jobs/sandbox/: bubblewrap, or the task's sidecar on Fargate) that sees only the
  scratch directory, the scene file and the system's read-only files, with no
  network, no environment but HOME/TMPDIR/LANG and Blender's user directories (all in scratch), and resource
  limits. Inside it: `-Y` (no auto-run of scripts or drivers in the file), `--factory-startup` (no user
  configuration), and the setup script (blender_setup.py, given as `--python-expr`): an allow-list of what
  a file may do, then the worker's output path, format, frame range and overrides.
- It reads Blender's output line by line (STYLE 11): `RENDERFARM_SAVED <frame> <path>` (printed by the
  setup script's render_write handler, flushed at once) is a finished frame, yielded at once; `Fra:<n>` is
  the frame in progress; `RENDERFARM_REFUSED: ...` is a file the farm will not render (the job fails at once
  with that message); `Error: ...` and `RENDERFARM_ERROR: ...` are the message shown to the customer if the
  process ends early. Every line but intermediate `Sample n/m` lines goes to the chunk's render log.
- A frame is read from the scratch directory without following links and only if it is a regular file, so
  whatever runs inside cannot make the worker read anything else.
- Each frame has RENDER_BLENDER_FRAME_TIMEOUT seconds (the first one also START_SECONDS for Blender to
  start and load the file). Closing the iterator (cancel, lost lease, shutdown, an error) kills the whole
  sandbox; so does the worker process dying (parent-death signal, or the sidecar's connection closing).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jobs.domain import Job
from jobs.errors import RenderError, SceneRefused
from jobs.ports import RenderedFrame, RenderLog
from jobs.renderers.scene_cache import SceneCache
from jobs.sandbox import SCENE_NAME, Limits, Sandbox, SandboxedProcess, SandboxUnavailable

__all__ = ["BlenderRenderer", "SandboxLimits", "SceneCache"]

SETUP_SCRIPT = Path(__file__).with_name("blender_setup.py")
SETUP_SOURCE = SETUP_SCRIPT.read_text()
START_SECONDS = 120.0  # allowance for Blender to start and load the scene, on top of the first frame's limit
POLL_SECONDS = 0.25  # how often a waiting render checks should_stop()
STOP_SECONDS = 5.0  # how long a killed Blender may take to be reaped

SAVED = re.compile(r"^RENDERFARM_SAVED (?P<frame>\d+) (?P<path>.+)$")
FRAME = re.compile(r"^Fra:(?P<frame>\d+) ")
SAMPLE = re.compile(r"\| Sample (?P<n>\d+)/(?P<of>\d+)")
REFUSED = re.compile(r"^RENDERFARM_REFUSED: (?P<message>.+)")
WARNING = re.compile(r"^RENDERFARM_WARNING: (?P<message>.+)")
INSPECTION = re.compile(r"^RENDERFARM_INSPECTION (?P<report>\{.*\})$")
ERROR = re.compile(r"^(?:RENDERFARM_ERROR: |Error: |ERROR |EXCEPTION[: ])(?P<message>.+)")
OUTPUT_NAME = re.compile(r"^frame_(?P<frame>\d+)\.(png|jpg|exr)$")
INSPECT_SECONDS = 120.0  # Blender's start and the file's load


@dataclass(frozen=True)
class SandboxLimits:
    """The settings' limits of a Blender process (RENDER_SANDBOX_*); CPU time follows from the frame limit."""

    memory_bytes: int
    file_bytes: int
    processes: int

    def for_chunk(self, frames: int, frame_timeout: float) -> Limits:
        cores = os.cpu_count() or 1
        cpu = int((START_SECONDS + frames * frame_timeout) * cores)  # every core busy for the whole allowance
        return Limits(
            memory_bytes=self.memory_bytes, file_bytes=self.file_bytes, processes=self.processes, cpu_seconds=cpu
        )


class BlenderRenderer:
    """Renders a chunk of a Blender job (`job.scene_file`) in one sandboxed Blender process."""

    def __init__(self, *, sandbox: Sandbox, cache: SceneCache, frame_timeout: float, limits: SandboxLimits):
        self.sandbox = sandbox
        self.cache = cache
        self.frame_timeout = frame_timeout
        self.limits = limits

    def render_chunk(
        self, job: Job, frames: Sequence[int], *, should_stop: Callable[[], bool], log: RenderLog | None = None
    ) -> Iterator[RenderedFrame]:
        if not frames:
            return
        if not job.scene_file:
            raise RenderError("This job names no scene file.")
        scene = self.cache.path(owner=job.owner, sha256=job.scene_file)
        scratch = self.cache.scratch()
        try:
            config = {
                "format": str(job.scene.output_format),
                "first": frames[0],
                "last": frames[-1],
                "width": job.scene.width,
                "height": job.scene.height,
                "samples": job.scene.samples,
                "missing_files": "fail" if job.fail_on_missing_files else "render",
            }
            limits = self.limits.for_chunk(len(frames), self.frame_timeout)
            run = _start(self.sandbox, scratch, scene, config, log, limits, frames)
            try:
                yield from run.frames(should_stop=should_stop, frame_timeout=self.frame_timeout)
            finally:
                run.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def inspect(self, *, owner: str, sha256: str) -> dict:
        """The file's settings, what the farm would refuse in it and the files it reads from outside
        (blender_setup.py's inspect mode, in the sandbox); RenderError when Blender cannot read it."""
        scene = self.cache.path(owner=owner, sha256=sha256)
        scratch = self.cache.scratch()
        try:
            limits = self.limits.for_chunk(0, 0)
            run = _start(self.sandbox, scratch, scene, {"mode": "inspect"}, None, limits, [0])
            try:
                return run.inspection(timeout=INSPECT_SECONDS)
            finally:
                run.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _render_frames(frames: Sequence[int]) -> list[str]:
    """Blender's arguments that render the frames, in order: the animation when none is skipped, else each one."""
    if list(frames) == list(range(frames[0], frames[-1] + 1)):
        return ["-a"]
    return ["-f", ",".join(str(frame) for frame in frames)]


def _start(sandbox: Sandbox, scratch: Path, scene: Path, config: dict, log, limits: Limits, frames) -> _BlenderRun:
    try:
        return _BlenderRun(sandbox, scratch, scene, config, frames, log, limits)
    except SandboxUnavailable as exc:
        raise RenderError(f"Blender cannot run on this worker: {exc}.") from None


class _BlenderRun:
    """One sandboxed Blender process and the reader of its output."""

    def __init__(
        self,
        sandbox: Sandbox,
        scratch: Path,
        scene: Path,
        config: dict,
        frames: Sequence[int],
        log: RenderLog | None,
        limits: Limits,
    ):
        self.log = log
        self.scratch = scratch
        workdir = sandbox.workdir(scratch)
        self.workdir = workdir
        self.out = PurePosixPath(workdir) / "out"
        config = {
            **config,
            "scene": f"{workdir}/{SCENE_NAME}",
            "scratch": workdir,
            "output": f"{self.out}/frame_#####",
        }
        args = ["-b", "-Y", "--factory-startup", "-noaudio", config["scene"], "--python-exit-code", "3"]
        # The setup script travels as an argument, so the sandbox needs no file of the worker's but the scene.
        # `-a` renders the animation (the frame range the script set: the chunk's first to last frame); a chunk
        # of a frame list that skips frames names them (`-f 1,4,7`). An inspection exits before either.
        args += ["--python-expr", SETUP_SOURCE, *_render_frames(frames), "--", json.dumps(config)]
        env = {
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "BLENDER_USER_CONFIG": f"{workdir}/config",
            "BLENDER_USER_SCRIPTS": f"{workdir}/scripts",
            "BLENDER_USER_DATAFILES": f"{workdir}/datafiles",
        }
        self.file_limit = limits.file_bytes or None
        self.expected = list(frames)
        self.current = frames[0]
        self.error: str | None = None
        self.refused: str | None = None
        self.report: dict | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.proc: SandboxedProcess = sandbox.start(args, scratch=scratch, scene=scene, env=env, limits=limits)
        self.reader = threading.Thread(target=self._read, name="blender-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.readline, b""):
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
            line = self._next_line()
            if line is None:
                continue
            path = self._take(line)
            if path is None:
                continue
            frame = self._frame_of(path)
            if frame != pending[0]:
                raise RenderError(f"Blender wrote frame {frame} where frame {pending[0]} was expected.")
            body = self._read_output(path.name, frame)
            now = time.monotonic()
            yield RenderedFrame(frame=frame, body=body, seconds=now - started)
            pending.pop(0)
            started, deadline = now, now + frame_timeout
            if pending:
                self.current = pending[0]

    def _take(self, line: str) -> PurePosixPath | None:
        """Log the line and note what it says; returns the path (as Blender sees it) of a saved frame."""
        sample = SAMPLE.search(line)
        if self.log is not None and not (sample and sample["n"] != sample["of"]):
            self.log.write(line + "\n")
        if match := FRAME.match(line):
            self.current = int(match["frame"])
        elif match := REFUSED.match(line):
            self.refused = self.refused or self._customer(match["message"])
        elif match := WARNING.match(line):
            if self.log is not None:
                self.log.warn(self._customer(match["message"]))
        elif match := INSPECTION.match(line):
            with contextlib.suppress(ValueError):
                self.report = json.loads(match["report"])
        elif match := ERROR.match(line):
            self.error = self.error or self._customer(match["message"])
        elif match := SAVED.match(line):
            return PurePosixPath(match["path"])
        return None

    def inspection(self, *, timeout: float) -> dict:
        """Wait for the inspection report (inspect mode), or raise what ended Blender first."""
        deadline = time.monotonic() + timeout
        while self.report is None:
            if time.monotonic() > deadline:
                raise RenderError(f"Blender did not read the scene file within {timeout:g} s.")
            if (line := self._next_line()) is not None:
                self._take(line)
        return self.report

    def _next_line(self) -> str | None:
        """Blender's next line of output, None if none came within a poll; raises what ended Blender early."""
        try:
            line = self.lines.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return None
        if line is None:
            self._ended_early()
            return None  # an inspection that reported before Blender exited
        return line

    def _customer(self, message: str) -> str:
        # Paths inside the sandbox mean nothing to the customer: `scene.blend` is their file.
        return message.strip().replace(self.workdir + "/", "")[:600]

    def _frame_of(self, path: PurePosixPath) -> int:
        match = OUTPUT_NAME.match(path.name)
        if path.parent != self.out or match is None:
            raise RenderError("Blender wrote a frame where the farm did not ask it to.")
        return int(match["frame"])

    def _read_output(self, name: str, frame: int) -> bytes:
        """The frame's bytes from scratch/out/<name>, never through a link, only from a regular file; then
        the file is removed."""
        flags = os.O_RDONLY | os.O_NOFOLLOW
        try:
            scratch = os.open(self.scratch, flags | os.O_DIRECTORY)
            try:
                out = os.open("out", flags | os.O_DIRECTORY, dir_fd=scratch)
                try:
                    fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=out)
                    with os.fdopen(fd, "rb") as handle:
                        info = os.fstat(handle.fileno())
                        if not stat.S_ISREG(info.st_mode):
                            raise RenderError(f"Blender's output for frame {frame} is not a file.")
                        if self.file_limit and info.st_size > self.file_limit:
                            raise RenderError(f"Blender's output for frame {frame} is larger than the farm allows.")
                        body = handle.read()
                    os.unlink(name, dir_fd=out)
                    return body
                finally:
                    os.close(out)
            finally:
                os.close(scratch)
        except OSError as exc:
            raise RenderError(f"Frame {frame} could not be read back from Blender ({exc.strerror}).") from None

    def _ended_early(self) -> None:
        code = self.proc.wait()
        if self.report is not None:
            return
        if self.refused:
            raise SceneRefused(self.refused)
        if self.error:
            raise RenderError(f"Blender failed on frame {self.current}: {self.error}")
        if code < 0:
            raise RenderError(f"Blender crashed on frame {self.current} ({signal.Signals(-code).name}).")
        raise RenderError(f"Blender exited (code {code}) before frame {self.current} was written.")

    def stop(self) -> None:
        """Kill the sandbox (if it still runs), reap it, and log what Blender wrote last."""
        self.proc.kill()
        with contextlib.suppress(TimeoutError):
            self.proc.wait(timeout=STOP_SECONDS)
        self.reader.join(timeout=STOP_SECONDS)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self._take(line)
        self.proc.close()
