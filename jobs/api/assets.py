"""Scene files (assets): declared by SHA-256 and size, uploaded straight to S3 with a presigned PUT."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import wiring
from jobs.api.serializers import AssetCreateInputSerializer, AssetCreateOutputSerializer, AssetOutputSerializer
from jobs.api.views import ERRORS
from jobs.domain import utcnow
from jobs.services import AssetStatus, asset_declare, asset_get

SHA256 = OpenApiParameter("sha256", str, OpenApiParameter.PATH, description="64 lowercase hex digits")


def _asset_body(asset: AssetStatus) -> dict:
    upload = asset.upload
    return {
        "sha256": asset.sha256,
        "size": asset.size,
        "upload": None
        if upload is None
        else {"url": upload.url, "method": upload.method, "headers": upload.headers, "expires_in": upload.expires_in},
    }


class AssetCollectionApi(APIView):
    """`POST /api/assets`: declare a scene file by SHA-256 and size; 201 with a presigned PUT to upload it
    straight to S3, or 200 with `upload: null` when it is already stored."""

    @extend_schema(
        operation_id="assets_create",
        request=AssetCreateInputSerializer,
        responses={201: AssetCreateOutputSerializer, 200: AssetCreateOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = AssetCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asset = asset_declare(
            repo=wiring.asset_repository(),
            store=wiring.asset_store(),
            owner=request.user.owner,
            sha256=data.validated_data["sha256"],
            size=data.validated_data["size"],
            max_bytes=settings.RENDER_MAX_ASSET_BYTES,
            now=utcnow(),
            retention=wiring.asset_retention(),
        )
        code = status.HTTP_200_OK if asset.uploaded else status.HTTP_201_CREATED
        return Response(_asset_body(asset), status=code)


class AssetDetailApi(APIView):
    """`GET /api/assets/<sha256>`: the caller's asset, whether its file is uploaded and, once it is, the
    file's own settings as the farm's Blender reads them (asked for on the first look; `pending` for a few
    seconds), with what it would refuse and the files it reads from outside itself."""

    @extend_schema(
        operation_id="assets_retrieve", parameters=[SHA256], responses={200: AssetOutputSerializer, **ERRORS}
    )
    def get(self, request: Request, sha256: str) -> Response:
        asset = asset_get(
            repo=wiring.asset_repository(),
            store=wiring.asset_store(),
            queue=wiring.task_queue(),
            owner=request.user.owner,
            sha256=sha256,
            now=utcnow(),
        )
        inspection, settings = None, None
        if asset.inspection is not None:
            report = asset.inspection.report or {}
            settings = report.get("settings")
            inspection = {
                "state": asset.inspection.state,
                "error": asset.inspection.error,
                "refused": report.get("refused", []),
                "missing_files": report.get("missing_files", []),
                "substitutions": report.get("substitutions", []),
            }
        body = {"sha256": asset.sha256, "size": asset.size, "uploaded": asset.uploaded}
        return Response(AssetOutputSerializer({**body, "settings": settings, "inspection": inspection}).data)
