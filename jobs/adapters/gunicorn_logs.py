"""Gunicorn's own log lines (start-up, errors, access) in the app's format: bin/entrypoint's --logger-class."""

from __future__ import annotations

import os

from gunicorn import glogging

from jobs.adapters.logs import JsonLineFormatter


def _json() -> bool:
    """The app's setting decides (gunicorn sets up its logger before it loads the app)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")
    from django.conf import settings

    return settings.RENDER_LOG_FORMAT == "json"


class Logger(glogging.Logger):
    """With RENDER_LOG_FORMAT=json: JSON lines through the app's formatter; the access line carries the request
    id of the app's lines for that request (the X-Request-Id it answered with). Otherwise gunicorn's text."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self._as_json = _json()
        if self._as_json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonLineFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not self._as_json:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
        request_id = next((value for name, value in headers if name.lower() == "x-request-id"), None)
        status = int(str(resp.status).split(None, 1)[0])
        milliseconds = request_time.total_seconds() * 1000
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        # The path names a job, never a secret; the query string (cursors) is left out, as the app's line does.
        self.access_log.info(
            "%s %s %d %.0fms",
            method,
            path,
            status,
            milliseconds,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "bytes": getattr(resp, "sent", None),
                "ms": round(milliseconds, 1),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            },
        )
