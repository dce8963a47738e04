"""Thin API views: validate input, call one service or selector, shape the output."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import wiring
from ..domain import JobStatus, OutputFormat, Priority, Scene, utcnow
from ..selectors import job_get, job_list, job_result_links
from ..services import job_create
from .serializers import (
    JobCreateInputSerializer,
    JobListOutputSerializer,
    JobListQuerySerializer,
    JobOutputSerializer,
    job_representation,
)

ERROR_RESPONSES = {400: None, 401: None, 404: None, 429: None, 503: None}


def _job_url(request: Request, job_id: str) -> str:
    return request.build_absolute_uri(reverse("job-detail", args=[job_id]))


class JobCollectionApi(APIView):
    """`GET /api/jobs` lists the caller's jobs, newest first; `POST /api/jobs` submits a job."""

    @extend_schema(
        operation_id="jobs_list",
        parameters=[JobListQuerySerializer],
        responses={200: JobListOutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        query = JobListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        status_filter = query.validated_data.get("status")
        page = job_list(
            repo=wiring.job_repository(),
            owner=request.user.owner,
            status=JobStatus(status_filter) if status_filter else None,
            cursor=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        jobs = [job_representation(job, url=_job_url(request, job.id)) for job in page.jobs]
        return Response({"jobs": jobs, "next_cursor": page.cursor})

    @extend_schema(
        operation_id="jobs_create",
        request=JobCreateInputSerializer,
        responses={201: JobOutputSerializer, **ERROR_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        data = JobCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = job_create(
            repo=wiring.job_repository(),
            queue=wiring.task_queue(),
            owner=request.user.owner,
            scene=Scene(
                name=v["scene"],
                width=v["width"],
                height=v["height"],
                output_format=OutputFormat(v["output_format"]),
                samples=v["samples"],
            ),
            frame_start=v["frame_start"],
            frame_end=v["frame_end"],
            priority=Priority(v["priority"]),
            now=utcnow(),
        )
        url = _job_url(request, job.id)
        return Response(job_representation(job, url=url), status=status.HTTP_201_CREATED, headers={"Location": url})


class JobDetailApi(APIView):
    """`GET /api/jobs/<id>`: status, progress, timestamps, error and, once completed, result URLs."""

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[OpenApiParameter("job_id", str, OpenApiParameter.PATH)],
        responses={200: JobOutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = job_get(repo=wiring.job_repository(), owner=request.user.owner, job_id=job_id)
        expiry = settings.RENDER_RESULT_URL_EXPIRY
        links = job_result_links(store=wiring.result_store(), job=job, expires_in=expiry)
        return Response(job_representation(job, url=_job_url(request, job.id), results=links))
