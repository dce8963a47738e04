"""The web console: page shells rendered here; the data comes from the REST API (console.js), no second read path.

Every page needs a browser login (the API key's hash in a server-side session, as for the browsable API);
signed-out visitors are sent to the sign-in page. Pages carry a Content-Security-Policy that allows only
this app's own scripts and styles, and images, videos and uploads from the result bucket.
"""

from __future__ import annotations

import functools
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from jobs import wiring
from jobs.api.auth import session_user
from jobs.domain import OutputFormat, Priority, VideoFormat
from jobs.errors import JobNotFound
from jobs.services.selectors import job_get


@functools.cache
def _bucket_origin() -> str:
    """scheme://host[:port] of presigned result URLs (computed locally, no request)."""
    parts = urlsplit(wiring.result_store().presigned_url("csp-probe"))
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy() -> str:
    extra = " ".join([_bucket_origin(), *settings.RENDER_CONSOLE_EXTRA_ORIGINS])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: {extra}; media-src 'self' {extra}; connect-src 'self' {extra}; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def with_csp(response):
    response["Content-Security-Policy"] = content_security_policy()
    response["Referrer-Policy"] = "same-origin"
    return response


def console_page(view):
    """Signed in (else the sign-in page, coming back here after), GET only, with the CSP."""

    @functools.wraps(view)
    @require_GET
    def wrapper(request, *args, **kwargs):
        user = session_user(request)
        if user is None:
            return redirect("/login?" + urlencode({"next": request.get_full_path()}))
        return with_csp(view(request, user, *args, **kwargs))

    return wrapper


@console_page
def jobs_page(request, user):
    return render(request, "console/jobs.html", {"user": user, "page": "jobs"})


@console_page
def job_page(request, user, job_id: str):
    try:
        job = job_get(repo=wiring.job_repository(), owner=user.owner, job_id=job_id)
    except JobNotFound:
        return render(request, "console/missing.html", {"user": user, "job_id": job_id}, status=404)
    return render(request, "console/job.html", {"user": user, "page": "job", "job": job})


@console_page
def new_job_page(request, user):
    context = {
        "user": user,
        "page": "new",
        "formats": [f.value for f in OutputFormat],
        "video_formats": [f.value for f in VideoFormat],
        "priorities": [p.value for p in Priority],
        "can_high": "high" in user.scopes,
    }
    return render(request, "console/new.html", context)
