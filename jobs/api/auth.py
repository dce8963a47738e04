"""API-key authentication: `Authorization: Bearer <key>`, or a session login for the browsable API."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from jobs import wiring
from jobs.adapters import logs
from jobs.ports.values import ApiKeyRecord
from jobs.services.api_keys import hash_api_key, is_well_formed_api_key

SESSION_KEY = "api_key_hash"


@dataclass(frozen=True)
class ApiKeyUser:
    """The caller: an owner proven by an API key, and what the key grants.

    DRF reads `is_authenticated`; throttling and logs, `key_id`; views, `owner` and `scopes` (for
    example `SCOPE_HIGH in request.user.scopes` before accepting priority=high). The browsable API's
    navbar shows str(user): the owner.
    """

    owner: str
    key_id: str = ""  # a prefix of the key's hash: names the key in logs and rate limits
    scopes: frozenset[str] = frozenset()
    is_authenticated: bool = True

    def __str__(self) -> str:
        return self.owner

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyUser:
        """The authenticated caller; from here on the request's log lines name its owner and key id."""
        logs.bind(owner=record.owner, key_id=record.key_id)
        return cls(record.owner, key_id=record.key_id, scopes=record.scopes)


# Unknown and revoked keys are remembered briefly too, so a flood of bad keys does not become a flood
# of reads; briefly, so a key created a moment after someone tried it works soon.
NEGATIVE_SECONDS = 5
_UNKNOWN = "-"  # what the cache holds for an unknown or revoked key


class KeyCache:
    """Key hash -> its active record for RENDER_API_KEY_CACHE_SECONDS, so most requests skip the GetItem.

    Held in Django's cache `api_keys` (settings.CACHES: local memory, per process), so a revocation lands
    in every process within the TTL.
    """

    alias = "api_keys"

    def record_for(self, key_hash: str) -> ApiKeyRecord | None:
        cache = caches[self.alias]
        hit = cache.get(key_hash)
        if hit is not None:
            return None if hit == _UNKNOWN else hit
        record = wiring.api_key_repository().record_for(key_hash)
        if record is not None and record.active:
            cache.set(key_hash, record, settings.RENDER_API_KEY_CACHE_SECONDS)
            return record
        cache.set(key_hash, _UNKNOWN, min(NEGATIVE_SECONDS, settings.RENDER_API_KEY_CACHE_SECONDS))
        return None

    def clear(self) -> None:
        caches[self.alias].clear()


key_cache = KeyCache()


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
        record = key_cache.record_for(hash_api_key(key))
        if record is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyUser.of(record), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="render-farm"'


def session_user(django_request) -> ApiKeyUser | None:
    """The owner a browser session logged in as, or None; a session whose key was revoked is ended."""
    session = django_request.session
    key_hash = session.get(SESSION_KEY)
    if not key_hash:
        return None
    record = key_cache.record_for(key_hash)
    if record is None:
        session.flush()
        return None
    return ApiKeyUser.of(record)


class BrowserApiKeyAuthentication(SessionAuthentication):
    """The browsable API's login: the key's hash in a server-side session, with CSRF enforced.

    A session outlives nothing its key does: once the key is revoked (seen within the key cache's TTL)
    the session is ended on the server, not merely ignored.
    """

    def authenticate(self, request):
        user = session_user(request._request)
        if user is None:
            return None
        self.enforce_csrf(request)
        return user, None


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
