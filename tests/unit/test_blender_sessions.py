"""The persistent Blender's bookkeeping (jobs/renderers/blender.py) on a fake sandbox whose "Blender" answers
serve-mode commands at once: which chunk reuses which process, and when a process is stopped."""

from __future__ import annotations

import json
import queue
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.domain import Job, JobStatus, OutputFormat, Priority, RendererName, Scene
from jobs.errors import RenderError
from jobs.renderers import blender
from jobs.renderers.blender import BlenderRenderer, SandboxLimits
from jobs.renderers.scene_cache import SceneCache
from jobs.sandbox import Limits


class FakeBlender:
    """A SandboxedProcess that renders each command's frames into its output directory at once."""

    def __init__(self, scratch: Path, limits: Limits):
        self.scratch, self.limits = scratch, limits
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.status: int | None = None
        self.commands: list[dict] = []
        self.lines.put(b"RENDERFARM_WARNING: denoising is off\n")

    def send(self, line: str) -> None:
        if self.status is not None:
            raise BrokenPipeError()
        command = json.loads(line)
        self.commands.append(command)
        out = Path(command["output"]).parent
        out.mkdir(parents=True)
        for frame in command["frames"]:
            (out / f"frame_{frame:05d}.png").write_bytes(b"png %d" % frame)
            self.lines.put(f"RENDERFARM_SAVED {frame} {out}/frame_{frame:05d}.png\n".encode())
        self.lines.put(f"RENDERFARM_DONE {command['seq']}\n".encode())

    def readline(self) -> bytes:
        return self.lines.get()

    def kill(self) -> None:
        if self.status is None:
            self.status = -9
            self.lines.put(b"")

    def wait(self, timeout: float | None = None) -> int:
        if self.status is None:
            if timeout is not None:
                raise TimeoutError()
            self.lines.get()
        return self.status

    def close(self) -> None:
        pass


class FakeSandbox:
    name = "fake"

    def __init__(self):
        self.started: list[FakeBlender] = []

    def workdir(self, scratch: Path) -> str:
        return str(scratch)

    def check(self) -> None:
        pass

    def start(self, args, *, scratch, scene, env, limits, stdin=False) -> FakeBlender:
        assert stdin and "serve" in args[-1]
        self.started.append(FakeBlender(scratch, limits))
        return self.started[-1]


class Log:
    def __init__(self):
        self.text, self.warnings = "", []

    def write(self, text: str) -> None:
        self.text += text

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture
def farm(tmp_path):
    sandbox = FakeSandbox()
    cache = SceneCache(root=tmp_path, max_bytes=10**6, download=lambda dest, **kw: Path(dest).write_bytes(b"BLEND"))
    limits = SandboxLimits(memory_bytes=1, file_bytes=100, processes=1)
    renderer = BlenderRenderer(
        sandbox=sandbox, cache=cache, frame_timeout=10, limits=limits, persistent=True, idle_seconds=0.3
    )
    yield renderer, sandbox
    renderer.close()


def job(n: int = 1, **changes) -> Job:
    now = datetime.now(UTC)
    made = Job(
        id=f"{n:032x}",
        owner="owner-a",
        scene=Scene(name="s", width=64, height=36, output_format=OutputFormat.PNG, samples=4),
        frame_start=1,
        frame_end=100,
        chunk_size=2,
        priority=Priority.NORMAL,
        renderer=RendererName.BLENDER,
        scene_file="a" * 64,
        status=JobStatus.PROCESSING,
        created_at=now,
        updated_at=now,
    )
    return replace(made, **changes)


def render(renderer, of: Job, frames: list[int], log: Log | None = None, take: int | None = None) -> list[int]:
    chunk = renderer.render_chunk(of, frames, should_stop=lambda: False, log=log or Log())
    got = []
    for out in chunk:
        got.append(out.frame)
        if len(got) == take:
            chunk.close()  # the worker stopping early: a cancel, a lost lease
            break
    return got


