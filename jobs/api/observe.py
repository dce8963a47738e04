"""Every API request gets a request id (the ALB's trace id when present) in its log lines and its response
(`X-Request-Id`), one access line, and its latency and status as metrics by route."""

from __future__ import annotations

import logging
import time
import uuid

from jobs import wiring
from jobs.adapters import logs

log = logging.getLogger("render.api")
QUIET = ("/healthz", "/readyz")  # load balancer probes: no access line, no metric


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = logs.request_id_from(request.headers.get("X-Amzn-Trace-Id")) or uuid.uuid4().hex
        started = time.monotonic()
        with logs.scope(request_id=request_id):
            response = self.get_response(request)
            request.log_context = logs.current()  # for Django's line about this response, logged after this
            if request.path not in QUIET:
                milliseconds = (time.monotonic() - started) * 1000
                match = getattr(request, "resolver_match", None)
                route = (match.url_name or match.route) if match else "unmatched"
                # The path names the job, never a secret; the query string (cursors) is left out.
                log.info(
                    "%s %s %d %.0fms",
                    request.method,
                    request.path,
                    response.status_code,
                    milliseconds,
                    extra={"route": route, "status": response.status_code, "ms": round(milliseconds, 1)},
                )
                wiring.metrics().api_request(route=route, status=response.status_code, milliseconds=milliseconds)
        response["X-Request-Id"] = request_id
        return response
