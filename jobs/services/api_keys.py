"""API keys: random, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from ..repository import ApiKeyRepository

KEY_PREFIX = "rk_"
KEY_BYTES = 32
# What api_key_create makes: the prefix and token_urlsafe(32), 43 characters of base64url. Anything else
# cannot be a key, so it is refused before any lookup.
KEY_FORMAT = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{43}}")


def is_well_formed_api_key(key: str) -> bool:
    return KEY_FORMAT.fullmatch(key) is not None


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, repo: ApiKeyRepository, owner: str, now: datetime) -> str:
    """Make a random key, store only its hash, and return the key (shown once)."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    repo.add(key_hash=hash_api_key(key), owner=owner, now=now)
    return key
