"""One sandboxed Blender process and the reader of its output (jobs/renderers/blender.py runs it).

It reads Blender's output line by line (STYLE 11): `RENDERFARM_SAVED <frame> <path>` (printed by the setup
script's render_write handler, flushed at once) is a finished frame; `Fra:<n>` is the frame in progress;
`RENDERFARM_REFUSED: ...` is a file the farm will not render (the job fails at once with that message);
`RENDERFARM_WARNING: ...` goes on the chunk's log as a warning; `RENDERFARM_DONE <seq>` ends a persistent
process's chunk; `Error: ...` and `RENDERFARM_ERROR: ...` are the message shown to the customer if the process
ends early. Every line but intermediate `Sample n/m` lines goes to the chunk's render log.

A process renders one chunk given on its command line (`-a`, or `-f 1,4,7`), or, started with `serve=True`,
the chunks sent to its input one after another (`chunk()`; blender_setup.py's serve mode), each into a
directory of its own (`out/<seq>/`), so a frame of one chunk can never be taken for another's.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from jobs.errors import RenderError, SceneRefused
from jobs.ports import RenderedFrame, RenderLog
from jobs.renderers.output import OutputReader
from jobs.sandbox import SCENE_NAME, Limits, Sandbox, SandboxedProcess

SETUP_SCRIPT = Path(__file__).with_name("blender_setup.py")
SETUP_SOURCE = SETUP_SCRIPT.read_text()
START_SECONDS = 120.0  # allowance for Blender to start and load the scene, on top of the first frame's limit
POLL_SECONDS = 0.25  # how often a waiting render checks should_stop()
DONE_SECONDS = 10.0  # how long a persistent Blender may take, after a chunk's last frame, to say it is done

SAVED = re.compile(r"^RENDERFARM_SAVED (?P<frame>\d+) (?P<path>.+)$")
DONE = re.compile(r"^RENDERFARM_DONE (?P<seq>\d+)$")
SPEED = re.compile(r"^RENDERFARM_SPEED (?P<seconds>\d+(?:\.\d+)?)$")
FRAME = re.compile(r"^Fra:(?P<frame>\d+) ")
SAMPLE = re.compile(r"\| Sample (?P<n>\d+)/(?P<of>\d+)")
REFUSED = re.compile(r"^RENDERFARM_REFUSED: (?P<message>.+)")
WARNING = re.compile(r"^RENDERFARM_WARNING: (?P<message>.+)")
INSPECTION = re.compile(r"^RENDERFARM_INSPECTION (?P<report>\{.*\})$")
ERROR = re.compile(r"^(?:RENDERFARM_ERROR: |Error: |ERROR |EXCEPTION[: ])(?P<message>.+)")
OUTPUT_NAME = re.compile(r"^frame_(?P<frame>\d+)\.(png|jpg|exr)$")


def render_arguments(frames: Sequence[int]) -> list[str]:
    """Blender's arguments that render the frames, in order: the animation when none is skipped, else each one."""
    if list(frames) == list(range(frames[0], frames[-1] + 1)):
        return ["-a"]
    return ["-f", ",".join(str(frame) for frame in frames)]


