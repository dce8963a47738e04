"""One exception handler: every error leaves as `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from jobs.errors import DomainError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _first_message(detail: Any, path: str = "") -> str:
    """The first validation message, prefixed by its field path, for a one-line summary."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            where = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_message(value, where)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], path)
    return f"{path}: {detail}" if path else str(detail)


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, DomainError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is larger than this API accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("invalid", _first_message(exc.detail), exc.detail), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(exc.default_code, str(exc.detail)), status=exc.status_code, headers=headers)
    if isinstance(exc, (BotoCoreError, ClientError)):
        log.exception("AWS error in %s", context.get("view"))
        return Response(
            error_body("service_unavailable", "A backing service failed; try again shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    log.exception("unhandled error in %s", context.get("view"))
    return Response(error_body("internal_error", "Internal error; it has been logged."), status=500)


def _json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def not_found(request, exception=None) -> JsonResponse:
    return _json_error(404, "not_found", "No such resource.")


def bad_request(request, exception=None) -> JsonResponse:
    return _json_error(400, "bad_request", "Bad request.")


def forbidden(request, exception=None, reason: str = "") -> JsonResponse:
    return _json_error(403, "permission_denied", reason or "Forbidden.")


def server_error(request) -> JsonResponse:
    return _json_error(500, "internal_error", "Internal error; it has been logged.")
