"""The Content-Security-Policy of every response whose view set none (the console and its sign-in page set theirs)."""

from __future__ import annotations

# The browsable API (DRF's bootstrap and jQuery), Swagger UI (the sidecar's bundle; its init script is a file
# of its own, SpectacularSwaggerSplitView) and our own pages load scripts, styles and fonts from this origin
# only. No inline script or style is allowed, so markup that slipped into a page runs nothing and restyles
# nothing; data: images are Swagger UI's icons. JSON answers get it too: opened as a document they run nothing.
DEFAULT_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    """Adds DEFAULT_POLICY to a response that has no Content-Security-Policy; a view's own policy is kept."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = DEFAULT_POLICY
        return response
