"""Thin API views: validate input, call one service or selector, shape the output."""

from __future__ import annotations

import logging

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import wiring
from jobs.adapters import logs
from jobs.api.parsers import StrictJSONParser
from jobs.api.serializers import (
    ErrorOutputSerializer,
    FramesQuerySerializer,
    JobCreateInputSerializer,
    JobCreateQuerySerializer,
    JobListOutputSerializer,
    JobListQuerySerializer,
    JobOutputSerializer,
    PageQuerySerializer,
    ResultsOutputSerializer,
    StepLogOutputSerializer,
    TaskListOutputSerializer,
    TaskLogOutputSerializer,
    job_representation,
    task_representation,
    validate_idempotency_key,
)
from jobs.domain import Job, JobStatus, OutputFormat, Priority, RendererName, Scene, utcnow
from jobs.presentation import job_detail
from jobs.services import JobSpec, job_cancel, job_create, job_retry
from jobs.services.budgets import budget_check
from jobs.services.selectors import (
    job_chunks,
    job_get,
    job_list,
    job_result_links,
    recorded_frames,
    step_log,
    task_log,
)

log = logging.getLogger(__name__)
ERRORS = {code: ErrorOutputSerializer for code in (400, 401, 403, 404, 406, 409, 413, 415, 422, 429, 503)}
JOB_ID = OpenApiParameter("job_id", str, OpenApiParameter.PATH, description="32 hex digits")
CHUNK = OpenApiParameter("chunk", int, OpenApiParameter.PATH, description="chunk index (0 for a one-chunk job)")
STEP = OpenApiParameter("step", int, OpenApiParameter.PATH, description="step index (0 for the first step)")
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Retries with the same key and body return the original job; another body gets 422.",
)


def _job_url(request: Request, job_id: str) -> str:
    return request.build_absolute_uri(reverse("job-detail", args=[job_id]))


def _job_response(request: Request, job: Job, *, with_results: bool = False, **kwargs) -> Response:
    url = _job_url(request, job.id)
    if with_results:
        return Response(job_detail(job, url=url, now=utcnow()), **kwargs)
    return Response(job_representation(job, url=url, now=utcnow()), **kwargs)


def _query(serializer_class, request: Request) -> dict:
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data


class ApiRootApi(APIView):
    """The render farm's REST API. Send `Authorization: Bearer <api key>`, or log in here with a key.

    Every error has the shape `{"error": {"code", "message", "details"}}`. The OpenAPI schema is at
    `/api/schema` and Swagger UI at `/api/docs`; the web console is at `/`.
    """

    name = "Render farm API"

    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        placeholder = "0" * 32

        def url(name: str, *args: str) -> str:
            return request.build_absolute_uri(reverse(name, args=args)).replace(placeholder, "<job_id>")

        return Response(
            {
                "jobs": url("job-collection"),
                "job": url("job-detail", placeholder),
                "job_tasks": url("job-tasks", placeholder),
                "job_frames": url("job-frames", placeholder),
                "job_cancel": url("job-cancel", placeholder),
                "job_retry": url("job-retry", placeholder),
                "farm": url("farm-status"),  # keys with the operator scope
                "usage": url("usage"),
                "schema": url("schema"),
                "docs": url("docs"),
                "console": request.build_absolute_uri("/"),
            }
        )


class JobActionApi(APIView):
    """A POST without a body on a job. In a browser (the browsable API) GET shows the job and a button
    for the action instead of a 405; JSON clients still get 405 for GET."""

    action_label = ""
    # The button is a plain form: a browser posts its CSRF token form-encoded, which the CSRF check reads
    # (through request.POST, so a JSON-only parser list made it a 415). The view reads no body either way.
    parser_classes = [StrictJSONParser, FormParser]

    @property
    def allowed_methods(self):
        return [m for m in super().allowed_methods if m != "GET"]

    @extend_schema(exclude=True)
    def get(self, request: Request, job_id: str) -> Response:
        if not isinstance(request.accepted_renderer, BrowsableAPIRenderer):
            raise exceptions.MethodNotAllowed(request.method)
        job = job_get(repo=wiring.job_repository(), owner=request.user.owner, job_id=job_id)
        return _job_response(request, job)


