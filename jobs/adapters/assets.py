"""Scene files (assets) in S3: presigned uploads with S3's SHA-256 checksum, HeadObject checks, downloads.

Key: `assets/<owner slug>/<sha256>` (jobs.domain.asset_key), in the results bucket. The presigned PUT signs
`Content-Length`, `Content-Type` and `x-amz-checksum-sha256`, so S3 refuses any other length and stores
nothing whose SHA-256 differs from the declared one. (The emulator enforces neither: the API's size check
and the worker's own SHA-256 check of what it downloads are the other two locks.)
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from pathlib import Path

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import asset_key
from jobs.errors import RenderError
from jobs.ports.values import StoredAsset, UploadTicket

CONTENT_TYPE = "application/octet-stream"
CHUNK = 1024 * 1024
COMPONENT = "scene file storage"  # what a customer is told is unavailable when this bucket is


def checksum_header(sha256_hex: str) -> str:
    """S3's `x-amz-checksum-sha256`: the base64 of the digest (the API speaks hex)."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


class S3AssetStore:
    def __init__(self, *, client, bucket: str, upload_expiry: int):
        self._client = client
        self._bucket = bucket
        self._expiry = upload_expiry

    def upload_ticket(self, *, owner: str, sha256: str, size: int) -> UploadTicket:
        checksum = checksum_header(sha256)
        url = self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": asset_key(owner, sha256),
                "ContentType": CONTENT_TYPE,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
            },
            ExpiresIn=self._expiry,
        )
        headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(size), "x-amz-checksum-sha256": checksum}
        return UploadTicket(url=url, method="PUT", headers=headers, expires_in=self._expiry)

    def head(self, *, owner: str, sha256: str) -> StoredAsset | None:
        try:
            with unavailable_as_503("S3", component=COMPONENT):
                resp = self._client.head_object(
                    Bucket=self._bucket, Key=asset_key(owner, sha256), ChecksumMode="ENABLED"
                )
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        checksum = resp.get("ChecksumSHA256")
        # A multipart object's checksum is "<base64>-<parts>", a checksum of checksums: not the file's hash.
        stored = base64.b64decode(checksum).hex() if checksum and "-" not in checksum else None
        return StoredAsset(size=int(resp["ContentLength"]), sha256=stored, last_modified=resp["LastModified"])

    def refresh(self, *, owner: str, sha256: str) -> None:
        """Copy the object onto itself: its age (what the lifecycle rule counts) starts again."""
        key = asset_key(owner, sha256)
        with unavailable_as_503("S3", component=COMPONENT):
            self._client.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType=CONTENT_TYPE,
                Metadata={"refreshed": datetime.now().astimezone().isoformat(timespec="seconds")},
                ChecksumAlgorithm="SHA256",
            )

    def download(self, *, owner: str, sha256: str, dest: Path) -> None:
        """Write the asset to `dest`, verifying its SHA-256 on the way; a mismatch is a RenderError."""
        try:
            with unavailable_as_503("S3", component=COMPONENT):
                body = self._client.get_object(Bucket=self._bucket, Key=asset_key(owner, sha256))["Body"]
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise RenderError("The scene file is no longer stored (expired or never uploaded).") from exc
            raise
        digest = hashlib.sha256()
        with dest.open("wb") as out:
            for block in iter(lambda: body.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            dest.unlink(missing_ok=True)
            raise RenderError(
                "The stored scene file does not match its SHA-256 (its upload was not the declared file); "
                "upload it again."
            )
