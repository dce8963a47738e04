"""Opaque pagination cursors: a DynamoDB key, bound to its owner and signed, so it cannot be forged."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.core import signing

from ..errors import InvalidCursor

SALT = "jobs.repository.cursor"


def encode_cursor(key: dict[str, Any], scope: str) -> str:
    payload = json.dumps({"o": scope, "k": key}, separators=(",", ":"))
    return signing.dumps(base64.urlsafe_b64encode(payload.encode()).decode(), salt=SALT, compress=True)


def decode_cursor(cursor: str, scope: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(signing.loads(cursor, salt=SALT)))
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(payload, dict) or payload.get("o") != scope or not isinstance(payload.get("k"), dict):
        raise InvalidCursor()
    return payload["k"]
