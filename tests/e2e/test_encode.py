"""Jobs with an encode step end to end: real workers, real Blender, real ffmpeg (in bubblewrap), checked by ffprobe;
a cancel during the encode, and a worker killed mid-encode whose step the sweeper and the next worker recover.

Skipped (with the reason shown) where blender or ffmpeg is not on the PATH; `.ci/run` installs both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from jobs.adapters import aws
from jobs.devstack.stack import ROOT
from jobs.domain import VideoFormat
from jobs.renderers.ffmpeg import FfmpegEncoder
from jobs.sandbox import Limits
from jobs.sandbox.client import SidecarSandbox
from tests.e2e.conftest import wait_until

if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
    pytest.skip("ffmpeg is not on the PATH: the encode tier is skipped (.ci/run installs it)", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("blender-files")]
DEMO = ROOT / "scenes" / "demo_scene.py"
SLOW_FFMPEG = ROOT / "tests" / "support" / "slow_ffmpeg.py"


def ffprobe(path: Path) -> dict:
    """What ffprobe finds in a video: its stream (frames counted by decoding them all) and its container."""
    argv = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json"]
    argv += ["-show_entries", "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames:format=duration"]
    out = subprocess.run([*argv, str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    probed = json.loads(out)
    return {**probed["streams"][0], "duration": float(probed["format"]["duration"])}


def renderctl(stack, *args: str) -> subprocess.CompletedProcess:
    """This checkout's renderctl (as tests/e2e/test_renderctl.py runs it) against the stack's API."""
    env = {**os.environ, "RENDER_API_URL": stack.api, "RENDER_API_KEY": stack.key, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "renderctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def ffmpegs_in(root: Path) -> list[int]:
    """Pids of live ffmpeg processes working in a directory under `root` (the worker's scratch directories)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if comm == "ffmpeg" and cwd.startswith(str(root)) and state != "Z":
            found.append(int(entry.name))
    return found


def video_objects(stack, job_id: str) -> list[str]:
    resp = aws.client("s3").list_objects_v2(Bucket=stack.env["RENDER_BUCKET_NAME"], Prefix=f"jobs/{job_id}/video")
    return [o["Key"] for o in resp.get("Contents", [])]


@pytest.mark.skipif(shutil.which("blender") is None, reason="blender is not on the PATH (CI installs it)")
def test_a_48_frame_blender_scene_with_an_encode_step_ends_with_a_playable_mp4(make_stack, render_cache, tmp_path):
    scene = tmp_path / "demo.blend"
    build = ["blender", "-b", "--factory-startup", "-noaudio", "--python", str(DEMO), "--", str(scene)]
    subprocess.run([*build, "64", "36", "48"], check=True, capture_output=True, timeout=60)
    stack = make_stack(RENDER_BLENDER_CACHE_DIR=str(render_cache))  # the default sandbox: bubblewrap
    stack.start_ready_worker(concurrency=2)
    api, auth = stack.api, stack.auth()
    sha = hashlib.sha256(scene.read_bytes()).hexdigest()
    ticket = requests.post(
        f"{api}/api/assets", json={"sha256": sha, "size": scene.stat().st_size}, headers=auth, timeout=10
    ).json()["upload"]
    assert requests.put(ticket["url"], data=scene.read_bytes(), headers=ticket["headers"], timeout=30).ok
    job = stack.submit(
        renderer="blender",
        scene_file=sha,
        width=64,
        height=36,
        samples=2,
        frame_start=1,
        frame_end=48,
        chunk_size=24,
        steps=[{"type": "encode", "format": "mp4", "fps": 24}],
    )
    assert job["steps"][0]["status"] == "WAITING"

    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=120)
    assert done["status"] == "COMPLETED", done
    [step] = done["steps"]
    assert step["status"] == "COMPLETED" and step["progress"]["frames_done"] == 48 and step["failures"] == 0
    assert (step["output"]["frames"], step["output"]["fps"], step["output"]["duration"]) == (48, 24, 2.0)
    [video] = done["results"]["videos"]
    manifest = requests.get(done["results"]["manifest_url"], timeout=10).json()
    assert [f["frame"] for f in manifest["frames"]] == list(range(1, 49))
    assert manifest["steps"] == [{"step": 0, "type": "encode", **step["output"]}]

    # renderctl download fetches the video with the frames, each checked against its SHA-256.
    out = tmp_path / "out"
    got = renderctl(stack, "download", job["id"], str(out))
    assert got.returncode == 0, got.stderr
    mp4 = out / "video.mp4"
    assert hashlib.sha256(mp4.read_bytes()).hexdigest() == video["sha256"] == step["output"]["sha256"]
    assert len(list(out.glob("*.png"))) == 48
    probed = ffprobe(mp4)
    assert probed["codec_name"] == "h264" and probed["pix_fmt"] == "yuv420p"
    assert (probed["width"], probed["height"], probed["r_frame_rate"]) == (64, 36, "24/1")
    assert int(probed["nb_read_frames"]) == 48 and probed["duration"] == pytest.approx(2.0, abs=0.01)
    print(f"ffprobe of the encode: {probed}")

    log = requests.get(f"{api}/api/jobs/{job['id']}/steps/0/log", headers=auth, timeout=10).json()
    assert "libx264" in log["log"] and log["truncated"] is False
    assert not ffmpegs_in(render_cache)


def slow_encode_stack(make_stack, render_cache, **env):
    """Simulated frames, and ffmpeg reading them at the video's rate (48 frames at 8 fps: 6 s of encode)."""
    return make_stack(
        RENDER_BLENDER_CACHE_DIR=str(render_cache),
        RENDER_SANDBOX="none",
        RENDER_FFMPEG_BINARY=str(SLOW_FFMPEG),
        RENDER_PROGRESS_SECONDS="0.5",
        **env,
    )


