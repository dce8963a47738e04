"""Root URLs: the API, its schema and docs, the browsable API login, and the health probes."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from jobs.api import browser_login
from jobs.api.health import readyz

login_patterns = (
    [path("login/", browser_login.login, name="login"), path("logout/", browser_login.logout, name="logout")],
    "rest_framework",
)

urlpatterns = [
    path("api/", include("jobs.api.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/auth/", include(login_patterns)),
    path("readyz", readyz, name="readyz"),
]

handler400 = "jobs.api.errors.bad_request"
handler403 = "jobs.api.errors.forbidden"
handler404 = "jobs.api.errors.not_found"
handler500 = "jobs.api.errors.server_error"