def test_consecutive_chunks_of_a_job_share_one_process_and_its_warnings(farm):
    renderer, sandbox = farm
    first, second = Log(), Log()
    assert render(renderer, job(), [1, 2], first) == [1, 2]
    assert render(renderer, job(), [3, 5], second) == [3, 5]
    assert len(sandbox.started) == 1
    assert [c["frames"] for c in sandbox.started[0].commands] == [[1, 2], [3, 5]]
    assert "started for this job" in first.text and "kept from this job's previous chunk" in second.text
    assert second.warnings == first.warnings == ["denoising is off"]  # said once, at the start: on every chunk
    outputs = [Path(c["output"]).parent.name for c in sandbox.started[0].commands]
    assert outputs == ["1", "2"]  # a directory per chunk


@pytest.mark.parametrize(
    "other",
    [
        job(2),  # another job of the same owner and file
        replace(job(), owner="owner-b"),
        replace(job(), scene_file="b" * 64),
        replace(job(), attempt=2),
        replace(job(), scene=Scene(name="s", width=128, height=36, output_format=OutputFormat.PNG, samples=4)),
        replace(job(), fail_on_missing_files=False),
    ],
)
def test_anything_but_the_same_job_and_settings_gets_a_new_process_and_stops_the_old(farm, other):
    renderer, sandbox = farm
    render(renderer, job(), [1, 2])
    render(renderer, other, [3, 4])
    assert len(sandbox.started) == 2
    assert sandbox.started[0].status == -9 and sandbox.started[1].status is None


def test_a_chunk_stopped_early_does_not_leave_its_process_for_the_next(farm):
    renderer, sandbox = farm
    assert render(renderer, job(), [1, 2, 3], take=1) == [1]
    assert sandbox.started[0].status == -9
    render(renderer, job(), [2, 3])
    assert len(sandbox.started) == 2


def test_a_dead_process_is_replaced(farm):
    renderer, sandbox = farm
    render(renderer, job(), [1, 2])
    sandbox.started[0].kill()
    time.sleep(0.05)  # its reader sees the end
    assert render(renderer, job(), [3, 4]) == [3, 4]
    assert len(sandbox.started) == 2


def test_a_process_that_takes_no_more_work_fails_the_chunk(farm):
    renderer, sandbox = farm
    render(renderer, job(), [1, 2])
    sandbox.started[0].status = 0  # ended between the liveness check and the command
    sandbox.started[0].lines.put(b"")
    sandbox.started[0].wait = lambda timeout=None: (_ for _ in ()).throw(TimeoutError())  # still looks alive
    with pytest.raises(RenderError, match="stopped taking work"):
        render(renderer, job(), [3, 4])


def test_an_idle_process_is_stopped(farm):
    renderer, sandbox = farm
    render(renderer, job(), [1, 2])
    time.sleep(0.6)
    assert sandbox.started[0].status == -9
    assert not list((renderer.cache.root / "chunks").iterdir())  # its scratch directory went with it


def test_the_cpu_limit_covers_the_frames_a_process_may_render_then_it_is_replaced(farm, monkeypatch):
    renderer, sandbox = farm
    monkeypatch.setattr(blender, "PROCESS_FRAMES", 4)
    render(renderer, job(), [1, 2, 3])
    expected = SandboxLimits(memory_bytes=1, file_bytes=100, processes=1).for_chunk(4, 10)
    assert sandbox.started[0].limits == expected
    render(renderer, job(), [4])  # the fourth frame: within its budget
    render(renderer, job(), [5])  # the fifth: a new process
    assert len(sandbox.started) == 2
    render(renderer, job(), list(range(6, 16)))  # a chunk larger than the budget: a process sized for it
    assert sandbox.started[2].limits == SandboxLimits(memory_bytes=1, file_bytes=100, processes=1).for_chunk(10, 10)
