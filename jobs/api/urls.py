"""URLs of the jobs API (mounted under /api/)."""

from django.urls import path, re_path

from jobs.api.assets import AssetCollectionApi, AssetDetailApi
from jobs.api.operators import FarmStatusApi, UsageApi, WebhookSecretApi
from jobs.api.views import (
    ApiRootApi,
    JobCancelApi,
    JobCollectionApi,
    JobDetailApi,
    JobFramesApi,
    JobRetryApi,
    JobStepLogApi,
    JobTaskLogApi,
    JobTasksApi,
)

JOB = r"^jobs/(?P<job_id>[0-9a-f]{32})"

urlpatterns = [
    path("", ApiRootApi.as_view(), name="api-root"),
    path("farm", FarmStatusApi.as_view(), name="farm-status"),
    path("jobs", JobCollectionApi.as_view(), name="job-collection"),
    path("webhook-secret", WebhookSecretApi.as_view(), name="webhook-secret"),
    path("usage", UsageApi.as_view(), name="usage"),
    re_path(JOB + r"$", JobDetailApi.as_view(), name="job-detail"),
    re_path(JOB + r"/cancel$", JobCancelApi.as_view(), name="job-cancel"),
    re_path(JOB + r"/retry$", JobRetryApi.as_view(), name="job-retry"),
    re_path(JOB + r"/tasks$", JobTasksApi.as_view(), name="job-tasks"),
    re_path(JOB + r"/frames$", JobFramesApi.as_view(), name="job-frames"),
    re_path(JOB + r"/tasks/(?P<chunk>[0-9]{1,4})/log$", JobTaskLogApi.as_view(), name="job-task-log"),
    re_path(JOB + r"/steps/(?P<step>[0-9]{1,2})/log$", JobStepLogApi.as_view(), name="job-step-log"),
    path("assets", AssetCollectionApi.as_view(), name="asset-collection"),
    re_path(r"^assets/(?P<sha256>[0-9a-f]{64})$", AssetDetailApi.as_view(), name="asset-detail"),
]
