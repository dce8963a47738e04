"""Opaque pagination cursors: a DynamoDB key with the listing it continues, bound to its scope and signed."""

from __future__ import annotations

from typing import Any

from django.core import signing

from jobs.errors import InvalidCursor

SALT = "jobs.repository.cursor"


def encode_cursor(key: dict[str, Any], scope: str, **listing: Any) -> str:
    """`listing` (limit, filter) travels with the key, so the cursor alone continues the same listing."""
    return signing.dumps({"o": scope, "k": key, "l": listing}, salt=SALT, compress=True)


def decode_cursor(cursor: str, scope: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The key to continue from and the listing's parameters; InvalidCursor if forged or for another scope."""
    try:
        payload = signing.loads(cursor, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(payload, dict) or payload.get("o") != scope or not isinstance(payload.get("k"), dict):
        raise InvalidCursor()
    listing = payload.get("l")
    return payload["k"], listing if isinstance(listing, dict) else {}
