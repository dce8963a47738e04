"""The ffmpeg encoder without ffmpeg: its fixed argv, how it reads ffmpeg's output (progress, errors, exit), the
video read back safely; and the sandboxes running a program without a scene file (ffmpeg)."""

import io
import os
import tempfile
import time
from pathlib import Path

import pytest

from jobs.domain import VideoFormat
from jobs.errors import EncodeError, EncodeRefused
from jobs.renderers.ffmpeg import FfmpegEncoder, ffmpeg_arguments
from jobs.sandbox import Limits
from jobs.sandbox.bubblewrap import BubblewrapSandbox
from jobs.sandbox.sidecar import Refused, Sidecar, Slots


class Log:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def warn(self, message):
        pass


class ScriptedProcess:
    """What a sandboxed ffmpeg says, line by line, then its exit status; `kill` is noted."""

    def __init__(self, lines: list[str], status: int):
        self.lines = [f"{line}\n".encode() for line in lines]
        self.status = status
        self.killed = False

    def readline(self) -> bytes:
        return self.lines.pop(0) if self.lines else b""

    def kill(self):
        self.killed = True

    def wait(self, timeout=None):
        return self.status

    def close(self):
        pass


class ScriptedSandbox:
    """Records what it was asked to run; writes `video` as ffmpeg's output (or links it elsewhere)."""

    name = "scripted"

    def __init__(self, lines, status=0, video=b"\x00\x00\x00\x18ftypmp42", link_to=None, hard_link_to=None):
        self.lines, self.status, self.video, self.link_to = lines, status, video, link_to
        self.hard_link_to = hard_link_to
        self.started: list[dict] = []

    def workdir(self, scratch):
        return "/work"

    def check(self):
        return "ffmpeg"

    def start(self, args, *, scratch, scene, env, limits):
        self.started.append({"args": args, "scene": scene, "env": env, "limits": limits, "inputs": _inputs(scratch)})
        output = scratch / args[-1]
        if self.link_to is not None:
            output.symlink_to(self.link_to)
        elif self.hard_link_to is not None:
            os.link(self.hard_link_to, output)
        else:
            output.write_bytes(self.video)
        self.process = ScriptedProcess(self.lines, self.status)
        return self.process


def _inputs(scratch: Path) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted((scratch / "in").iterdir())]


def progress(*frames: int, end: bool = True) -> list[str]:
    lines = []
    for n in frames:
        lines += [f"frame={n}", "fps=0.00", "bitrate=  11.2kbits/s", "out_time_us=1000", "speed=   0x"]
        lines.append("progress=continue")
    return [*lines[:-1], "progress=end"] if end else lines


@pytest.fixture
def scratch_root():
    root = Path(tempfile.mkdtemp(prefix="enc-"))
    yield root
    assert list(root.iterdir()) == []  # every run's scratch directory is removed
    root.rmdir()


def encoder(sandbox, root: Path, timeout: float = 30, max_input_bytes: int = 1 << 20) -> FfmpegEncoder:
    limits = Limits(memory_bytes=1 << 30, file_bytes=1 << 20, processes=64)
    return FfmpegEncoder(
        sandbox=sandbox,
        scratch=lambda: Path(tempfile.mkdtemp(dir=root)),
        timeout=timeout,
        limits=limits,
        max_input_bytes=max_input_bytes,
    )


def encode(enc, frames=(b"a", b"b", b"c"), count=None, should_stop=lambda: False, **kwargs):
    seen: list[int] = []
    log = Log()
    args = {"extension": "png", "video_format": VideoFormat.MP4, "fps": 24, **kwargs}
    if "size" not in args:
        args["size"] = sum(map(len, frames))
    with enc.encode(
        frames=iter(frames),
        count=len(frames) if count is None else count,
        should_stop=should_stop,
        on_progress=seen.append,
        log=log,
        **args,
    ) as video:
        body = video.file.read()
        return body, video, seen, log


