"""Root URLs: the web console, the API, its schema and docs, the browser login, and the health probes."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from jobs.api import browser_login, console
from jobs.api.health import readyz

login_patterns = (
    [path("login/", browser_login.login, name="login"), path("logout/", browser_login.logout, name="logout")],
    "rest_framework",
)

urlpatterns = [
    path("", console.jobs_page, name="console-jobs"),
    path("jobs/new", console.new_job_page, name="console-new-job"),
    re_path(r"^jobs/(?P<job_id>[0-9a-f]{32})$", console.job_page, name="console-job"),
    path("login", browser_login.login, name="console-login"),
    path("api/", include("jobs.api.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI with its init script served as a file (?script), so the page needs no inline script under the
    # default Content-Security-Policy (jobs/api/security_headers.py).
    path(
        "api/docs",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
    path("api/auth/", include(login_patterns)),
    path("readyz", readyz, name="readyz"),
]

handler400 = "jobs.api.errors.bad_request"
handler403 = "jobs.api.errors.forbidden"
handler404 = "jobs.api.errors.not_found"
handler500 = "jobs.api.errors.server_error"
