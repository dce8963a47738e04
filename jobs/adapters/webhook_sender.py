"""The webhook sender: one POST to a callback URL under the address policy, with httpx.

It resolves the host itself, refuses the delivery if any address it resolves to is not allowed
(jobs.callbacks.check_address), and connects to the address it checked: the request goes to that IP, with
the URL's host in the Host header and as the TLS server name (SNI and certificate checks), so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot point it elsewhere. No redirects
are followed, no proxy from the environment is used, timeouts are short and at most `max_response_bytes`
of the answer are read.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from jobs.callbacks import CallbackRefused, check_address, check_callback_url
from jobs.ports import SendResult

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpWebhookSender:
    def __init__(
        self,
        *,
        https_only: bool,
        allow_private: bool,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        total_timeout: float = 10.0,
        max_response_bytes: int = 4096,
        resolver: Resolver = resolve,
    ):
        self._https_only = https_only
        self._allow_private = allow_private
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
        self._max_response = max_response_bytes
        self._resolve = resolver
        # httpx's timeouts are per socket operation: a receiver that drips a byte at a time would hold a
        # worker for ever. The whole exchange gets a wall-clock limit, enforced by closing the connection.
        self._total = total_timeout

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> SendResult:
        try:
            target, host_header, server_name = self._target(url)
        except CallbackRefused as exc:
            return SendResult(error=str(exc), permanent=True)
        except OSError as exc:
            return SendResult(error=f"The host could not be resolved ({type(exc).__name__}).")
        extensions = {"sni_hostname": server_name} if server_name else {}
        client = httpx.Client(follow_redirects=False, timeout=self._timeout, trust_env=False)
        cutoff = threading.Timer(self._total, client.close)  # ends a slow exchange mid-read
        cutoff.daemon = True
        cutoff.start()
        started = time.monotonic()
        try:
            with (
                client,
                client.stream(
                    "POST", target, content=body, headers={**headers, "Host": host_header}, extensions=extensions
                ) as resp,
            ):
                read = 0
                for chunk in resp.iter_raw():
                    read += len(chunk)
                    if read >= self._max_response or time.monotonic() - started > self._total:
                        break  # the answer's body is not ours to store; its status code is what counts
                return SendResult(status_code=resp.status_code)
        except httpx.TimeoutException:
            return SendResult(error="Timed out.")
        except (httpx.HTTPError, RuntimeError, OSError) as exc:
            if time.monotonic() - started >= self._total:
                return SendResult(error=f"Timed out (no answer within {self._total:g} s).")
            return SendResult(error=f"The connection failed ({type(exc).__name__}).")
        finally:
            cutoff.cancel()

    def _target(self, url: str) -> tuple[str, str, str | None]:
        """(the URL with the checked IP as its host, the Host header, the TLS server name or None)."""
        check_callback_url(url, https_only=self._https_only, allow_private=self._allow_private)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self._resolve(host, port)
        if not addresses:
            raise OSError("no address")
        for address in addresses:  # every answer must pass, so the choice below cannot be steered
            check_address(address, allow_private=self._allow_private)
        ip = ipaddress.ip_address(addresses[0].split("%", 1)[0])
        netloc_ip = f"[{ip}]" if ip.version == 6 else str(ip)
        default_port = port == (443 if parts.scheme == "https" else 80)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        target = urlunsplit((parts.scheme, f"{netloc_ip}:{port}", parts.path or "/", parts.query, ""))
        is_literal = _is_ip(host)
        server_name = None if parts.scheme != "https" or is_literal else host
        if default_port and not parts.port:
            host_header = host if ":" not in host else f"[{host}]"
        return target, host_header, server_name


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
