"""The video encoder: a job's frames as one MP4 (H.264) or WebM (VP9), made by ffmpeg in the render sandbox.

- The frames come from the caller (downloaded from the job's results and checked against the manifest) and
  are written to the run's scratch directory as `in/000001.<ext>`, `in/000002.<ext>`, ... in the video's order:
  whatever frame numbers the job has (a list with gaps, a step), the video is those frames one after another.
- ffmpeg runs with a fixed argv (no shell; only numbers and the farm's own file names vary) in the sandbox
  Blender runs in (bubblewrap, or the task's sidecar: jobs/sandbox/), which sees only the scratch directory
  and the system's read-only files, with no network; `-protocol_whitelist file` keeps its input to files,
  `-nostdin` keeps it from waiting on input. The sandbox's resource limits apply (address space, file size,
  processes), with CPU seconds following from the timeout.
- Its output is read line by line (STYLE 11): `-progress pipe:1` lines (`frame=<n>`, `progress=end`) are the
  progress; every other line goes to the step's log, and the last line that reads like an error is the
  message shown when it fails.
- The video is read back without following links, only from a regular file of one link no larger than the file
  limit.
- The frames must fit: more bytes than RENDER_ENCODE_MAX_INPUT_MB is refused before any is written (trying
  again would not help), less free disk than they need (plus a margin) is a failure tried again later.
- RENDER_ENCODE_TIMEOUT bounds a run's wall time, writing the frames included (running past it is refused,
  not tried again); `should_stop()` (a cancel, a lost lease) kills it at once, and so does
  the worker dying (the sandbox's parent-death signal, or the sidecar's connection closing).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from jobs.domain import MAX_FPS, MIN_FPS, VideoFormat
from jobs.errors import EncodeError, EncodeRefused
from jobs.ports import EncodedVideo, RenderLog
from jobs.renderers.output import OutputReader
from jobs.sandbox import Limits, Sandbox, SandboxedProcess, SandboxUnavailable

POLL_SECONDS = 0.25  # how often a running encode checks should_stop() and its deadline
DISK_MARGIN = 256 * 1024**2  # free disk kept beyond the frames (ffmpeg's video, the chunks beside it)
EXTENSIONS = ("png", "jpg")  # frames a video can be made of (OpenEXR is refused at submit)
INPUT_PATTERN = "in/%06d"
# `-progress pipe:1`'s lines, one key=value each (ffmpeg's final stats line, several on one line, is logged).
PROGRESS = re.compile(
    r"^(?P<key>frame|fps|stream_\d+_\d+_q|bitrate|total_size|out_time_us|out_time_ms|out_time|dup_frames"
    r"|drop_frames|speed|progress)=(?P<value>[^=]*)$"
)
ERRORISH = re.compile(r"(?i)error|invalid|unable|cannot|could not|could find no|failed|no such|not found|denied")
CONTEXT = re.compile(r"\[(?P<what>[\w-]+) @ 0x[0-9a-f]+\] ")  # `[libx264 @ 0x55d1...] ` -> `[libx264] `

# Per format: the codec and the muxer. yuv420p (every browser plays it) needs even sides: odd ones are padded.
CODECS: dict[VideoFormat, list[str]] = {
    VideoFormat.MP4: ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-movflags", "+faststart", "-f", "mp4"],
    VideoFormat.WEBM: [
        "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1",
        "-f", "webm",
    ],
}  # fmt: skip


def ffmpeg_arguments(*, extension: str, video_format: VideoFormat, fps: int, output: str) -> list[str]:
    """ffmpeg's whole argv after the program: fixed, but for the frames' type, the rate and the output's name."""
    if extension not in EXTENSIONS or not MIN_FPS <= int(fps) <= MAX_FPS or "/" in output:
        raise ValueError("an encode takes png or jpg frames, a whole fps in range and a plain output name")
    return [
        "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-progress", "pipe:1",
        "-protocol_whitelist", "file", "-f", "image2", "-framerate", str(int(fps)), "-start_number", "1",
        "-i", f"{INPUT_PATTERN}.{extension}",
        "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p",
        *CODECS[video_format],
        "-y", output,
    ]  # fmt: skip


