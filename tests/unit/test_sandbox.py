"""The sandbox's parts that need no Blender: the seccomp filter (loaded for real in a forked child), bubblewrap's
options, the sidecar's checks of a request, the scene cache's per-owner verified copies, and how the renderer
reads a frame back (never through a link)."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from pathlib import Path, PurePosixPath

import pytest

from jobs.errors import RenderError
from jobs.renderers.blender import SandboxLimits
from jobs.renderers.blender_process import BlenderProcess
from jobs.renderers.scene_cache import SceneCache
from jobs.sandbox import Limits, seccomp
from jobs.sandbox.bubblewrap import WORKDIR, BubblewrapSandbox, _untraversable
from jobs.sandbox.sidecar import Refused, Sidecar, Slots, remove_files_of


def in_child(body) -> int:
    """Run `body()` in a forked child; its exit status (0: it returned True)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if body() else 1)
        except BaseException:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_refuses_every_listed_call_and_allows_the_rest(machine):
    code = seccomp.program(machine)
    insns = [struct.unpack("HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    refuse = len(insns) - 1
    assert insns[refuse] == (0x06, 0, 0, 0x00050000 | 1)  # RET ERRNO(EPERM)
    assert insns[refuse - 1] == (0x06, 0, 0, 0x7FFF0000)  # RET ALLOW
    audit, numbers = seccomp.ARCHES[machine]
    assert insns[1][3] == audit and insns[2] == (0x06, 0, 0, 0x80000000)  # another architecture is killed
    compared = {}
    for i, (op, jt, _jf, k) in enumerate(insns):
        if op == 0x15 and i > 1:  # JEQ on the call number: a match must land on the refusal
            assert i + 1 + jt == refuse
            compared[k] = True
    assert set(compared) == set(numbers) and len(numbers) == len(seccomp.REFUSED)


def test_a_filtered_process_has_no_sockets_of_any_kind_but_works_otherwise(tmp_path):
    def body():
        seccomp.install_program(seccomp.program())
        for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM)):
            try:
                socket.socket(family, kind)
                return False
            except PermissionError:
                pass
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            return False
        except PermissionError:
            pass
        (tmp_path / "still-writes").write_text("ok")
        return True

    assert in_child(body) == 0
    assert (tmp_path / "still-writes").read_text() == "ok"


def test_bubblewrap_gives_the_program_nothing_of_the_worker(tmp_path):
    sandbox = BubblewrapSandbox(program="blender")
    args = sandbox.arguments(scratch=tmp_path / "scratch", scene=tmp_path / "s.blend", env={"HOME": WORKDIR})
    joined = " ".join(args)
    assert args[:5] == ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]
    assert "--clearenv" in args and "--setenv HOME /work" in joined
    assert f"--bind {tmp_path / 'scratch'} /work" in joined
    assert f"--ro-bind {tmp_path / 's.blend'} /work/scene.blend" in joined
    assert "--ro-bind /usr /usr" in joined and joined.endswith("--remount-ro / --chdir /work --")
    assert "--share-net" not in joined and " / /" not in joined  # never the host's root


def test_a_closed_directory_on_the_way_is_named(tmp_path):
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    os.chmod(closed, 0o600)  # not even its owner may pass
    assert _untraversable(closed / "inner", os.getuid()) == closed
    os.chmod(closed, 0o700)
    assert _untraversable(closed / "inner", os.getuid()) is None
    assert _untraversable(closed / "inner", os.getuid() + 12345) is not None  # 0700: closed to anyone else


def test_limits_of_a_chunk_allow_every_core_for_every_frame():
    limits = SandboxLimits(memory_bytes=1, file_bytes=2, processes=3).for_chunk(4, 10)
    assert limits == Limits(
        memory_bytes=1, file_bytes=2, processes=3, cpu_seconds=int((120 + 40) * (os.cpu_count() or 1))
    )


def sidecar(root: Path) -> Sidecar:
    slots = Slots(base=20000, count=1)
    return Sidecar(socket_path=root / "s.sock", root=root, program="true", slots=slots, worker_gid=0)


def test_the_sidecar_runs_only_directories_directly_under_its_root_with_a_scene(tmp_path):
    root = tmp_path / "chunks"
    (root / "run" / "deeper").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    side = sidecar(root)
    uid = os.getuid()
    (tmp_path / "elsewhere" / "scene.blend").write_bytes(b"BLENDER")
    for bad in (None, "", str(tmp_path / "elsewhere"), str(root / "run" / "deeper"), str(root / "link")):
        with pytest.raises(Refused):
            side._scratch(bad, peer_uid=uid)
    with pytest.raises(Refused, match=r"scene\.blend"):
        side._scratch(str(root / "run"), peer_uid=uid)
    (root / "run" / "scene.blend").write_bytes(b"BLENDER")
    os.chmod(root / "run" / "scene.blend", 0o600)
    with pytest.raises(Refused, match="readable"):
        side._scratch(str(root / "run"), peer_uid=uid)
    os.chmod(root / "run" / "scene.blend", 0o644)
    assert side._scratch(str(root / "run"), peer_uid=uid) == root / "run"
    with pytest.raises(Refused, match="the worker's"):
        side._scratch(str(root / "run"), peer_uid=uid + 1)


