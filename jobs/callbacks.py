"""Webhook rules in plain Python: which callback URLs a job may carry, which addresses may be called, and the
signature a receiver checks (HMAC-SHA256 over `<timestamp>.<body>` with the owner's secret)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

MAX_CALLBACK_URL = 2048
SIGNATURE_VERSION = "v1"
TIMESTAMP_HEADER = "X-Render-Timestamp"
SIGNATURE_HEADER = "X-Render-Signature"
DELIVERY_HEADER = "X-Render-Delivery"


class CallbackRefused(ValueError):
    """A callback URL or address that the policy does not allow; the message says why, for a person."""


def check_callback_url(url: str, *, https_only: bool, allow_private: bool) -> str:
    """The URL as given if a job may carry it (absolute http(s), a host, no credentials, at most 2048
    characters, https where `https_only`, no literal address the policy refuses); else CallbackRefused."""
    if len(url) > MAX_CALLBACK_URL:
        raise CallbackRefused(f"At most {MAX_CALLBACK_URL} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise CallbackRefused("Must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused("Not a valid URL.") from exc
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes:
        raise CallbackRefused("Must be an absolute https:// URL." if https_only else "Must be an absolute http(s) URL.")
    if not parts.hostname:
        raise CallbackRefused("Must name a host.")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("Must not carry credentials (user:password@); sign with the webhook secret instead.")
    if port == 0:
        raise CallbackRefused("Port 0 is not a port.")
    literal = _literal_address(parts.hostname)
    if literal is not None:
        check_address(literal, allow_private=allow_private)
    return url


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> None:
    """Refuse an address that is not globally routable (private, loopback, link-local, shared, reserved,
    multicast, unspecified; IPv4 inside IPv6 judged as IPv4) unless `allow_private`."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if allow_private:
        return
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None) or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            check_address(embedded, allow_private=False)
    if not ip.is_global or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        raise CallbackRefused(f"The address {ip} is not public (private, loopback, link-local or reserved).")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 with the secret over `<timestamp>.<body>` (the exact bytes sent)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def signature_valid(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does (README): recompute and compare in constant time."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)
