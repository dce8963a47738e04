"""Log in to the console and the browsable API with an API key (its hash kept in a server-side session), and log out."""

import math

from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from jobs.api.auth import SESSION_KEY, key_cache
from jobs.api.console import with_csp
from jobs.api.errors import error_body
from jobs.api.throttling import auth_failures_wait, record_auth_failure
from jobs.services.api_keys import hash_api_key, is_well_formed_api_key


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return "/"


def _form(request, error: str = "", status: int = 200):
    response = render(request, "jobs/login.html", {"error": error, "next": _next_url(request)}, status=status)
    return with_csp(response)


@require_http_methods(["GET", "POST"])
def login(request):
    if request.method == "GET":
        return _form(request)
    # Failed logins count with the API's 401s, per client address: guessing keys here is no cheaper.
    wait = auth_failures_wait(request)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        response = _form(request, f"Too many failed attempts; try again in {seconds} s.", 429)
        response["Retry-After"] = str(seconds)
        return response
    key = request.POST.get("api_key", "").strip()
    key_hash = hash_api_key(key) if is_well_formed_api_key(key) else ""  # no lookup for what cannot be a key
    if key_hash and key_cache.record_for(key_hash):
        request.session.cycle_key()
        request.session[SESSION_KEY] = key_hash
        return redirect(_next_url(request))
    record_auth_failure(request)
    return _form(request, "Unknown or revoked API key.", 400)


def logout(request):
    """POST only (with the CSRF token, as the browsable API's menu sends it): a link or an image tag on
    another site must not log anyone out. Deletes the session on the server, not just the cookie."""
    if request.method != "POST":
        body = error_body("method_not_allowed", "Log out with POST (the browsable API's menu does).")
        return JsonResponse(body, status=405, headers={"Allow": "POST"})
    request.session.flush()
    return redirect(_next_url(request))