class FfmpegEncoder:
    """A `jobs.ports.VideoEncoder`: one sandboxed ffmpeg per video, in a scratch directory of its own."""

    def __init__(
        self, *, sandbox: Sandbox, scratch: Callable[[], Path], timeout: float, limits: Limits, max_input_bytes: int
    ):
        self.sandbox = sandbox
        self.scratch = scratch  # makes a new directory where the sandbox can reach it (the sidecar's root)
        self.timeout = timeout
        self.limits = limits
        self.max_input_bytes = max_input_bytes

    def run_limits(self) -> Limits:
        """The sandbox's limits, with CPU seconds: every core busy for the whole timeout."""
        cpu = int(self.timeout * (os.cpu_count() or 1)) + 1
        return Limits(**{**self.limits.as_dict(), "cpu_seconds": cpu})

    @contextlib.contextmanager
    def encode(
        self,
        *,
        frames: Iterable[bytes],
        count: int,
        size: int,
        extension: str,
        video_format: VideoFormat,
        fps: int,
        should_stop: Callable[[], bool],
        on_progress: Callable[[int], None],
        log: RenderLog,
    ) -> Iterator[EncodedVideo]:
        if extension not in EXTENSIONS:
            raise EncodeError(f"{extension} frames cannot be encoded as a video.")
        if size > self.max_input_bytes:
            raise EncodeRefused(
                f"The job's {count} frames are {_mib(size)} together, more than the {_mib(self.max_input_bytes)} "
                "a video can be made of on this farm."
            )
        deadline = time.monotonic() + self.timeout
        scratch = self.scratch()
        try:
            free = shutil.disk_usage(scratch).free
            if free < size + DISK_MARGIN:
                raise EncodeError(f"The worker has {_mib(free)} of disk free, too little for {_mib(size)} of frames.")
            writing = _or_late(should_stop, deadline, self.timeout)
            _write_inputs(scratch, frames, count=count, extension=extension, should_stop=writing)
            output = f"video.{video_format.extension}"
            args = ffmpeg_arguments(extension=extension, video_format=video_format, fps=fps, output=output)
            workdir = self.sandbox.workdir(scratch)
            env = {"HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
            try:
                proc = self.sandbox.start(args, scratch=scratch, scene=None, env=env, limits=self.run_limits())
            except SandboxUnavailable as exc:
                raise EncodeError(f"ffmpeg cannot run on this worker: {exc}.") from None
            run = _FfmpegRun(proc, log, workdir=workdir)
            try:
                encoded = run.wait(
                    count=count,
                    deadline=deadline,
                    timeout=self.timeout,
                    should_stop=should_stop,
                    on_progress=on_progress,
                )
                # Read while the run's connection is open: the sidecar removes the directory once it closes.
                with _open_output(scratch, output, self.limits.file_bytes) as (file, size):
                    yield EncodedVideo(file=file, size=size, frames=encoded)
            finally:
                run.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MiB"


def _or_late(should_stop: Callable[[], bool], deadline: float, timeout: float) -> Callable[[], bool]:
    """`should_stop`, which also raises once the run's deadline has passed."""

    def check() -> bool:
        if time.monotonic() > deadline:
            raise _late(timeout)
        return should_stop()

    return check


def _late(timeout: float) -> EncodeRefused:
    return EncodeRefused(f"The encode took longer than {timeout:g} s, the farm's limit for one video.")


def _write_inputs(scratch: Path, frames: Iterable[bytes], *, count: int, extension: str, should_stop) -> None:
    """The frames as in/000001.<ext>, ...: readable by the sandbox's uid, never through a link."""
    inputs = scratch / "in"
    inputs.mkdir(mode=0o755)
    os.chmod(inputs, 0o755)  # noqa: S103 (the sandbox's own uid reads them; nothing else is in scratch)
    written = 0
    for written, body in enumerate(frames, start=1):
        if should_stop():
            raise EncodeError("The encode was stopped before it started.")
        path = inputs / f"{written:06d}.{extension}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(body)
    if written != count:
        raise EncodeError(f"{written} of the job's {count} frames could be read for the video.")


@contextlib.contextmanager
def _open_output(scratch: Path, name: str, limit: int) -> Iterator[tuple]:
    """The video ffmpeg wrote, opened without following links, only as a regular file within `limit` bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        directory = os.open(scratch, flags | os.O_DIRECTORY)
        try:
            fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise EncodeError(f"ffmpeg's video could not be read back ({exc.strerror}).") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link could name another file
            raise EncodeError("ffmpeg's output is not a file of its own.")
        if limit and info.st_size > limit:
            raise EncodeError("The video is larger than the farm allows.")
        if info.st_size == 0:
            raise EncodeError("ffmpeg wrote an empty video.")
        yield file, info.st_size


class _FfmpegRun(OutputReader):
    """One sandboxed ffmpeg process and the reader of its output (progress on stdout, messages on stderr)."""

    def __init__(self, proc: SandboxedProcess, log: RenderLog, *, workdir: str):
        self.proc = proc
        self.log = log
        self.workdir = workdir
        self.encoded = 0
        self.ended = False  # `progress=end` seen
        self.error: str | None = None  # the last line that reads like an error
        self.last: str | None = None  # the last line of ffmpeg's own output
        self._start_reading("ffmpeg-output")

    def wait(self, *, count: int, deadline: float, timeout: float, should_stop, on_progress) -> int:
        """Frames encoded, once ffmpeg ended well; EncodeError otherwise (EncodeRefused past the deadline)."""
        while True:
            if should_stop():
                raise EncodeError("The encode was stopped.")
            if time.monotonic() > deadline:
                raise _late(timeout)
            try:
                line = self.lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                return self._ended(count)
            before = self.encoded
            self._take(line)
            if self.encoded != before:
                on_progress(self.encoded)

    def _take(self, line: str) -> None:
        if match := PROGRESS.match(line):
            value = match["value"].strip()
            if match["key"] == "frame" and value.isdigit():
                self.encoded = max(self.encoded, int(value))
            elif match["key"] == "progress" and value == "end":
                self.ended = True
            return
        self.log.write(line + "\n")
        if line.strip():
            self.last = self._customer(line)
            if ERRORISH.search(line):
                self.error = self.last

    def _customer(self, line: str) -> str:
        return CONTEXT.sub(r"[\g<what>] ", line.strip()).replace(self.workdir + "/", "")[:400]

    def _ended(self, count: int) -> int:
        code = self.proc.wait()
        if code < 0:
            raise EncodeError(f"ffmpeg was killed ({signal.Signals(-code).name}) after {self.encoded} frames.")
        if code != 0:
            raise EncodeError(f"ffmpeg failed (exit {code}): {self.error or self.last or 'no message'}")
        if not self.ended or self.encoded != count:
            raise EncodeError(f"ffmpeg encoded {self.encoded} of the {count} frames.")
        return self.encoded
