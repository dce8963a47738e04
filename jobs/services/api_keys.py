"""API keys: random, shown once, stored as a SHA-256 hash, with the scopes they grant."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from jobs.ports import ApiKeyRepository
from jobs.ports.values import key_id_of

KEY_PREFIX = "rk_"
KEY_BYTES = 32
# What api_key_create makes: the prefix and token_urlsafe(32), 43 characters of base64url. Anything else
# cannot be a key, so it is refused before any lookup.
KEY_FORMAT = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{43}}")

# Scopes a key may grant beyond submitting and following its owner's jobs.
SCOPE_HIGH = "high"  # may submit priority=high
SCOPE_OPERATOR = "operator"  # may use operator endpoints
SCOPES = frozenset({SCOPE_HIGH, SCOPE_OPERATOR})


def is_well_formed_api_key(key: str) -> bool:
    return KEY_FORMAT.fullmatch(key) is not None


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_id(key: str) -> str:
    """The key's public name (a prefix of its hash): safe to log, print and pass to revoke_api_key --key-id."""
    return key_id_of(hash_api_key(key))


def api_key_create(*, repo: ApiKeyRepository, owner: str, now: datetime, scopes: frozenset[str] = frozenset()) -> str:
    """Make a random key, store only its hash and scopes, and return the key (shown once)."""
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    repo.add(key_hash=hash_api_key(key), owner=owner, now=now, scopes=frozenset(scopes))
    return key
