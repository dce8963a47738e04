"""One submission of a scene to the farm, run on a thread of its own: pack a copy of the file's resources, upload
it, submit the job (waiting while the farm reads the file), then follow the job until it ends. Blender's UI only
reads `snapshot()` from a timer and calls `cancel()`; nothing here touches bpy, so it is tested outside Blender."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .client import ApiError, Client, Stopped, file_sha256, one_line, upload_file

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
PACK_TIMEOUT = 600.0  # seconds for Blender to pack a copy's resources (big texture sets take a while)
READ_TIMEOUT = 600.0  # seconds a submit waits for the farm to read the file (409 scene_file_inspecting)
RETRY_AFTER_DEFAULT, RETRY_AFTER_MIN, RETRY_AFTER_MAX = 3.0, 0.5, 30.0  # bounds on the API's Retry-After
SCENE_LABEL_MAX = 200

PACKING, UPLOADING, READING, FOLLOWING, ENDED, STOPPED, ERROR = (
    "packing", "uploading", "reading", "following", "ended", "stopped", "error"
)  # fmt: skip

# Run by a second Blender on the copy (never on the person's file): pack every resource it can find, save.
# A file it cannot find stays outside: the farm then refuses the job naming it, with how to fix it.
PACK_SCRIPT = """
import sys, bpy
bpy.context.preferences.filepaths.save_version = 0
try:
    bpy.ops.file.pack_all()
except RuntimeError as exc:
    print("render-farm: " + str(exc).strip(), file=sys.stderr)
