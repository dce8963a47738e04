"""API keys: random, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from ..repository import ApiKeyRepository


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, repo: ApiKeyRepository, owner: str, now: datetime) -> str:
    """Make a random key, store only its hash, and return the key (shown once)."""
    key = "rk_" + secrets.token_urlsafe(32)
    repo.add(key_hash=hash_api_key(key), owner=owner, now=now)
    return key
