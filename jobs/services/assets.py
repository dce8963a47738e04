"""Scene files (assets): declare an upload, look one up, and check and keep one for a job that names it.

An asset is an owner's file named by its SHA-256: declared in DynamoDB (AssetRepository), stored in S3
(AssetStore) by the client's presigned PUT. It lives `retention` after its declaration or the last job
submitted or retried with it: each such job extends the record's TTL and, when the S3 object is older than
a day, copies it onto itself so the bucket's lifecycle rule counts from then (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.errors import AssetConflict, AssetNotFound, AssetTooLarge, SceneFileMismatch, SceneFileMissing
from jobs.ports import AssetRecord, AssetRepository, AssetStore, StoredAsset, UploadTicket

REFRESH_AFTER = timedelta(days=1)  # an object younger than this needs no copy to stay


@dataclass(frozen=True)
class AssetStatus:
    sha256: str
    size: int
    uploaded: bool
    upload: UploadTicket | None = None  # set when the client still has to PUT the file


def asset_declare(
    *,
    repo: AssetRepository,
    store: AssetStore,
    owner: str,
    sha256: str,
    size: int,
    max_bytes: int,
    now: datetime,
    retention: timedelta,
) -> AssetStatus:
    """Declare a file the owner will upload; returns a presigned PUT, or none when it is already stored."""
    if size > max_bytes:
        raise AssetTooLarge(
            f"The scene file is {size} bytes; this farm accepts at most {max_bytes}.",
            details={"size": size, "limit": max_bytes},
        )
    stored = store.head(owner=owner, sha256=sha256)
    if stored is not None and not _matches(stored, sha256, size):
        raise AssetConflict(details={"size": size, "stored_size": stored.size})
    existing = repo.get(owner, sha256)
    if existing is None or existing.size != size or stored is None:
        repo.declare(AssetRecord(owner=owner, sha256=sha256, size=size, created_at=now, expires_at=now + retention))
    else:
        repo.extend(owner, sha256, until=now + retention)
    if stored is not None:
        return AssetStatus(sha256=sha256, size=size, uploaded=True)
    return AssetStatus(
        sha256=sha256, size=size, uploaded=False, upload=store.upload_ticket(owner=owner, sha256=sha256, size=size)
    )


def asset_get(*, repo: AssetRepository, store: AssetStore, owner: str, sha256: str) -> AssetStatus:
    """The owner's asset and whether its file is stored; another owner's (or an unknown) hash is a 404."""
    record = repo.get(owner, sha256)
    if record is None:
        raise AssetNotFound()
    stored = store.head(owner=owner, sha256=sha256)
    return AssetStatus(
        sha256=sha256, size=record.size, uploaded=stored is not None and _matches(stored, sha256, record.size)
    )


def asset_keep_for_job(
    *, repo: AssetRepository, store: AssetStore, owner: str, sha256: str, now: datetime, retention: timedelta
) -> None:
    """Check that a job's scene file is declared and stored as declared, then keep it `retention` longer.

    Missing: 422 scene_file_missing; stored with another size (or, where S3 reports it, another SHA-256):
    422 scene_file_mismatch. The worker checks the SHA-256 of what it downloads again before rendering.
    """
    record = repo.get(owner, sha256)
    stored = store.head(owner=owner, sha256=sha256) if record is not None else None
    if record is None or stored is None:
        raise SceneFileMissing(details={"scene_file": sha256})
    if not _matches(stored, sha256, record.size):
        raise SceneFileMismatch(details={"scene_file": sha256, "declared_size": record.size, "size": stored.size})
    repo.extend(owner, sha256, until=now + retention)
    if now - stored.last_modified > REFRESH_AFTER:
        store.refresh(owner=owner, sha256=sha256)


def _matches(stored: StoredAsset, sha256: str, size: int) -> bool:
    return stored.size == size and stored.sha256 in (None, sha256)


@dataclass(frozen=True)
class SceneFiles:
    """What submit and retry need to check and keep a job's scene file (wiring builds it)."""

    repo: AssetRepository
    store: AssetStore
    retention: timedelta

    def keep(self, *, owner: str, sha256: str, now: datetime) -> None:
        asset_keep_for_job(
            repo=self.repo, store=self.store, owner=owner, sha256=sha256, now=now, retention=self.retention
        )
