"""S3 storage of rendered frames and manifests under docs/ARCHITECTURE.md's deterministic keys, and presigned GETs."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import FrameResult
from jobs.ports import StoredFile

HASH_BLOCK = 1024 * 1024

COMPONENT = "result storage"  # what a customer is told is unavailable when this bucket is


class S3ResultStore:
    """A private bucket; re-running a frame overwrites its object rather than adding one."""

    def __init__(self, *, client, bucket: str, url_expiry: int):
        self._client = client
        self._bucket = bucket
        self._expiry = url_expiry

    def put_frame(self, *, key: str, frame: int, body: bytes, content_type: str) -> FrameResult:
        digest = hashlib.sha256(body).hexdigest()
        with unavailable_as_503("S3", component=COMPONENT):
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata={"sha256": digest},
            )
        return FrameResult(frame=frame, key=key, size=len(body), sha256=digest, content_type=content_type)

    def put_bytes(self, *, key: str, body: bytes, content_type: str) -> None:
        with unavailable_as_503("S3", component=COMPONENT):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    def put_file(self, *, key: str, file: BinaryIO, content_type: str) -> StoredFile:
        """Hash the file, then upload it from its start (multipart when large), its SHA-256 in the metadata."""
        digest, size = hashlib.sha256(), 0
        file.seek(0)
        while block := file.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
        file.seek(0)
        extra = {"ContentType": content_type, "Metadata": {"sha256": digest.hexdigest()}}
        with unavailable_as_503("S3", component=COMPONENT):
            self._client.upload_fileobj(file, self._bucket, key, ExtraArgs=extra)
        return StoredFile(size=size, sha256=digest.hexdigest())

    def get_bytes(self, key: str) -> bytes:
        with unavailable_as_503("S3", component=COMPONENT):
            return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()

    def get_optional(self, key: str) -> bytes | None:
        with unavailable_as_503("S3", component=COMPONENT):
            try:
                return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if error_code(exc) in {"NoSuchKey", "404"}:
                    return None
                raise

    def presigned_url(self, key: str) -> str:
        # Presigning is local computation (no request), so it cannot fail on an outage.
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._expiry
        )
