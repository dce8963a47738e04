"""The reader both sandboxed programs share (Blender: blender_process.py, ffmpeg: ffmpeg.py): a thread that
reads the process's output line by line into a queue (None at its end), and a stop that kills and reaps the
process and takes the lines still waiting. A subclass says what a line means (`_take`)."""

from __future__ import annotations

import contextlib
import queue
import threading

from jobs.sandbox import SandboxedProcess

STOP_SECONDS = 5.0  # how long a killed program may take to be reaped


class OutputReader:
    proc: SandboxedProcess

    def _start_reading(self, name: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name=name, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.readline, b""):
            self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.lines.put(None)

    def _take(self, line: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Kill the sandbox (if it still runs), reap it, and take what the program wrote last."""
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