def test_the_argv_is_fixed_but_for_the_rate_the_frames_type_and_the_output_name():
    argv = ffmpeg_arguments(extension="png", video_format=VideoFormat.MP4, fps=24, output="video.mp4")
    joined = " ".join(argv)
    assert argv[:7] == ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-progress", "pipe:1"]
    assert "-protocol_whitelist file -f image2 -framerate 24 -start_number 1 -i in/%06d.png" in joined
    assert "-c:v libx264" in joined and "-pix_fmt yuv420p" in joined and argv[-2:] == ["-y", "video.mp4"]
    webm = " ".join(ffmpeg_arguments(extension="jpg", video_format=VideoFormat.WEBM, fps=1, output="video.webm"))
    assert "-c:v libvpx-vp9" in webm and "in/%06d.jpg" in webm and "-f webm" in webm
    for bad in ({"extension": "exr"}, {"fps": 0}, {"fps": 121}, {"output": "../video.mp4"}):
        with pytest.raises(ValueError):
            ffmpeg_arguments(
                **{"extension": "png", "video_format": VideoFormat.MP4, "fps": 24, "output": "v.mp4", **bad}
            )


def test_frames_go_in_as_numbered_files_in_the_order_given_and_progress_comes_from_the_progress_lines(scratch_root):
    sandbox = ScriptedSandbox(["Input #0, image2, from 'in/%06d.png':", *progress(1, 3)])
    body, video, seen, log = encode(encoder(sandbox, scratch_root), frames=(b"third", b"first", b"second"))
    assert body.startswith(b"\x00\x00\x00\x18ftyp") and video.size == len(body) and video.frames == 3
    assert seen == [1, 3]
    [run] = sandbox.started
    assert run["inputs"] == [("000001.png", b"third"), ("000002.png", b"first"), ("000003.png", b"second")]
    assert run["scene"] is None and run["env"] == {"HOME": "/work", "TMPDIR": "/work", "LANG": "C.UTF-8"}
    assert run["limits"].cpu_seconds == 30 * (os.cpu_count() or 1) + 1 and run["limits"].file_bytes == 1 << 20
    assert "Input #0" in log.text and "frame=" not in log.text and "speed=" not in log.text  # progress is not logged
    assert sandbox.process.killed  # reaped whatever it did


def test_a_failing_ffmpeg_is_an_error_with_its_own_message_and_its_log(scratch_root):
    lines = ["[image2 @ 0x55d1c0ffee00] Could find no file with path 'in/%06d.png' and index in the range 0-4",
             "/work/in/%06d.png: No such file or directory", "Conversion failed!"]  # fmt: skip
    with pytest.raises(EncodeError, match=r"ffmpeg failed \(exit 1\): Conversion failed!") as failed:
        encode(encoder(ScriptedSandbox(lines, status=1), scratch_root))
    assert "@ 0x" not in str(failed.value)
    lines = [
        "[libx264 @ 0x55d1c0ffee00] width not divisible by 2",
        "Error initializing output stream 0:0 -- Error while opening encoder",
        "[out] a note after it",
    ]
    with pytest.raises(EncodeError, match=r"\(exit 1\): Error initializing output stream 0:0"):
        encode(encoder(ScriptedSandbox(lines, status=1), scratch_root))
    with pytest.raises(EncodeError, match=r"ffmpeg was killed \(SIGKILL\) after 2 frames"):
        encode(encoder(ScriptedSandbox(progress(2, end=False), status=-9), scratch_root))


def test_a_video_short_of_frames_or_unfinished_is_refused(scratch_root):
    with pytest.raises(EncodeError, match="encoded 2 of the 3 frames"):
        encode(encoder(ScriptedSandbox(progress(2)), scratch_root))
    with pytest.raises(EncodeError, match="encoded 3 of the 3 frames"):  # no progress=end: it did not finish
        encode(encoder(ScriptedSandbox(progress(3, end=False)), scratch_root))
    with pytest.raises(EncodeError, match="2 of the job's 3 frames"):
        encode(encoder(ScriptedSandbox(progress(3)), scratch_root), frames=(b"a", b"b"), count=3)


