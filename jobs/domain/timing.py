"""How long a worker holds its work, named once: the settings (renderproject/settings.py) and the deployment
(infra/config.py) both take their defaults and their one rule from here."""

from __future__ import annotations

# A worker holds a chunk by a lease in DynamoDB and keeps its SQS message invisible while it works; a dead
# worker's chunk is taken over once both lapse (15 s: issue 12 asks for under 20 s). The lease must lapse no
# later than the message reappears, so a redelivery finds it lapsed (or waits for it) instead of dropping work.
LEASE_SECONDS = 12
VISIBILITY_TIMEOUT_SECONDS = 15
# Receives of one message before SQS moves it to the dead-letter queue (poison work, a crashing delivery).
MAX_RECEIVE_COUNT = 5


def lease_problem(lease_seconds: float, visibility_timeout_seconds: float) -> str | None:
    """Why a lease and a visibility timeout do not fit together, or None."""
    if not 0 < lease_seconds < visibility_timeout_seconds:
        return "the lease must be above 0 and shorter than the visibility timeout"
    return None