def test_slots_are_never_shared():
    slots = Slots(base=100, count=2)
    taken = {slots.take(), slots.take()}
    assert taken == {100, 101}
    with pytest.raises(Refused, match="busy"):
        slots.take()
    slots.give(101)
    assert slots.take() == 101


def test_what_a_run_left_in_shared_places_is_removed_and_nothing_else(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "file").write_text("x")
    (tmp_path / "other").write_text("y")
    remove_files_of(os.getuid(), tmp_path)
    assert list(tmp_path.iterdir()) == []  # all ours here; now one that is not
    (tmp_path / "keep").write_text("z")
    remove_files_of(os.getuid() + 12345, tmp_path)
    assert (tmp_path / "keep").exists()


def test_the_runs_scratch_directory_under_a_shared_place_outlives_the_sweep_of_that_place(tmp_path):
    """Its absence tells the worker the run is cleaned up: a sweep of /tmp that removed it (it is the run uid's)
    before the sweep of /var/tmp said so too early (CI: a test found the run's file in /var/tmp)."""
    scratch = tmp_path / "cache" / "chunks" / "run"
    scratch.mkdir(parents=True)
    (scratch / "frame.png").write_text("x")
    (tmp_path / "left").write_text("y")
    remove_files_of(os.getuid(), tmp_path, keep=scratch)
    assert scratch.is_dir() and list(scratch.iterdir()) == []
    assert not (tmp_path / "left").exists()


def downloads(bodies: dict[str, bytes], calls: list):
    def download(*, owner, sha256, dest):
        calls.append((owner, sha256))
        body = bodies[owner]
        if hashlib.sha256(body).hexdigest() != sha256:
            raise RenderError("The scene file does not match its SHA-256.")
        Path(dest).write_bytes(body)

    return download


def test_the_cache_keeps_each_owners_copy_apart_and_verifies_it_on_every_use(tmp_path):
    body = b"a real scene"
    sha = hashlib.sha256(body).hexdigest()
    calls: list = []
    cache = SceneCache(root=tmp_path, max_bytes=10**6, download=downloads({"alice": body, "bob": b"\0" * 12}, calls))
    alice = cache.path(owner="alice", sha256=sha)
    assert alice.read_bytes() == body and oct(alice.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RenderError, match="SHA-256"):  # bob declared alice's hash, uploaded zeros
        cache.path(owner="bob", sha256=sha)
    assert cache.path(owner="alice", sha256=sha) == alice and calls == [("alice", sha), ("bob", sha)]

    alice.write_bytes(b"\0" * len(body))  # tampered on disk: dropped and fetched again
    assert cache.path(owner="alice", sha256=sha).read_bytes() == body and len(calls) == 3
    alice.unlink()
    alice.symlink_to(tmp_path / "elsewhere")  # a link is never served
    (tmp_path / "elsewhere").write_bytes(body)
    served = cache.path(owner="alice", sha256=sha)
    assert not served.is_symlink() and len(calls) == 4
    assert oct(tmp_path.joinpath("scenes").stat().st_mode & 0o777) == "0o711"


class Run(BlenderProcess):
    def __init__(self, scratch: Path, *, seq: int | None = None):  # only what reading a frame back needs
        self.scratch = scratch
        self.file_limit = 10
        self.workdir = "/work"
        self.out = PurePosixPath("/work/out") / ("" if seq is None else str(seq))


def test_a_frame_is_read_only_from_a_regular_file_never_through_a_link(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_00001.png").write_bytes(b"png")
    assert Run(tmp_path)._read_output("frame_00001.png", 1) == b"png"
    assert not (out / "frame_00001.png").exists()  # taken

    secret = tmp_path.parent / "secret"
    secret.write_bytes(b"worker's")
    (out / "frame_00002.png").symlink_to(secret)
    with pytest.raises(RenderError, match="could not be read back"):
        Run(tmp_path)._read_output("frame_00002.png", 2)
    os.mkfifo(out / "frame_00003.png")
    with pytest.raises(RenderError, match="not a file"):
        Run(tmp_path)._read_output("frame_00003.png", 3)
    (out / "frame_00004.png").write_bytes(b"x" * 11)
    with pytest.raises(RenderError, match="larger"):
        Run(tmp_path)._read_output("frame_00004.png", 4)
    (out / "frame_00005.png").write_bytes(b"ok")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "frame_00005.png").write_bytes(b"worker's")
    (out).rename(tmp_path / "real-out")
    (tmp_path / "out").symlink_to(other)  # the directory swapped for a link
    with pytest.raises(RenderError, match="could not be read back"):
        Run(tmp_path)._read_output("frame_00005.png", 5)


def test_a_persistent_processs_frame_is_read_only_from_its_chunks_directory(tmp_path):
    (tmp_path / "out" / "2").mkdir(parents=True)
    (tmp_path / "out" / "2" / "frame_00001.png").write_bytes(b"png")
    assert Run(tmp_path, seq=2)._read_output("frame_00001.png", 1) == b"png"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "frame_00002.png").write_bytes(b"worker's")
    (tmp_path / "out" / "3").symlink_to(tmp_path / "elsewhere")  # a chunk's directory swapped for a link
    with pytest.raises(RenderError, match="could not be read back"):
        Run(tmp_path, seq=3)._read_output("frame_00002.png", 2)
