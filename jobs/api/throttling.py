"""Request rate limits per API key (per client address before authentication), and a limit on failed
authentications per client address, shared by every process.

The counts live in DynamoDB (one item per key and minute, expired by TTL), so a limit holds across
API processes and hosts. To keep the cost low each process batches: it adds its count to the shared
item every RENDER_THROTTLE_BATCH requests per key and minute, and judges each request by the last shared
total plus what it has not sent yet. A key can therefore overshoot by at most (batch - 1) requests per
process per minute; a quiet key costs no writes at all.

A subject (`key:<key id>`, `ip:<address>`) is hashed before it becomes part of a DynamoDB key: the
table never holds client addresses, and no header, however long, can make a key DynamoDB refuses.
The client address is REMOTE_ADDR, or behind RENDER_TRUSTED_PROXIES proxies (production: 1, the ALB)
the address the client-facing proxy appended to X-Forwarded-For; whatever the client wrote into that
header is ignored, so a new X-Forwarded-For value never buys a fresh limit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.http import JsonResponse
from rest_framework.throttling import BaseThrottle

from jobs import wiring
from jobs.api.errors import error_body
from jobs.errors import ServiceUnavailable

log = logging.getLogger(__name__)

WINDOW = 60


@dataclass
class _Tally:
    shared: int = 0  # the shared total at our last flush
    pending: int = 0  # counted here, not yet added to the shared total


class SharedCounter:
    """One process's view of the per-subject counters (thread-safe)."""

    def __init__(self, *, limit: int, batch: int, counters=None, clock=time.time):
        self.limit = limit
        self.batch = max(1, batch)
        self._counters = counters
        self._clock = clock
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._lock = threading.Lock()

    def hit(self, subject: str) -> float | None:
        """Count one request; None if allowed, else the seconds until the window resets."""
        subject = subject_digest(subject)
        now = self._clock()
        window = int(now // WINDOW)
        with self._lock:
            if len(self._tallies) > 10_000 or any(w != window for _, w in list(self._tallies)[:1]):
                self._tallies = {k: v for k, v in self._tallies.items() if k[1] == window}
            tally = self._tallies.setdefault((subject, window), _Tally())
            tally.pending += 1
            flush = tally.pending >= self.batch
            if flush:
                pending, tally.pending = tally.pending, 0
        if flush:
            counters = self._counters or wiring.throttle_counters()
            expires = datetime.fromtimestamp((window + 2) * WINDOW, UTC)
            total = counters.add(subject, window, pending, expires_at=expires)
            with self._lock:
                tally.shared = max(tally.shared, total)
        if tally.shared + tally.pending > self.limit:
            return (window + 1) * WINDOW - now
        return None

    def peek(self, subject: str) -> float | None:
        """Counts nothing: None if one more hit would be allowed, else the seconds until the window resets.

        Judged on what this process knows: the shared total at its last flush plus its own pending hits.
        """
        subject = subject_digest(subject)
        now = self._clock()
        window = int(now // WINDOW)
        with self._lock:
            tally = self._tallies.get((subject, window))
            total = tally.shared + tally.pending if tally else 0
        return (window + 1) * WINDOW - now if total >= self.limit else None


def subject_digest(subject: str) -> str:
    """128 bits of the subject's SHA-256: a fixed-size, opaque piece of a DynamoDB key."""
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or behind RENDER_TRUSTED_PROXIES proxies the one the first appended.

    Each proxy appends the address it received the request from to X-Forwarded-For, so behind N trusted
    proxies the client is the N-th element from the end; anything before it was written by the client.
    A value that is not an IP address (a proxy that did not append) falls back to REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.RENDER_TRUSTED_PROXIES
    if proxies > 0:
        hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(hops) >= proxies:
            try:
                return str(ipaddress.ip_address(hops[-proxies].strip()))
            except ValueError:
                pass
    return remote


_counter: SharedCounter | None = None
_auth_failures: SharedCounter | None = None
_counter_lock = threading.Lock()

# Failed authentications are few and the limit is small (30), so they are shared in small batches:
# a process lets through at most AUTH_FAILURE_BATCH - 1 failures more than the limit before it knows.
AUTH_FAILURE_BATCH = 5


def shared_counter() -> SharedCounter:
    global _counter
    with _counter_lock:
        if _counter is None:
            _counter = SharedCounter(limit=settings.RENDER_THROTTLE_PER_MINUTE, batch=settings.RENDER_THROTTLE_BATCH)
        return _counter


def auth_failures() -> SharedCounter:
    """Failed authentications (401 answers, failed browser logins) per client address and minute."""
    global _auth_failures
    with _counter_lock:
        if _auth_failures is None:
            _auth_failures = SharedCounter(limit=settings.RENDER_AUTH_FAILURES_PER_MINUTE, batch=AUTH_FAILURE_BATCH)
        return _auth_failures


def auth_failure_subject(request) -> str:
    return f"authfail:{client_address(request)}"


def auth_failures_wait(request) -> float | None:
    """None while the client may still try to authenticate, else seconds until it may again (counts nothing)."""
    return auth_failures().peek(auth_failure_subject(request))


def record_auth_failure(request) -> None:
    try:
        auth_failures().hit(auth_failure_subject(request))
    except ServiceUnavailable:
        # The answer is a 401 anyway; losing one count while DynamoDB is down is better than a 503.
        log.warning("could not record an authentication failure: DynamoDB unavailable")


class AuthFailureLimitMiddleware:
    """Answers 429 `too_many_auth_failures` to a client address that had too many 401s this minute.

    It runs before authentication, so a blocked client costs no key lookup at all; every 401 under /api/
    counts (a wrong, revoked or malformed key, or none). The browser login (/api/auth/) counts its
    failures itself and answers its own form.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/") or request.path.startswith("/api/auth/"):
            return self.get_response(request)
        wait = auth_failures_wait(request)
        if wait is not None:
            return too_many_auth_failures_response(wait)
        response = self.get_response(request)
        if response.status_code == 401:
            record_auth_failure(request)
        return response


def too_many_auth_failures_response(wait: float) -> JsonResponse:
    seconds = max(1, math.ceil(wait))
    body = error_body(
        "too_many_auth_failures",
        f"Too many failed authentications from your address; try again in {seconds} s.",
        {"retry_after": seconds},
    )
    return JsonResponse(body, status=429, headers={"Retry-After": str(seconds)})


class ApiKeyRateThrottle(BaseThrottle):
    """Limits requests per API key (and, before authentication, per client address) per minute."""

    def allow_request(self, request, view) -> bool:
        user = request.user
        subject = (
            f"key:{user.key_id}" if user is not None and user.is_authenticated else f"ip:{client_address(request)}"
        )
        self._wait = shared_counter().hit(subject)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
