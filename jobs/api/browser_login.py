"""Log in to the browsable API with an API key (kept as its hash in a signed session cookie)."""

from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from ..services import hash_api_key
from .auth import SESSION_KEY, owner_cache


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/api/jobs"
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return "/api/jobs"


@require_http_methods(["GET", "POST"])
def login(request):
    error = ""
    if request.method == "POST":
        key = request.POST.get("api_key", "").strip()
        key_hash = hash_api_key(key) if key else ""
        if key_hash and owner_cache.owner_for(key_hash):
            request.session.cycle_key()
            request.session[SESSION_KEY] = key_hash
            return redirect(_next_url(request))
        error = "Unknown or revoked API key."
    return render(
        request, "jobs/login.html", {"error": error, "next": _next_url(request)}, status=400 if error else 200
    )


@require_http_methods(["GET", "POST"])
def logout(request):
    request.session.flush()
    return redirect(_next_url(request))
