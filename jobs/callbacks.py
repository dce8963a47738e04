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


def _literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), name) for net, name in rows)


# What a callback may never reach: IANA's IPv4 and IPv6 Special-Purpose Address Registries, the multicast
# space and the rest of the reserved space, each with the name a refusal gives. Written out rather than taken
# from `ipaddress.is_global`, whose answers change between Python releases (3.11 still calls 192.88.99.0/24,
# fec0::/10 and 3fff::/20 global). Ranges the registries call globally reachable but that only hold anycast
# service addresses (192.0.0.9 and .10, 2001:1::1-3, AMT in 2001:3::/32, ORCHIDv2) are refused with their
# block: no webhook receiver lives there, and refusing is the safe side.
REFUSED_IPV4 = _networks(
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved or broadcast"),
)
# First match wins, so the narrow blocks come before the ones that hold them. Besides these, an IPv6 address
# outside 2000::/3 (the only block IANA allocates global unicast from) is refused.
REFUSED_IPV6 = _networks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible, deprecated"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments: Teredo, benchmarking, ORCHID"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
)
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
# IPv6 forms that carry an IPv4 address the packet ends up at: judged by that address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix: the last 32 bits


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    return None


def refusal(address: Address) -> str | None:
    """Why the policy refuses `address` (a short name for a person), or None if it is globally routable."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((name for net, name in REFUSED_IPV4 if address in net), None)
    ip = ipaddress.IPv6Address(address.packed)  # without a zone id (fe80::1%eth0)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        form, ipv4 = embedded
        inner = refusal(ipv4)
        return f"{form} of {ipv4}: {inner}" if inner else None
    named = next((name for net, name in REFUSED_IPV6 if ip in net), None)
    if named is None and ip not in GLOBAL_UNICAST_V6:
        return "outside global unicast 2000::/3"
    return named


def check_address(address: str | Address, *, allow_private: bool) -> None:
    """Refuse an address that is not globally routable (REFUSED_IPV4, REFUSED_IPV6, IPv6 outside 2000::/3;
    IPv4 inside IPv6 judged as IPv4) unless `allow_private`."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if allow_private:
        return
    why = refusal(ip)
    if why is not None:
        raise CallbackRefused(f"The address {ip} is not public ({why}).")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 with the secret over `<timestamp>.<body>` (the exact bytes sent)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def signature_valid(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does (docs/using/webhooks.md): recompute and compare in constant time."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)
