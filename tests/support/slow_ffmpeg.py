#!/usr/bin/env python3
"""The real ffmpeg, reading its frames at the video's own rate (`-re` before the input): an encode of N frames at
F fps lasts N / F seconds, so an e2e test can cancel or kill a worker while ffmpeg runs. Used as
RENDER_FFMPEG_BINARY with RENDER_SANDBOX=none (bubblewrap runs only programs under /usr)."""

import os
import shutil
import sys

args = sys.argv[1:]
at = args.index("-i")
ffmpeg = shutil.which("ffmpeg", path="/usr/bin:/bin") or "/usr/bin/ffmpeg"
os.execv(ffmpeg, [ffmpeg, *args[:at], "-re", *args[at:]])  # noqa: S606 (a fixed program, no shell)