def test_a_stop_kills_it_and_the_timeout_bounds_it(scratch_root):
    sandbox = ScriptedSandbox(progress(1, 2, 3))
    with pytest.raises(EncodeError, match="stopped"):
        encode(encoder(sandbox, scratch_root), should_stop=lambda: bool(sandbox.started))
    assert sandbox.process.killed
    silent = ScriptedSandbox([])
    silent.start = lambda *a, **k: _Hanging()
    with pytest.raises(EncodeRefused, match=r"longer than 0\.3 s"):
        encode(encoder(silent, scratch_root, timeout=0.3))


def test_the_timeout_bounds_the_writing_of_the_frames_too(scratch_root):
    def slow_frames():
        for body in (b"a", b"b", b"c"):
            time.sleep(0.2)
            yield body

    sandbox = ScriptedSandbox(progress(3))
    with pytest.raises(EncodeRefused, match=r"longer than 0\.3 s"):
        encode(encoder(sandbox, scratch_root, timeout=0.3), frames=slow_frames(), count=3, size=3)
    assert sandbox.started == []  # ffmpeg never started


def test_frames_over_the_input_budget_are_refused_before_any_is_written(scratch_root):
    sandbox = ScriptedSandbox(progress(3))
    with pytest.raises(EncodeRefused, match=r"frames are 0 MiB together, more than the 0 MiB"):
        encode(encoder(sandbox, scratch_root, max_input_bytes=2), frames=(b"ab", b"cd", b"ef"))
    assert sandbox.started == []
    with pytest.raises(EncodeError, match="too little for"):  # more than the disk has free: tried again later
        encode(encoder(sandbox, scratch_root, max_input_bytes=1 << 62), frames=(b"a",), size=1 << 61)
    assert sandbox.started == []


class _Hanging(ScriptedProcess):
    """An ffmpeg that never says anything (until it is killed)."""

    def __init__(self):
        super().__init__([], 0)
        import threading

        self.gone = threading.Event()

    def readline(self):
        self.gone.wait(10)
        return b""

    def kill(self):
        self.killed = True
        self.gone.set()


def test_the_video_is_read_back_only_from_a_regular_file(scratch_root, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"the worker's")
    with pytest.raises(EncodeError, match="could not be read back"):
        encode(encoder(ScriptedSandbox(progress(3), link_to=secret), scratch_root))
    with pytest.raises(EncodeError, match="not a file of its own"):
        encode(encoder(ScriptedSandbox(progress(3), hard_link_to=secret), scratch_root))
    with pytest.raises(EncodeError, match="larger than the farm allows"):
        encode(encoder(ScriptedSandbox(progress(3), video=b"x" * ((1 << 20) + 1)), scratch_root))
    with pytest.raises(EncodeError, match="cannot be encoded"):
        encode(encoder(ScriptedSandbox(progress(3)), scratch_root), extension="exr")


def test_bubblewrap_binds_no_scene_file_for_a_program_given_none(tmp_path):
    argv = BubblewrapSandbox(program="ffmpeg").arguments(scratch=tmp_path, scene=None, env={"HOME": "/work"})
    joined = " ".join(argv)
    assert f"--bind {tmp_path} /work" in joined and "scene.blend" not in joined


def test_the_sidecar_runs_ffmpeg_by_name_without_a_scene_and_nothing_it_was_not_given(tmp_path):
    root = tmp_path / "chunks"
    (root / "run").mkdir(parents=True)
    side = Sidecar(
        socket_path=root / "s.sock",
        root=root,
        program="true",
        slots=Slots(base=20000, count=1),
        worker_gid=0,
        others={"ffmpeg": "/usr/bin/ffmpeg"},
    )
    uid = os.getuid()
    assert side._scratch(str(root / "run"), peer_uid=uid, scene=False) == root / "run"
    with pytest.raises(Refused, match=r"scene\.blend"):  # Blender's runs still need their scene
        side._scratch(str(root / "run"), peer_uid=uid)
    for name in ("gcc", "/bin/sh", ["ffmpeg"]):
        with pytest.raises(Refused, match="program must be one of blender, ffmpeg"):
            side._run(
                io.BytesIO(), {"program": name, "args": [], "scratch": str(root / "run")}, peer_uid=uid, peer_gid=0
            )
    assert side.others == {"ffmpeg": "/usr/bin/ffmpeg"}
