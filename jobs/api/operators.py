"""Endpoints beside the jobs: the farm's status for operators, an owner's webhook secret and spend."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import wiring
from jobs.api.serializers import UsageOutputSerializer, WebhookSecretOutputSerializer
from jobs.api.views import ERRORS
from jobs.domain import utcnow
from jobs.errors import OperatorOnly
from jobs.services.api_keys import SCOPE_OPERATOR
from jobs.services.budgets import usage_get
from jobs.services.farm import farm_status
from jobs.services.webhooks import webhook_secret_rotate


class FarmStatusApi(APIView):
    """`GET /api/farm` (keys with the operator scope): live workers, queue depths, DLQ depth, jobs by state."""

    @extend_schema(operation_id="farm_status", responses={200: dict, **ERRORS})
    def get(self, request: Request) -> Response:
        if SCOPE_OPERATOR not in request.user.scopes:
            raise OperatorOnly()
        return Response(farm_status(farm=wiring.farm_registry(), queues=wiring.queue_stats(), now=utcnow()))


class WebhookSecretApi(APIView):
    """`POST /api/webhook-secret`: a new secret that signs your webhooks (shown once; the old one stops at once)."""

    name = "Webhook secret"

    @extend_schema(
        operation_id="webhook_secret_rotate", request=None, responses={201: WebhookSecretOutputSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        secret = webhook_secret_rotate(hooks=wiring.webhook_repository(), owner=request.user.owner, now=utcnow())
        return Response(
            {"secret": secret, "owner": request.user.owner, "signature": "HMAC-SHA256 over <timestamp>.<body>"},
            status=status.HTTP_201_CREATED,
        )


class UsageApi(APIView):
    """`GET /api/usage`: your spend this calendar month (UTC): worker-seconds, dollars, budget, what is left."""

    name = "Usage"

    @extend_schema(operation_id="usage", responses={200: UsageOutputSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        usage = usage_get(spending=wiring.spending(), owner=request.user.owner, now=utcnow())
        return Response(UsageOutputSerializer(usage.as_dict()).data)