class JobCollectionApi(APIView):
    """`GET /api/jobs` lists the caller's jobs, newest first; `POST /api/jobs` submits a job."""

    name = "Jobs"

    example_body = {
        "scene": "shot_010",
        "width": 1280,
        "height": 720,
        "output_format": "png",
        "samples": 64,
        "frame_start": 1,
        "frame_end": 24,
        "chunk_size": 4,
        "priority": "normal",
        "callback_url": "https://example.com/hooks/render",
    }

    @extend_schema(
        operation_id="jobs_list",
        parameters=[JobListQuerySerializer],
        responses={200: JobListOutputSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _query(JobListQuerySerializer, request)
        page = job_list(
            repo=wiring.job_repository(),
            owner=request.user.owner,
            status=JobStatus(query["status"]) if query.get("status") else None,
            cursor=query.get("cursor"),
            limit=query.get("limit"),
        )
        now = utcnow()
        jobs = [job_representation(job, url=_job_url(request, job.id), now=now) for job in page.jobs]
        return Response({"jobs": jobs, "next_cursor": page.cursor})

    @extend_schema(
        operation_id="jobs_create",
        request=JobCreateInputSerializer,
        parameters=[IDEMPOTENCY, JobCreateQuerySerializer],
        responses={201: JobOutputSerializer, 202: JobOutputSerializer, 422: ErrorOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        """201 with the job; with `?dry_run=1`, 202 with its scout job (a quote, once it is COMPLETED)."""
        # Every query parameter but DRF's own `format` is checked: a typo (`?dryrun=1`) must not submit a job.
        query = {k: v for k, v in request.query_params.items() if k != "format"}
        dry_run = JobCreateQuerySerializer(data=query)
        dry_run.is_valid(raise_exception=True)
        key = validate_idempotency_key(request.headers.get("Idempotency-Key"))
        data = JobCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        scene = Scene(
            name=v["scene"],
            width=v["width"],
            height=v["height"],
            output_format=OutputFormat(v["output_format"]),
            samples=v["samples"],
        )
        scene_file = v.get("scene_file")
        job, replayed = job_create(
            jobs=wiring.job_control(),
            owner=request.user.owner,
            spec=JobSpec(
                scene=scene,
                frame_start=v["frame_start"],
                frame_end=v["frame_end"],
                frame_list=v["frame_list"],
                chunk_size=v["chunk_size"],
                priority=Priority(v["priority"]),
                renderer=RendererName(v["renderer"]),
                scene_file=scene_file,
                callback_url=v.get("callback_url"),
                fail_on_missing_files=v.get("fail_on_missing_files", True),
                from_file=v["from_file"],
                steps=v["steps"],
            ),
            idempotency_key=key,
            hooks=wiring.webhook_repository(),
            now=utcnow(),
            scopes=request.user.scopes,
            frame_limit=settings.RENDER_MAX_ACTIVE_FRAMES_PER_OWNER,
            scene_files=wiring.scene_files(),
            spending=wiring.spending(),
            dry_run=dry_run.validated_data["dry_run"],
        )
        logs.bind(job_id=job.id)
        log.info(
            "job %s %s: %d frames, priority %s%s",
            job.id,
            "replayed" if replayed else "submitted",
            job.frames_total,
            job.priority,
            f", a quote of {job.quote_for.frames} frames" if job.quote_for else "",
        )
        headers = {"Location": _job_url(request, job.id)}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        answer = status.HTTP_202_ACCEPTED if job.quote_for else status.HTTP_201_CREATED
        return _job_response(request, job, status=answer, headers=headers)


class JobDetailApi(APIView):
    """`GET /api/jobs/<id>`: status, progress, ETA, timestamps, error and, once completed, result URLs."""

    name = "Job"

    @extend_schema(operation_id="jobs_retrieve", parameters=[JOB_ID], responses={200: JobOutputSerializer, **ERRORS})
    def get(self, request: Request, job_id: str) -> Response:
        job = job_get(repo=wiring.job_repository(), owner=request.user.owner, job_id=job_id)
        return _job_response(request, job, with_results=True)


class JobCancelApi(JobActionApi):
    """`POST /api/jobs/<id>/cancel`: QUEUED jobs stop at once, PROCESSING ones between frames; 409 if finished."""

    name = "Cancel job"

    action_label = "Cancel this job"

    @extend_schema(
        operation_id="jobs_cancel", request=None, parameters=[JOB_ID], responses={200: JobOutputSerializer, **ERRORS}
    )
    def post(self, request: Request, job_id: str) -> Response:
        jobs = wiring.job_control()
        job = job_get(repo=jobs.repo, owner=request.user.owner, job_id=job_id)
        cancelled = job_cancel(jobs=jobs, job=job, now=utcnow())
        return _job_response(request, cancelled)


class JobRetryApi(JobActionApi):
    """`POST /api/jobs/<id>/retry`: a FAILED or CANCELLED job runs again, only its unfinished chunks; else 409.
    An owner over its month's budget is refused (429 budget_exceeded) as a submit is: a retry spends too."""

    name = "Retry job"

    action_label = "Retry this job"

    @extend_schema(
        operation_id="jobs_retry", request=None, parameters=[JOB_ID], responses={200: JobOutputSerializer, **ERRORS}
    )
    def post(self, request: Request, job_id: str) -> Response:
        jobs = wiring.job_control()
        job = job_get(repo=jobs.repo, owner=request.user.owner, job_id=job_id)
        budget_check(spending=wiring.spending(), owner=request.user.owner, now=utcnow())
        retried = job_retry(jobs=jobs, job=job, now=utcnow(), scene_files=wiring.scene_files())
        return _job_response(request, retried)


class JobTasksApi(APIView):
    """`GET /api/jobs/<id>/tasks`: the job's chunks with state, attempt, worker, timings and error."""

    name = "Job chunks"

    @extend_schema(
        operation_id="jobs_tasks",
        parameters=[JOB_ID, PageQuerySerializer],
        responses={200: TaskListOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, job_id: str) -> Response:
        query = _query(PageQuerySerializer, request)
        repo = wiring.job_repository()
        job = job_get(repo=repo, owner=request.user.owner, job_id=job_id)
        page = job_chunks(repo=repo, job=job, cursor=query.get("cursor"), limit=query["limit"])
        return Response({"tasks": [task_representation(c) for c in page.chunks], "next_cursor": page.cursor})


class JobFramesApi(APIView):
    """`GET /api/jobs/<id>/frames?offset=`: a page of presigned URLs of the job's frames stored so far (every
    frame once COMPLETED; manifest and preview only then)."""

    name = "Job frames"

    @extend_schema(
        operation_id="jobs_frames",
        parameters=[JOB_ID, FramesQuerySerializer],
        responses={200: ResultsOutputSerializer, **ERRORS},
        filters=False,
    )
    def get(self, request: Request, job_id: str) -> Response:
        query = _query(FramesQuerySerializer, request)
        repo = wiring.job_repository()
        job = job_get(repo=repo, owner=request.user.owner, job_id=job_id)
        links = job_result_links(
            store=wiring.result_store(),
            job=job,
            expires_in=settings.RENDER_RESULT_URL_EXPIRY,
            offset=query["offset"],
            limit=query["limit"],
            recorded=None if job.status is JobStatus.COMPLETED else recorded_frames(repo=repo, job=job),
        )
        return Response(links)


class JobTaskLogApi(APIView):
    """`GET /api/jobs/<id>/tasks/<n>/log`: the chunk's render log (the renderer's output, last 64 KiB)."""

    @extend_schema(
        operation_id="jobs_task_log", parameters=[JOB_ID, CHUNK], responses={200: TaskLogOutputSerializer, **ERRORS}
    )
    def get(self, request: Request, job_id: str, chunk: str) -> Response:
        job = job_get(repo=wiring.job_repository(), owner=request.user.owner, job_id=job_id)
        saved = task_log(store=wiring.result_store(), job=job, chunk=int(chunk))
        return Response({"job_id": job.id, "chunk": int(chunk), **saved})


class JobStepLogApi(APIView):
    """`GET /api/jobs/<id>/steps/<n>/log`: the step's log (ffmpeg's output for an encode, last 64 KiB)."""

    @extend_schema(
        operation_id="jobs_step_log", parameters=[JOB_ID, STEP], responses={200: StepLogOutputSerializer, **ERRORS}
    )
    def get(self, request: Request, job_id: str, step: str) -> Response:
        job = job_get(repo=wiring.job_repository(), owner=request.user.owner, job_id=job_id)
        saved = step_log(store=wiring.result_store(), job=job, step=int(step))
        return Response({"job_id": job.id, "step": int(step), **saved})