class BlenderProcess(OutputReader):
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
        *,
        serve: bool = False,
    ):
        self.log = log
        self.scratch = scratch
        workdir = sandbox.workdir(scratch)
        self.workdir = workdir
        self.outputs = PurePosixPath(workdir) / "out"
        self.out = self.outputs
        self.serving = serve
        config = {
            **config,
            "scene": f"{workdir}/{SCENE_NAME}",
            "scratch": workdir,
            "output": f"{self.out}/frame_#####",
            **({"mode": "serve"} if serve else {}),
        }
        args = ["-b", "-Y", "--factory-startup", "-noaudio", config["scene"], "--python-exit-code", "3"]
        # The setup script travels as an argument, so the sandbox needs no file of the worker's but the scene.
        # `-a` renders the animation (the frame range the script set: the chunk's first to last frame); a chunk
        # of a frame list that skips frames names them (`-f 1,4,7`). An inspection exits before either; a
        # persistent process (serve) takes its chunks from its input instead.
        args += ["--python-expr", SETUP_SOURCE, *([] if serve else render_arguments(frames)), "--", json.dumps(config)]
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
        self.speed: float | None = None  # seconds the inspection's probe frame took
        self.warnings: list[str] = []  # as Blender said them at its start: repeated in a reused process's logs
        self.seq = 0  # chunks sent (serve)
        self.done = 0  # the last chunk Blender said it finished (serve)
        self.reusable = False  # the last chunk ended cleanly, with nothing left running (serve)
        self.ended = False  # its output has ended (read to the end)
        self.proc: SandboxedProcess = sandbox.start(
            args, scratch=scratch, scene=scene, env=env, limits=limits, **({"stdin": True} if serve else {})
        )
        self._start_reading("blender-output")

    def alive(self) -> bool:
        try:
            self.proc.wait(timeout=0)
        except TimeoutError:
            return True
        return False

    def chunk(
        self,
        frames: Sequence[int],
        *,
        log: RenderLog | None,
        should_stop: Callable[[], bool],
        frame_timeout: float,
        fresh: bool,
    ) -> Iterator[RenderedFrame]:
        """A persistent process's next chunk: sent to its input, its frames as they come (`fresh`: the first
        frame's allowance includes Blender's start). `reusable` says afterwards whether it ended cleanly."""
        self.seq += 1
        self.reusable = False
        self.log, self.expected, self.current = log, list(frames), frames[0]
        self.out = self.outputs / str(self.seq)
        if not fresh and log is not None:
            for warning in self.warnings:  # said once, at the start, by the setup script: true of every chunk
                log.warn(warning)
        command = {"seq": self.seq, "frames": list(frames), "output": f"{self.out}/frame_#####"}
        try:
            self.proc.send(json.dumps(command))
        except OSError:
            raise RenderError("Blender stopped taking work before this chunk.") from None
        start = START_SECONDS if fresh else 0.0
        yield from self.frames(should_stop=should_stop, frame_timeout=frame_timeout, start=start)

    def frames(
        self, *, should_stop: Callable[[], bool], frame_timeout: float, start: float = START_SECONDS
    ) -> Iterator[RenderedFrame]:
        started = time.monotonic()
        deadline = started + start + frame_timeout
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
            if self.serving and len(pending) == 1:
                self._await_done()  # before the last yield: the worker closes the iterator once it has every frame
            yield RenderedFrame(frame=frame, body=body, seconds=now - started)
            pending.pop(0)
            started, deadline = now, now + frame_timeout
            if pending:
                self.current = pending[0]

    def _await_done(self) -> None:
        """Wait (briefly) for Blender to say the chunk is done; only then may it take another."""
        with contextlib.suppress(RenderError):
            self._take_until(lambda: self.done == self.seq, DONE_SECONDS)
        self.reusable = self.done == self.seq and self.error is None and self.alive()

    def _take_until(self, done: Callable[[], bool], seconds: float) -> bool:
        """Read (and take) Blender's lines until `done()`, `seconds` have passed or its output has ended; whether
        `done()`. An end before an inspection's report raises what ended Blender (`_next_line`)."""
        deadline = time.monotonic() + seconds
        while not done() and not self.ended and time.monotonic() < deadline:
            if (line := self._next_line()) is not None:
                self._take(line)
        return done()

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
            warning = self._customer(match["message"])
            if self.seq <= 1 and warning not in self.warnings:
                self.warnings.append(warning)
            if self.log is not None:
                self.log.warn(warning)
        elif match := INSPECTION.match(line):
            with contextlib.suppress(ValueError):
                self.report = json.loads(match["report"])
        elif match := ERROR.match(line):
            self.error = self.error or self._customer(match["message"])
        elif match := DONE.match(line):
            self.done = int(match["seq"])
        elif match := SPEED.match(line):
            self.speed = float(match["seconds"])
        elif match := SAVED.match(line):
            return PurePosixPath(match["path"])
        return None

    def inspection(self, *, timeout: float) -> dict:
        """Wait for the inspection report (inspect mode), or raise what ended Blender first."""
        if not self._take_until(lambda: self.report is not None, timeout):
            raise RenderError(f"Blender did not read the scene file within {timeout:g} s.")
        return self.report

    def probe(self, *, timeout: float) -> float | None:
        """After the inspection: the seconds its probe frame took, None if Blender ended without one or took
        longer than `timeout`."""
        self._take_until(lambda: self.speed is not None, timeout)
        return self.speed

    def _next_line(self) -> str | None:
        """Blender's next line of output, None if none came within a poll; raises what ended Blender early."""
        try:
            line = self.lines.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return None
        if line is None:
            self.lines.put(None)  # the end stays the end for whoever reads next
            self.ended = True
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
        """The frame's bytes from the chunk's output directory (scratch/out, or scratch/out/<seq> for a persistent
        process), never through a link, only from a regular file; then the file is removed."""
        flags = os.O_RDONLY | os.O_NOFOLLOW
        opened: list[int] = []
        try:
            try:
                opened.append(os.open(self.scratch, flags | os.O_DIRECTORY))
                for part in self.out.relative_to(self.workdir).parts:
                    opened.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=opened[-1]))
                fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=opened[-1])
                with os.fdopen(fd, "rb") as handle:
                    info = os.fstat(handle.fileno())
                    if not stat.S_ISREG(info.st_mode):
                        raise RenderError(f"Blender's output for frame {frame} is not a file.")
                    if self.file_limit and info.st_size > self.file_limit:
                        raise RenderError(f"Blender's output for frame {frame} is larger than the farm allows.")
                    body = handle.read()
                os.unlink(name, dir_fd=opened[-1])
                return body
            finally:
                for fd in reversed(opened):
                    os.close(fd)
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
