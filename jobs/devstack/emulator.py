"""The embedded AWS emulator: moto's server, plus a count of every request by service and action.

Counting at the emulator sees every process (API, workers, kombu's pycurl polls) at the HTTP layer.
DynamoDB calls are run one at a time, as moto is not safe under concurrency and DynamoDB's calls are
atomic. `GET /_emulator/requests` returns the counts, each with the CPU its calls took in moto (the
serving thread's, latency waits left out); `POST /_emulator/requests/reset` zeroes them (and the
capacity meter). Requests whose User-Agent carries `render-observer` (the bench's own polling) are counted
apart, as "observer", and are not metered. `GET /_emulator/capacity` returns the DynamoDB capacity units
the system's requests would cost on AWS (jobs/devstack/capacity.py).
`--latency aws` (or `RENDER_EMULATOR_LATENCY=aws`; profiles and per-service milliseconds in
jobs/devstack/latency.py) makes every system request wait an AWS-like round trip: half before moto serves it,
half after, both in the request's own thread and outside the DynamoDB lock, so concurrent calls wait side by
side (the server runs a thread per request) and the wait costs no CPU. moto's CPU on the call is taken off
the half after (AWS's round trip includes the service's own work), so an idle emulator answers a call in its
round trip, not in its round trip plus moto's time; a wait for the DynamoDB lock still adds. A long poll
(WaitTimeSeconds) waits its round trip once, besides its poll. `GET /_emulator/trace?since=<epoch seconds>`
lists the recent system requests (start, end, service, action, and a note: a receive's `delivered` or
`empty`, a DynamoDB write's partition), from which the bench counts one job's round trips.
Run: `python -m jobs.devstack.emulator --port 4566 [--latency ...]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import threading
import time
from collections import Counter, deque
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from jobs.devstack import moto_fixes
from jobs.devstack.capacity import READS, WRITES, CapacityMeter
from jobs.devstack.latency import ENV as LATENCY_ENV
from jobs.devstack.latency import Latency, parse_latency

OBSERVER_MARK = "render-observer"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")
_S3_ACTIONS = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
TRACE_LENGTH = 20_000  # the last system requests kept for /_emulator/trace


def classify(environ: dict) -> tuple[str, str]:
    """(service, action) of one AWS request, from its target header, Action parameter or S3 method and path."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth:  # presigned URLs carry the credential scope in the query string
        auth = environ.get("QUERY_STRING", "").replace("X-Amz-Credential=", "Credential=").replace("%2F", "/")
    scope = _SCOPE.search(auth)
    service = scope.group(1) if scope else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, action = target.partition(".")
        if service == "unknown":
            service = "sqs" if prefix.startswith("AmazonSQS") else "dynamodb"
        return service, action
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        if action:
            return service, action
    if service == "s3":
        path = environ.get("PATH_INFO", "/").strip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        if "/" in path:
            return service, _S3_ACTIONS.get(method, method)
        return service, f"{method}Bucket"
    return service, environ.get("REQUEST_METHOD", "GET")