bpy.ops.wm.save_mainfile()
"""


def pack_resources(copy: Path, *, blender: str, should_stop: Callable[[], bool]) -> Path:
    """Pack the resources of `copy` (a saved copy of the person's file) into it, with another Blender process
    that runs none of the file's scripts; returns `copy`. Stopped if told to stop (the process is killed)."""
    argv = [blender, "-b", "--factory-startup", "-noaudio", "-Y", str(copy)]
    argv += ["--python-exit-code", "1", "--python-expr", PACK_SCRIPT]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + PACK_TIMEOUT
    while True:
        try:
            output, _ = proc.communicate(timeout=0.2)  # retried on timeout without losing output
            break
        except subprocess.TimeoutExpired:
            if should_stop() or time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                if should_stop():
                    raise Stopped() from None
                raise ApiError(0, "packing_failed", f"packing the resources took over {PACK_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        lines = output.decode(errors="replace").splitlines()
        errors = [line for line in lines if "Error" in line or "render-farm:" in line] or lines[-1:] or ["no output"]
        raise ApiError(0, "packing_failed", f"Blender could not pack a copy of the file: {errors[-1]}")
    return copy


def job_body(
    *, label: str, chunk_size: int, priority: str, frame_range: tuple[int, int] | None, frame_list: str | None = None
) -> dict:
    """The job's fields but the scene file; a frame list (`1-100x2,150`, checked by the farm) in place of a range;
    with neither, the farm renders the file's own range (read from it)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", label).strip()[:SCENE_LABEL_MAX] or "blender scene"
    body = {"scene": name, "renderer": "blender", "chunk_size": chunk_size, "priority": priority}
    if frame_list:
        body["frames"] = frame_list
    elif frame_range is not None:
        body["frame_start"], body["frame_end"] = frame_range
    return body


@dataclass(frozen=True)
class Snapshot:
    """What the panel shows of a submission at one moment."""

    stage: str
    sent: int = 0
    size: int = 0
    job: dict | None = None
    error: str | None = None
    notice: str | None = None  # a passing problem while following (the farm unreachable): still trying
    console_url: str | None = None

    @property
    def job_id(self) -> str | None:
        return self.job["id"] if self.job else None

    @property
    def status(self) -> str | None:
        return self.job["status"] if self.job else None

    @property
    def active(self) -> bool:
        return self.stage in (PACKING, UPLOADING, READING, FOLLOWING)

    @property
    def fraction(self) -> float:
        """The upload's share sent, then the job's frames done (0 to 1)."""
        if self.job:
            p = self.job["progress"]
            return p["frames_done"] / p["frames_total"] if p["frames_total"] else 0.0
        return self.sent / self.size if self.size else 0.0

    @property
    def line(self) -> str:
        """One line for the panel (errors included, always on one line)."""
        if self.error:
            return f"Error: {self.error}"
        if self.job is None:
            return {
                PACKING: "Packing the file's resources into a copy...",
                UPLOADING: f"Uploading the scene: {self.fraction:.0%} of {self.size / 1e6:.1f} MB",
                READING: "The farm is reading the scene file's settings...",
                STOPPED: "Cancelled before the job was submitted",
            }.get(self.stage, self.stage)
        p, job = self.job["progress"], self.job
        text = f"Job {job['id'][:8]}: {job['status']}, {p['frames_done']}/{p['frames_total']} frames"
        if job["status"] == "PROCESSING" and p.get("eta_seconds") is not None:
            text += f", ETA {_duration(p['eta_seconds'])}"
        if job.get("error"):
            text += f": {one_line(job['error'])}"
        if self.notice:
            text += f" ({self.notice})"
        return text


class Submission:
    """Submit one packed copy of a scene and follow its job, on a daemon thread. `cancel()` cancels the job
    (or stops before one exists); `stop()` only stops following (the job goes on). Thread-safe."""

    def __init__(
        self,
        *,
        client: Client,
        scene_copy: Path,
        body: dict,
        pack: Callable[..., Path],
        cleanup: Callable[[], None],
        poll_seconds: float,
    ):
        self.client, self.scene_copy, self.body = client, scene_copy, body
        self.pack, self.cleanup, self.poll_seconds = pack, cleanup, poll_seconds
        self.idempotency_key = str(uuid.uuid4())  # one per submission: a repeated submit makes one job
        self.submitted = threading.Event()  # set once the job exists, or the submission ended without one
        self.finished = threading.Event()
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._cancel = self._stop = self._cancel_sent = False
        self._state = Snapshot(stage=PACKING)
        self._thread = threading.Thread(target=self.run, name="render-farm-submission", daemon=True)

    def start(self) -> Submission:
        self._thread.start()
        return self

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._state

    def cancel(self) -> None:
        with self._lock:
            self._cancel = True
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
        self._wake.set()

    def run(self) -> None:
        """The whole submission (the thread's body; tests call it directly)."""
        try:
            try:
                sha256 = self._upload(self.pack(self.scene_copy, should_stop=self._stopping))
            finally:
                self.cleanup()
            job = self._submit({**self.body, "scene_file": sha256})
            self._update(stage=FOLLOWING, job=job, console_url=self.client.console_url(job["id"]))
            self.submitted.set()
            self._follow(job["id"])
        except Stopped:
            self._update(stage=STOPPED)
        except ApiError as exc:
            self._update(stage=ERROR, error=exc.message)
        except Exception as exc:  # a bug: said in the panel, the traceback in Blender's console
            traceback.print_exc(file=sys.stderr)
            self._update(stage=ERROR, error=f"unexpected error: {one_line(repr(exc))}")
        finally:
            self.submitted.set()
            self.finished.set()

    def _upload(self, path: Path) -> str:
        sha256, size = file_sha256(path)
        self._update(stage=UPLOADING, size=size)
        upload = self.client.declare_asset(sha256, size).get("upload")
        if upload is None:  # these bytes are stored already (files are content-addressed per owner)
            self._update(sent=size)
            return sha256
        upload_file(upload, path, progress=self._sent, should_stop=self._stopping)
        return sha256

    def _submit(self, body: dict) -> dict:
        """POST the job; while the farm is still reading a file that gives the range, wait its Retry-After."""
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            try:
                return self.client.submit(body, idempotency_key=self.idempotency_key)
            except ApiError as exc:
                if exc.code != "scene_file_inspecting" or time.monotonic() > deadline:
                    raise
                self._update(stage=READING)
                wait = exc.retry_after if exc.retry_after is not None else RETRY_AFTER_DEFAULT
                self._pause(min(max(wait, RETRY_AFTER_MIN), RETRY_AFTER_MAX))

    def _follow(self, job_id: str) -> None:
        while True:
            with self._lock:
                cancel, stop = self._cancel and not self._cancel_sent, self._stop
            if stop:
                raise Stopped()
            try:
                if cancel:
                    self._cancel_sent = True
                    self._cancel_job(job_id)
                job = self.client.job(job_id)
            except ApiError as exc:
                if exc.status not in (0, 429) and exc.status < 500:
                    raise
                self._update(notice=f"{exc.message}; still trying")
            else:
                self._update(job=job, notice=None)
                if job["status"] in FINAL:
                    self._update(stage=ENDED)
                    return
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _cancel_job(self, job_id: str) -> None:
        try:
            self.client.cancel(job_id)
        except ApiError as exc:
            if exc.status != 409:  # 409: it ended meanwhile; the next poll shows how
                raise

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()
        if self._stopping():
            raise Stopped()

    def _stopping(self) -> bool:
        with self._lock:
            return self._cancel or self._stop

    def _sent(self, n: int) -> None:
        with self._lock:
            self._state = replace(self._state, sent=self._state.sent + n)

    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