def submit_encode(stack) -> dict:
    steps = [{"type": "encode", "format": "mp4", "fps": 8}]
    return stack.submit(width=64, height=36, frame_start=1, frame_end=48, chunk_size=24, steps=steps)


def encoding(job: dict) -> bool:
    step = job["steps"][0]
    return step["status"] == "PROCESSING" and step["progress"]["frames_done"] >= 1


def test_a_cancel_during_the_encode_stops_ffmpeg_and_the_job_ends_cancelled(make_stack, render_cache):
    stack = slow_encode_stack(make_stack, render_cache)
    stack.start_ready_worker()
    job = submit_encode(stack)
    stack.wait_for(job["id"], encoding, timeout=60)
    assert ffmpegs_in(render_cache), "ffmpeg should be encoding"
    resp = requests.post(f"{stack.api}/api/jobs/{job['id']}/cancel", headers=stack.auth(), timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "CANCELLING", resp.text

    done = stack.wait_for_status(job["id"], "CANCELLED", timeout=20)
    step = done["steps"][0]
    assert step["status"] == "CANCELLED" and 1 <= step["progress"]["frames_done"] < 48
    wait_until(lambda: not ffmpegs_in(render_cache), 5, "ffmpeg to stop")
    assert video_objects(stack, job["id"]) == [] and done["results"] is None
    log = requests.get(f"{stack.api}/api/jobs/{job['id']}/steps/0/log", headers=stack.auth(), timeout=10)
    assert log.status_code == 200 and "libx264" in log.json()["log"]


def test_a_worker_killed_mid_encode_leaves_a_step_the_sweeper_and_the_next_worker_finish_once(
    make_stack, render_cache, tmp_path
):
    # The lease (renewed twice a second by the progress writes) lapses 3 s after the kill; the message the dead
    # worker held comes back after the visibility timeout. The sweeper looks at the job once the grace period
    # since its steps began has passed (2 s here), and finds its step's lease lapsed.
    stack = slow_encode_stack(
        make_stack,
        render_cache,
        RENDER_LEASE_SECONDS="3",
        RENDER_VISIBILITY_TIMEOUT="9",
        RENDER_SWEEP_GRACE_SECONDS="2",
    )
    stack.start_ready_worker("doomed")
    job = submit_encode(stack)
    stack.wait_for(job["id"], encoding, timeout=60)
    stack.kill("doomed")  # SIGKILL to the worker's process group; ffmpeg has a session of its own
    wait_until(lambda: not ffmpegs_in(render_cache), 5, "the parent-death signal to kill ffmpeg")
    time.sleep(3.5)  # the lease lapses
    swept = stack.manage("sweep")
    assert "1 steps" in swept, swept
    stack.start_ready_worker("rescuer")

    done = stack.wait_for_status(job["id"], "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED", done
    assert done["steps"][0]["status"] == "COMPLETED" and done["steps"][0]["progress"]["frames_done"] == 48
    assert stack.completions(job["id"], "rescuer") == 1  # once, whatever the duplicate message did
    assert f"job_completed job={job['id']}" not in stack.log("doomed")
    [video] = done["results"]["videos"]
    mp4 = tmp_path / "video.mp4"
    mp4.write_bytes(requests.get(video["url"], timeout=10).content)
    probed = ffprobe(mp4)
    assert int(probed["nb_read_frames"]) == 48 and probed["duration"] == pytest.approx(6.0, abs=0.01)


class _Log:
    text = ""

    def write(self, text):
        self.text += text

    def warn(self, message):
        pass


def test_ffmpeg_encodes_in_the_sidecar_too(start_sidecar, render_cache, tmp_path):
    """On Fargate ffmpeg runs in the task's sandbox container, like Blender: by name, under a uid of its own,
    with the seccomp filter that refuses every socket (root only: the sidecar switches uids)."""
    from PIL import Image

    root = render_cache / "chunks"
    root.mkdir(mode=0o711)
    sidecar = start_sidecar(root=root, socket_path=tmp_path / "sandbox.sock", program="blender")
    encoder = FfmpegEncoder(
        sandbox=SidecarSandbox(socket_path=str(sidecar.socket_path), program="ffmpeg"),
        scratch=lambda: Path(tempfile.mkdtemp(prefix="step-", dir=root)),
        timeout=60,
        limits=Limits(memory_bytes=8 << 30, file_bytes=1 << 30, processes=256),
        max_input_bytes=1 << 30,
    )

    def frames():
        for n in range(12):
            out = io.BytesIO()
            Image.new("RGB", (65, 37), (20 * n, 90, 160)).save(out, format="PNG")  # odd sides: padded to even
            yield out.getvalue()

    seen: list[int] = []
    log = _Log()
    with encoder.encode(
        frames=frames(),
        count=12,
        size=12 * 1024,
        extension="png",
        video_format=VideoFormat.WEBM,
        fps=24,
        should_stop=lambda: False,
        on_progress=seen.append,
        log=log,
    ) as video:
        webm = tmp_path / "video.webm"
        webm.write_bytes(video.file.read())
    assert video.frames == 12 and seen[-1] == 12 and "libvpx-vp9" in log.text
    probed = ffprobe(webm)
    assert probed["codec_name"] == "vp9" and (probed["width"], probed["height"]) == (66, 38)
    assert int(probed["nb_read_frames"]) == 12 and probed["duration"] == pytest.approx(0.5, abs=0.01)
    wait_until(lambda: list(root.iterdir()) == [], 10, "the sidecar to remove the run's scratch directory")
