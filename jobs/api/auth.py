"""API-key authentication: `Authorization: Bearer <key>`, or a signed-cookie login for the browsable API."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from .. import wiring
from ..services.api_keys import hash_api_key, is_well_formed_api_key

SESSION_KEY = "api_key_hash"


@dataclass(frozen=True)
class ApiKeyUser:
    """The caller: an owner name proven by an API key. DRF reads `is_authenticated`; throttling, `key_id`."""

    owner: str
    key_id: str = ""  # a prefix of the key's hash: names the key in logs and rate limits
    is_authenticated: bool = True


class _OwnerCache:
    """Key hash -> owner for a short time, so most requests skip the GetItem; revocation lands within the TTL."""

    def __init__(self, max_entries: int = 10_000):
        self._entries: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def owner_for(self, key_hash: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit and hit[1] > now:
            return hit[0]
        owner = wiring.api_key_repository().owner_for(key_hash)
        # Unknown keys are remembered briefly too, so a flood of bad keys does not become a flood of reads.
        ttl = (
            settings.RENDER_API_KEY_CACHE_SECONDS
            if owner is not None
            else min(5, settings.RENDER_API_KEY_CACHE_SECONDS)
        )
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key_hash] = (owner, now + ttl)
        return owner

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


owner_cache = _OwnerCache()


class BearerApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise exceptions.AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
        if not is_well_formed_api_key(key):  # no lookup for what cannot be a key
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        key_hash = hash_api_key(key)
        owner = owner_cache.owner_for(key_hash)
        if owner is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyUser(owner, key_id=key_hash[:16]), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="render-farm"'


class BrowserApiKeyAuthentication(SessionAuthentication):
    """The browsable API's login: the key's hash in a signed session cookie, with CSRF enforced."""

    def authenticate(self, request):
        key_hash = request._request.session.get(SESSION_KEY)
        if not key_hash:
            return None
        owner = owner_cache.owner_for(key_hash)
        if owner is None:
            return None
        self.enforce_csrf(request)
        return ApiKeyUser(owner, key_id=key_hash[:16]), None


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "jobs.api.auth.BearerApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key from `manage.py create_api_key`."}


class BrowserScheme(OpenApiAuthenticationExtension):
    target_class = "jobs.api.auth.BrowserApiKeyAuthentication"
    name = "browserLogin"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
