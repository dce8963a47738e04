"""`python -m jobs.worker.healthcheck`: the image's HEALTHCHECK, by role (RENDER_ROLE=api|worker|webhooks).

api: GET /healthz on the local port answers 200. worker, webhooks: the worker's event loop touched its
liveness file within the last minute (see jobs/worker/bootsteps.py).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request

LIVENESS_FILE = os.environ.get("RENDER_LIVENESS_FILE", "/tmp/render-worker-alive")  # noqa: S108 - container-local
LIVENESS_MAX_AGE = 60


def main() -> int:
    role = os.environ.get("RENDER_ROLE", "api")
    if role in ("worker", "webhooks"):
        try:
            return 0 if time.time() - os.path.getmtime(LIVENESS_FILE) < LIVENESS_MAX_AGE else 1
        except OSError:
            return 1
    port = os.environ.get("RENDER_API_BIND", "0.0.0.0:8000").rsplit(":", 1)[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
