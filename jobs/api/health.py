"""Liveness and readiness probes (no authentication: load balancers call them)."""

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from jobs.adapters.readiness import cached_check_all


class HealthzMiddleware:
    """Answers `GET /healthz` before host validation: load balancers probe by IP, not by the site's name."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return JsonResponse({"status": "ok"})
        return self.get_response(request)


@require_GET
def readyz(request) -> JsonResponse:
    """Ready when the table, queues and bucket answer; cached a few seconds (jobs/adapters/readiness.py)."""
    checks = cached_check_all()
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
