"""The Blender renderer: the owner's .blend rendered by a sandboxed `blender -b` process, one per chunk, or
(RENDER_BLENDER_PERSISTENT) one kept across consecutive chunks of the same job.

- The scene file comes from the worker's cache of that owner's files, verified before each use
  (scene_cache.py); each Blender process gets a scratch directory of its own, removed with it.
- Blender runs in a sandbox (jobs/sandbox/: bubblewrap, or the task's sidecar on Fargate) that sees only the
  scratch directory, the scene file and the system's read-only files, with no
  network, no environment but HOME/TMPDIR/LANG and Blender's user directories (all in scratch), and resource
  limits. Inside it: `-Y` (no auto-run of scripts or drivers in the file), `--factory-startup` (no user
  configuration), and the setup script (blender_setup.py, given as `--python-expr`): an allow-list of what
  a file may do, then the worker's output path, format, frame range and overrides. Its output is read line
  by line (blender_process.py); a frame is read from the scratch directory without following links and
  only if it is a regular file, so whatever runs inside cannot make the worker read anything else.
- Persistent (as Deadline's Blender adaptor does): the process is started in serve mode and kept, idle, after
  a chunk that ended cleanly; the next chunk of this worker process reuses it only if it is of the same job
  (same owner, scene file, attempt and settings), so one owner's Blender never renders another's data, and
  the allow-list and setup ran once, on that same file. Anything else (another job, an error, a timeout, a
  cancel, a lost lease, a frame budget spent) stops it and the chunk starts a new one; so does IDLE_SECONDS
  without work. Its CPU-time limit covers START_SECONDS and PROCESS_FRAMES frames (more if a chunk is larger),
  the frames it may render before it is replaced.
- Each frame has RENDER_BLENDER_FRAME_TIMEOUT seconds (the first one of a new process also START_SECONDS for
  Blender to start and load the file). Closing the iterator early (cancel, lost lease, shutdown, an error)
  kills the whole sandbox; so does the worker process dying (parent-death signal, or the sidecar's
  connection closing).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jobs.domain import Job
from jobs.errors import RenderError
from jobs.ports import RenderedFrame, RenderLog
from jobs.renderers.blender_process import START_SECONDS, BlenderProcess
from jobs.renderers.scene_cache import SceneCache
from jobs.sandbox import Limits, Sandbox, SandboxUnavailable

__all__ = ["BlenderRenderer", "SandboxLimits", "SceneCache"]

INSPECT_SECONDS = 120.0  # Blender's start and the file's load
PROBE_SECONDS = 20.0  # the longest the inspection's probe frame is waited for (RENDER_BLENDER_PROBE_SECONDS)
IDLE_SECONDS = 15.0  # a persistent Blender without work this long is stopped (RENDER_BLENDER_IDLE_SECONDS)
PROCESS_FRAMES = 500  # frames a persistent Blender may render before it is replaced (its CPU-time limit)
_started = itertools.count(1)  # Blender processes this worker process started: named in the chunk logs


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


@dataclass
class _Session:
    """A persistent Blender process of one job, its scratch directory and what it may still render."""

    key: tuple
    process: BlenderProcess
    scratch: Path
    frames_left: int
    name: str
    chunks: int = 0
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self) -> None:
        with self.lock:  # once, whoever comes first: the chunk that failed or the idle timer
            if self.stopped:
                return
            self.stopped = True
            try:
                self.process.stop()
            finally:
                shutil.rmtree(self.scratch, ignore_errors=True)


class BlenderRenderer:
    """Renders a chunk of a Blender job (`job.scene_file`) in a sandboxed Blender process (kept for the job's
    next chunk when `persistent`)."""

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        cache: SceneCache,
        frame_timeout: float,
        limits: SandboxLimits,
        persistent: bool = False,
        idle_seconds: float = IDLE_SECONDS,
        probe_seconds: float = PROBE_SECONDS,
    ):
        self.sandbox = sandbox
        self.cache = cache
        self.frame_timeout = frame_timeout
        self.limits = limits
        self.persistent = persistent
        self.idle_seconds = idle_seconds
        self.probe_seconds = probe_seconds  # 0: no probe frame (chunks of a job's own or the default size)
        self._lock = threading.Lock()
        self._idle: _Session | None = None  # a pool process renders one chunk at a time: one idle process at most
        self._timer: threading.Timer | None = None

    def render_chunk(
        self, job: Job, frames: Sequence[int], *, should_stop: Callable[[], bool], log: RenderLog | None = None
    ) -> Iterator[RenderedFrame]:
        if not frames:
            return
        if not job.scene_file:
            raise RenderError("This job names no scene file.")
        config = {
            "format": str(job.scene.output_format),
            "first": frames[0],
            "last": frames[-1],
            "width": job.scene.width,
            "height": job.scene.height,
            "samples": job.scene.samples,
            "missing_files": "fail" if job.fail_on_missing_files else "render",
        }
        if self.persistent:
            yield from self._render_in_session(job, frames, config, should_stop=should_stop, log=log)
            return
        limits = self.limits.for_chunk(len(frames), self.frame_timeout)
        with self._one_run(job.owner, job.scene_file, config, log, limits, frames) as run:
            yield from run.frames(should_stop=should_stop, frame_timeout=self.frame_timeout)

    @contextmanager
    def _one_run(self, owner: str, sha256: str, config: dict, log, limits: Limits, frames) -> Iterator[BlenderProcess]:
        """A Blender process for one use, in a scratch directory of its own; stopped and removed after."""
        scene = self.cache.path(owner=owner, sha256=sha256)
        scratch = self.cache.scratch()
        try:
            run = _start(self.sandbox, scratch, scene, config, log, limits, frames)
            try:
                yield run
            finally:
                run.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _render_in_session(
        self, job: Job, frames: Sequence[int], config: dict, *, should_stop: Callable[[], bool], log: RenderLog | None
    ) -> Iterator[RenderedFrame]:
        settings = {k: v for k, v in config.items() if k not in ("first", "last")}
        key = (job.owner, job.scene_file, job.id, job.attempt, json.dumps(settings, sort_keys=True))
        session = self._reuse(key, len(frames))
        fresh = session is None
        if session is None:
            session = self._start_session(key, job, frames, config, log)
        session.chunks += 1
        session.frames_left -= len(frames)
        if log is not None:
            how = "started for this job" if fresh else "kept from this job's previous chunk, set up once"
            log.write(f"[farm] Blender process {session.name} {how}: chunk {session.chunks} of this process\n")
        try:
            yield from session.process.chunk(
                frames, log=log, should_stop=should_stop, frame_timeout=self.frame_timeout, fresh=fresh
            )
        finally:
            if session.process.reusable:
                session.process.log = None  # this chunk's log is done; nothing more is written to it
                self._keep(session)
            else:
                session.stop()

    def _start_session(self, key: tuple, job: Job, frames: Sequence[int], config: dict, log) -> _Session:
        scene = self.cache.path(owner=job.owner, sha256=job.scene_file)
        scratch = self.cache.scratch()
        budget = max(len(frames), PROCESS_FRAMES)
        try:
            limits = self.limits.for_chunk(budget, self.frame_timeout)
            process = _start(self.sandbox, scratch, scene, config, log, limits, frames, serve=True)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        name = f"{os.getpid()}-{next(_started)}"
        return _Session(key=key, process=process, scratch=scratch, frames_left=budget, name=name)

    def _take_idle(self) -> _Session | None:
        """The idle process, if any, no longer idle (its timer cancelled)."""
        with self._lock:
            session, self._idle = self._idle, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        return session

    def _reuse(self, key: tuple, frames: int) -> _Session | None:
        """The idle process if it may render this chunk (same job, alive, within its budget); any other is stopped."""
        session = self._take_idle()
        if session is None:
            return None
        if session.key == key and session.frames_left >= frames and session.process.alive():
            return session
        session.stop()
        return None

    def _keep(self, session: _Session) -> None:
        with self._lock:
            previous, self._idle = self._idle, session
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.idle_seconds, self._expire, args=(session,))
            self._timer.daemon = True
            self._timer.start()
        if previous is not None and previous is not session:
            previous.stop()

    def _expire(self, session: _Session) -> None:
        with self._lock:
            if self._idle is not session:
                return
            self._idle, self._timer = None, None
        session.stop()

    def close(self) -> None:
        """Stop the idle process, if any (the worker process's end stops it anyway: parent-death signal)."""
        if (session := self._take_idle()) is not None:
            session.stop()

    def inspect(self, *, owner: str, sha256: str) -> dict:
        """The file's settings, what the farm would refuse in it and the files it reads from outside
        (blender_setup.py's inspect mode, in the sandbox), and how long its first frame took to render
        (`speed`); RenderError when Blender cannot read it."""
        limits = self.limits.for_chunk(1, self.probe_seconds)
        with self._one_run(owner, sha256, {"mode": "inspect"}, None, limits, [0]) as run:
            report = run.inspection(timeout=INSPECT_SECONDS)
            if self.probe_seconds and not report.get("refused") and report.get("settings", {}).get("camera"):
                seconds = run.probe(timeout=self.probe_seconds)
                if seconds is not None:
                    report["speed"] = {"seconds_per_frame": round(seconds, 3)}
                elif run.alive():  # still rendering its one frame: a slow file
                    report["speed"] = {"seconds_per_frame": None, "longer_than": self.probe_seconds}
            return report


def _start(
    sandbox: Sandbox, scratch: Path, scene: Path, config: dict, log, limits: Limits, frames, *, serve: bool = False
) -> BlenderProcess:
    try:
        return BlenderProcess(sandbox, scratch, scene, config, frames, log, limits, serve=serve)
    except SandboxUnavailable as exc:
        raise RenderError(f"Blender cannot run on this worker: {exc}.") from None
