"""URLs of the jobs API (mounted under /api/)."""

from django.urls import path, re_path

from .views import JobCollectionApi, JobDetailApi

urlpatterns = [
    path("jobs", JobCollectionApi.as_view(), name="job-collection"),
    re_path(r"^jobs/(?P<job_id>[0-9a-f]{32})$", JobDetailApi.as_view(), name="job-detail"),
]
