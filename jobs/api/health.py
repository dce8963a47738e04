"""Liveness and readiness probes (no authentication: load balancers call them)."""

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from ..readiness import check_all


@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request) -> JsonResponse:
    checks = check_all()
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
