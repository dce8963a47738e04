"""The render sandbox sidecar: runs Blender (and ffmpeg, for encode steps) for the worker of its task, confined
without namespaces.

For ECS Fargate, where no user namespace can be made (so no bubblewrap). It runs in a container of its own
in the worker's task (`bin/entrypoint sandbox`, CDK: infra/constructs/worker_service.py): its own PID
namespace (it sees no process of the worker), a read-only root filesystem, no application secrets, and one
volume shared with the worker, where the worker puts each chunk's scratch directory with the scene file.
It is root in its container only to switch users: every run gets a uid of its own (one per slot, never two
runs at once), in the group of no one, with no_new_privs, a seccomp filter refusing every socket (no network,
so not the task's credentials endpoint either), resource limits, a umask keeping its files in its scratch
directory's group, and only the environment it is given. The scratch directory is made the run's (mode 2770,
group of the worker, so the worker reads the frames); after the run every process of that uid is killed
and, once the worker hangs up, the scratch directory is removed.

Protocol, one connection per run, on a Unix socket only the worker's group may open:
  worker -> sidecar  one JSON line {"args": [...], "scratch": "<dir under the root>", "env": {...},
                     "limits": {...}, "program": "blender" | "ffmpeg" (default blender)} (`"ping": true`
                     instead asks only whether the sidecar is up). Only Blender's runs need scene.blend in
                     their scratch directory; the programs are the sidecar's own (its command line), by name.
  sidecar -> worker  JSON lines: {"started": <pid>} or {"error": "..."}; {"out": "<line>"} per line of output;
                     {"exit": <status>} when the program has ended.
  worker -> sidecar  after the start, with `"stdin": true` in the request (a persistent Blender's commands):
                     {"in": "<line>"} per line for the program's input, written without ever blocking (a run
                     that leaves its input unread is killed); any other line is ignored.
The worker closing its end (the chunk is done, cancelled, or the worker died) kills the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import threading
from pathlib import Path

from jobs.sandbox import SCENE_NAME, Limits
from jobs.sandbox.confine import child_setup, popen
from jobs.sandbox.unconfined import line_buffered

log = logging.getLogger("render-sandbox")
BLENDER = "blender"  # the program a request runs unless it names another (`program`)
MAX_REQUEST = 64 * 1024
REQUEST_SECONDS = 10.0
ENV_NAMES = frozenset(
    {"HOME", "TMPDIR", "LANG", "BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "BLENDER_USER_DATAFILES"}
)
PATH = "/usr/local/bin:/usr/bin:/bin"
# World-writable places a run could leave files in besides its scratch directory (in the sidecar's container
# the root filesystem is read-only, so these are all there is): emptied of the run's files after each run.
SCRUB = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108


class Refused(Exception):
    """A request the sidecar will not run; the message goes back to the worker."""


class Slots:
    """uids base..base+count-1, each held by at most one run."""

    def __init__(self, *, base: int, count: int):
        self._free = list(range(base, base + count))
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if not self._free:
                raise Refused("every sandbox slot is busy")
            return self._free.pop(0)

    def give(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


class Sidecar:
    def __init__(
        self,
        *,
        socket_path: Path,
        root: Path,
        program: str,
        slots: Slots,
        worker_gid: int | None,
        scrub: tuple[Path, ...] = SCRUB,
        others: dict[str, str] | None = None,
    ):
        self.socket_path = socket_path
        self.scrub = scrub
        self.root = root.resolve()
        self.program = shutil.which(program) or program
        # The programs a request may name besides Blender (`ffmpeg`), each resolved once, here.
        self.others = {name: shutil.which(path) or path for name, path in (others or {}).items()}
        self.slots = slots
        self.worker_gid = worker_gid

    def serve(self, ready: threading.Event | None = None) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        if self.worker_gid is not None:
            os.chown(self.socket_path, 0, self.worker_gid)
        os.chmod(self.socket_path, 0o660)  # the worker's group only: a sandboxed uid is in no group of it
        server.listen(64)
        log.info("render sandbox listening on %s (root %s, program %s)", self.socket_path, self.root, self.program)
        if ready is not None:
            ready.set()
        # Back in Python every second: a SIGTERM that the kernel hands to another thread (one waiting on a run)
        # only sets a flag, and its handler runs when this, the main thread, next runs Python code.
        server.settimeout(1.0)
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                peer_uid, peer_gid = _peer(conn)
                request = _read_request(conn)
                if request.get("ping"):
                    _send(conn, {"pong": True})
                    return
                self._run(conn, request, peer_uid=peer_uid, peer_gid=peer_gid)
            except Refused as exc:
                with contextlib.suppress(OSError):
                    _send(conn, {"error": str(exc)})
            except Exception:
                log.exception("render sandbox: a run failed")
                with contextlib.suppress(OSError):
                    _send(conn, {"error": "the sandbox failed (its log has details)"})

    def _run(self, conn: socket.socket, request: dict, *, peer_uid: int, peer_gid: int) -> None:
        name = request.get("program", BLENDER)
        program = self.program if name == BLENDER else self.others.get(name) if isinstance(name, str) else None
        if program is None:
            raise Refused(f"program must be one of {', '.join([BLENDER, *sorted(self.others)])}")
        scratch = self._scratch(request.get("scratch"), peer_uid=peer_uid, scene=name == BLENDER)
        args = request.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) and "\0" not in a for a in args):
            raise Refused("args must be a list of strings")
        limits = Limits(**{k: int(v) for k, v in (request.get("limits") or {}).items() if k in Limits().as_dict()})
        env = {k: str(v) for k, v in (request.get("env") or {}).items() if k in ENV_NAMES and "\0" not in str(v)}
        uid = self.slots.take()
        watchers: list[threading.Thread] = []  # they kill by the uid: ended before it goes to another run
        try:
            os.lchown(scratch, uid, peer_gid)
            # the run's; its files in the worker's group (so the worker reads the frames), no one else's
            os.chmod(scratch, 0o2770)  # noqa: S103
            proc = popen(
                [*line_buffered(), program, *args],
                cwd=str(scratch),
                env={**env, "PATH": PATH},
                preexec=child_setup(parent=os.getpid(), limits=limits, no_sockets=True),
                user=uid,
                group=uid,
                stdin=request.get("stdin") is True,
            )
            _send(conn, {"started": proc.proc.pid})
            watchers = [
                threading.Thread(target=_kill_on_hangup, args=(conn, proc, uid), daemon=True),
                threading.Thread(target=_end_with_the_program, args=(proc, uid), daemon=True),
            ]
            for watcher in watchers:
                watcher.start()
            try:
                while line := proc.readline():
                    _send(conn, {"out": line.decode("utf-8", errors="replace").rstrip("\r\n")})
                _send(conn, {"exit": proc.wait()})
            except OSError:  # the worker hung up mid-run
                proc.kill()
            finally:
                proc.kill()
                with contextlib.suppress(TimeoutError):
                    proc.wait(timeout=5)
                proc.close()  # what the program left behind: killed by the watchers, and again below
            watchers[0].join()  # the worker reads its last frames, then hangs up
        finally:
            if any(watcher.is_alive() for watcher in watchers):  # an error before the worker hung up
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # ends the hang-up watcher's read
            for watcher in watchers:
                watcher.join()
            kill_all_of(uid)
            for place in self.scrub:  # the scratch directory (the run's own) may lie under one: kept till last
                remove_files_of(uid, place, keep=scratch)
            shutil.rmtree(scratch, ignore_errors=True)  # last: its absence says the run is cleaned up
            self.slots.give(uid)

    def _scratch(self, given, *, peer_uid: int, scene: bool = True) -> Path:
        """The run's directory: directly under the root, a real directory of the worker's, with the scene (for
        Blender)."""
        if not isinstance(given, str) or not given:
            raise Refused("scratch must name a directory")
        path = Path(given)
        if path.parent.resolve() != self.root or path.name in ("", ".", ".."):
            raise Refused(f"scratch must be a directory directly under {self.root}")
        try:
            info = os.lstat(path)
            scene_info = os.lstat(path / SCENE_NAME) if scene else None
        except FileNotFoundError as exc:
            raise Refused(f"scratch must hold {SCENE_NAME}: {exc.filename} is missing") from None
        if not stat.S_ISDIR(info.st_mode) or (peer_uid != 0 and info.st_uid != peer_uid):
            raise Refused("scratch must be a directory of the worker's")
        if scene_info is not None and (not stat.S_ISREG(scene_info.st_mode) or not scene_info.st_mode & stat.S_IROTH):
            raise Refused(f"{SCENE_NAME} must be a regular file readable by the sandbox")
        return path


def _end_with_the_program(proc, uid: int) -> None:
    """When the program ends, so does every process it left behind: one that left its session would hold its
    output open, and the run would not end."""
    proc.wait()
    kill_all_of(uid)


def _kill_on_hangup(conn: socket.socket, proc, uid: int) -> None:
    """The worker closing its end (done, cancelled or dead) ends the run, every process of its uid (the
    program's process group is not enough: a process that left its session holds the output open, and the
    run would go on); until then, `{"in": ...}` lines go to the program's input (when it has one), never
    blocking: a full input or a bad line ends the run."""
    with contextlib.suppress(OSError, ValueError), conn.makefile("rb") as lines:
        for raw in lines:
            if proc.proc.stdin is None:
                continue
            message = json.loads(raw)
            text = message.get("in") if isinstance(message, dict) else None
            if isinstance(text, str) and "\0" not in text and "\n" not in text:
                proc.send(text)  # OSError (full, or ended) leaves the loop and kills the run
    proc.kill()
    kill_all_of(uid)


def kill_all_of(uid: int) -> None:
    """SIGKILL every process of `uid` (those that left the run's process group too): kill(-1) as that uid, from
    a forked child that does nothing but switch to it, signal and exit."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, but not the caller itself
        except BaseException:
            code = 1
        os._exit(code)
    os.waitpid(pid, 0)


def remove_files_of(uid: int, place: Path, *, keep: Path | None = None) -> None:
    """Remove whatever `uid` owns under `place` (never following links), but for the directory `keep` and the
    directories on the way to it (what they hold goes)."""
    kept = str(keep) if keep is not None else None
    for top, dirs, files in os.walk(place, onerror=lambda exc: None):
        for name in files + dirs:
            path = os.path.join(top, name)
            if kept is not None and (path == kept or kept.startswith(path + os.sep)):
                continue
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if info.st_uid != uid:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(path, ignore_errors=True)
                    dirs.remove(name) if name in dirs else None
                else:
                    os.unlink(path)


def _peer(conn: socket.socket) -> tuple[int, int]:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, gid = struct.unpack("3i", creds)
    return uid, gid


def _read_request(conn: socket.socket) -> dict:
    conn.settimeout(REQUEST_SECONDS)
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise Refused("no request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise Refused("request too large")
    conn.settimeout(None)
    try:
        request = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise Refused("the request is not JSON") from None
    if not isinstance(request, dict):
        raise Refused("the request is not a JSON object")
    return request


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    parser.add_argument("--socket", default=env("RENDER_SANDBOX_SOCKET", "/sandbox/run/sandbox.sock"))
    parser.add_argument("--root", default=env("RENDER_SANDBOX_ROOT", "/sandbox/chunks"))
    parser.add_argument("--program", default=env("RENDER_BLENDER_BINARY", "blender"))
    parser.add_argument("--ffmpeg", default=env("RENDER_FFMPEG_BINARY", "ffmpeg"), help="encode steps' program")
    parser.add_argument("--uid-base", type=int, default=int(env("RENDER_SANDBOX_UID", "20000")))
    parser.add_argument("--slots", type=int, default=int(env("RENDER_SANDBOX_SLOTS", "16")))
    parser.add_argument("--worker-gid", type=int, default=int(env("RENDER_SANDBOX_WORKER_GID", "10001")))
    parser.add_argument("--ping", action="store_true", help="only ask a running sidecar whether it answers")
    args = parser.parse_args(argv)
    if args.ping:  # the container's health check
        from jobs.sandbox.client import SidecarSandbox

        try:
            SidecarSandbox(socket_path=args.socket).check()
        except OSError as exc:
            raise SystemExit(f"render sandbox: {exc}") from None
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.geteuid() != 0:
        raise SystemExit("render sandbox: must start as root (it runs each render as a uid of its own)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Sidecar(
        socket_path=Path(args.socket),
        root=Path(args.root),
        program=args.program,
        slots=Slots(base=args.uid_base, count=args.slots),
        worker_gid=args.worker_gid,
        others={"ffmpeg": args.ffmpeg},
    ).serve()


if __name__ == "__main__":
    main()