class CountingApp:
    """WSGI middleware: counts requests, serves the counts, passes everything else to moto."""

    def __init__(self, app, latency: Latency | None = None):
        self._app = app
        self._latency = latency or Latency()
        self._lock = threading.Lock()
        self._dynamodb_lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._cpu: Counter[tuple[str, str, str]] = Counter()  # thread CPU seconds spent serving each kind
        self._trace: deque[tuple[float, float, str, str, str]] = deque(maxlen=TRACE_LENGTH)
        self.meter = CapacityMeter(moto_table)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/"):
            return self._control(environ, start_response)
        service, action = classify(environ)
        who = "observer" if OBSERVER_MARK in environ.get("HTTP_USER_AGENT", "") else "system"
        with self._lock:
            self._counts[(who, service, action)] += 1
        if who == "observer":
            return self._timed(service, action, who, environ, start_response)[0]
        started, half = time.time(), self._latency.seconds(service, action) / 2
        time.sleep(half)  # the way there: no lock held, so concurrent calls wait side by side
        response, note, cpu = self._timed(service, action, who, environ, start_response)
        # The way back, after moto's lock is released (the body is sent once returned). moto's own work on the
        # call stands for the service's, which an AWS round trip already includes: it is taken off the way back
        # rather than added to the round trip (a wait for the lock or a long poll's wait is not work: it adds).
        time.sleep(max(0.0, half - cpu))
        self._trace.append((started, time.time(), service, action, note))
        return response

    def _timed(self, service: str, action: str, who: str, environ, start_response) -> tuple[list[bytes], str, float]:
        """moto's response, the trace's note on it, and the serving thread's CPU seconds on it."""
        cpu = time.thread_time()
        try:
            response, note = self._serve(service, action, who, environ, start_response)
        finally:
            cpu = time.thread_time() - cpu
            with self._lock:
                self._cpu[(who, service, action)] += cpu
        return response, note, cpu

    def _serve(self, service: str, action: str, who: str, environ, start_response) -> tuple[list[bytes], str]:
        """moto's response, whole, and the trace's note on it."""
        if service == "dynamodb":
            # moto is not safe under concurrent requests (a transaction's rollback restores the items it
            # saved, moto_fixes.py); DynamoDB makes each call atomic, so the emulator runs them one at a time.
            with self._dynamodb_lock:
                if who == "system" and action in WRITES | READS:
                    return self._metered(action, environ, start_response)
                return list(self._app(environ, start_response)), ""
        response = list(self._app(environ, start_response))
        if action == "ReceiveMessage":
            return response, "delivered" if any(b"MessageId" in part for part in response) else "empty"
        return response, ""

    def _metered(self, action: str, environ, start_response) -> tuple[list[bytes], str]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        environ["wsgi.input"] = io.BytesIO(raw)
        body = json.loads(raw or b"{}")
        touched = self.meter.keys_written(action, body) if action in WRITES else []
        before = self.meter.snapshot(touched)
        response = list(self._app(environ, start_response))
        if action in WRITES:
            self.meter.charge_writes(touched, before, self.meter.snapshot(touched))
        else:
            with contextlib.suppress(ValueError):  # an error body: nothing read
                evaluated = self._evaluated(action, body, environ)
                self.meter.charge_read(action, body, json.loads(b"".join(response) or b"{}"), evaluated)
        return response, partition(touched)

    def _evaluated(self, action: str, body: dict, environ) -> list | None:
        """The items a filtered or counted read evaluated: the same page asked of moto without them."""
        plain = self.meter.evaluation_request(action, body)
        if plain is None:
            return None
        raw = json.dumps(plain).encode()
        inner = {**environ, "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))}
        answer = b"".join(self._app(inner, lambda status, headers, exc_info=None: None))
        return json.loads(answer or b"{}").get("Items", [])

    def _control(self, environ, start_response):
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        if path == "/_emulator/requests/reset" and method == "POST":
            with self._lock, self._dynamodb_lock:
                self._counts.clear()
                self._cpu.clear()
                self.meter.clear()
            body = {"reset": True}
        elif path == "/_emulator/capacity":
            with self._dynamodb_lock:
                body = self.meter.report()
        elif path == "/_emulator/requests":
            with self._lock:
                body = {
                    "requests": [
                        {"who": w, "service": s, "action": a, "count": n, "cpu_seconds": self._cpu[(w, s, a)]}
                        for (w, s, a), n in self._counts.items()
                    ]
                }
        elif path == "/_emulator/trace":
            since = float(parse_qs(environ.get("QUERY_STRING", "")).get("since", ["0"])[0])
            fields = ("start", "end", "service", "action", "note")
            recent = [entry for entry in list(self._trace) if entry[0] >= since]
            body = {"trace": [dict(zip(fields, entry, strict=True)) for entry in recent]}
        elif path == "/_emulator/health":
            body = {"status": "ok"}
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "unknown emulator path"}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


_TABLES: dict[str, tuple] = {}  # name -> (moto's backend, its table), checked on every use


def moto_table(name: str):
    """moto's table of that name, in whichever account and region holds it; None if there is none."""
    from moto.dynamodb.models import dynamodb_backends

    cached = _TABLES.get(name)
    if cached is not None and cached[0].tables.get(name) is cached[1]:
        return cached[1]  # the meter asks several times per write: skip the walk over every backend
    for account in list(dynamodb_backends.keys()):
        for backend in list(dynamodb_backends[account].values()):
            table = backend.tables.get(name)
            if table is not None:
                _TABLES[name] = (backend, table)
                return table
    _TABLES.pop(name, None)
    return None


class QuietHandler(MotoRequestHandler):
    def log_request(self, code="-", size="-") -> None:  # one line per request drowns the devstack output
        pass


def partition(touched: list[tuple[str, dict, int]]) -> str:
    """The kind of partition a single-item write touched: its hash key's text before a `#` (`JOB`), or the whole
    key when it is a name in capitals (`WORKERS`); empty for several items, or a key with no kind in it."""
    if len(touched) != 1 or not touched[0][1]:
        return ""
    value = str(next(iter(next(iter(touched[0][1].values())).values())))
    kind, sep, _ = value.partition("#")
    return kind if sep or value.isupper() else ""


def make_emulator(host: str, port: int, latency: Latency | None = None):
    moto_fixes.apply()
    app = CountingApp(DomainDispatcherApplication(create_backend_app), latency=latency)
    return make_server(host, port, app, threaded=True, request_handler=QuietHandler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument(
        "--latency",
        default=os.environ.get(LATENCY_ENV, ""),
        help="AWS-like round trip per request: a profile (aws), milliseconds by service (dynamodb=5,sqs=10) or "
        f"by service and action (s3:PutObject=25), or both (aws,sqs=20); default ${LATENCY_ENV}",
    )
    args = parser.parse_args()
    latency = parse_latency(args.latency)
    server = make_emulator(args.host, args.port, latency)
    print(f"emulator listening on http://{args.host}:{server.server_port} (latency: {latency})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
