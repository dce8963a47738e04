"""Scene files (assets): declare an upload, look one up, and check and keep one for a job that names it.

An asset is an owner's file named by its SHA-256: declared in DynamoDB (AssetRepository), stored in S3
(AssetStore) by the client's presigned PUT. It lives `retention` after its declaration or the last job
submitted or retried with it: each such job extends the record's TTL and, when the S3 object is older than
a day, copies it onto itself so the bucket's lifecycle rule counts from then (docs/ARCHITECTURE.md).

Once uploaded, a file is inspected once: the first look at it (GET /api/assets/<sha>, a declaration of a file
already stored, or a submit) marks its inspection pending with a conditional write and sends one message; a
worker's Blender reads the file's settings in the sandbox (`asset_inspect`) and records them on the asset.
Submit takes the file's frame range and output format from there when the job gives none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.domain import Priority
from jobs.errors import AssetConflict, AssetNotFound, AssetTooLarge, RenderError, SceneFileMismatch, SceneFileMissing
from jobs.ports import (
    INSPECTION_DONE,
    INSPECTION_FAILED,
    INSPECTION_PENDING,
    AssetInspection,
    AssetRecord,
    AssetRepository,
    AssetStore,
    StoredAsset,
    TaskQueue,
    UploadTicket,
)

log = logging.getLogger(__name__)
REFRESH_AFTER = timedelta(days=1)  # an object younger than this needs no copy to stay
INSPECTION_STALE = timedelta(minutes=2)  # a pending inspection this old is asked for again (lost or dead)


@dataclass(frozen=True)
class AssetStatus:
    sha256: str
    size: int
    uploaded: bool
    upload: UploadTicket | None = None  # set when the client still has to PUT the file
    inspection: AssetInspection | None = None  # once uploaded: what Blender reads of the file, or pending


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


def asset_get(
    *, repo: AssetRepository, store: AssetStore, queue: TaskQueue, owner: str, sha256: str, now: datetime
) -> AssetStatus:
    """The owner's asset, whether its file is stored and, once it is, its inspection (asked for on the first
    look); another owner's (or an unknown) hash is a 404."""
    record = repo.get(owner, sha256)
    if record is None:
        raise AssetNotFound()
    stored = store.head(owner=owner, sha256=sha256)
    uploaded = stored is not None and _matches(stored, sha256, record.size)
    inspection = asset_inspection(repo=repo, queue=queue, record=record, now=now) if uploaded else None
    return AssetStatus(sha256=sha256, size=record.size, uploaded=uploaded, inspection=inspection)


def asset_inspection(
    *, repo: AssetRepository, queue: TaskQueue, record: AssetRecord, now: datetime, priority: Priority = Priority.HIGH
) -> AssetInspection:
    """The stored file's inspection; asked for (one message, whoever asks first) unless done or under way, at
    `priority`: high where someone waits for it, low where nothing does (a job that gave its frames is checked
    by its first chunk, so its inspection need not take a worker before the job's own chunks)."""
    current = record.inspection
    if current is not None and (current.state != INSPECTION_PENDING or now - current.requested_at < INSPECTION_STALE):
        return current
    if repo.request_inspection(record.owner, record.sha256, now=now, stale_before=now - INSPECTION_STALE):
        queue.enqueue_inspection(owner=record.owner, sha256=record.sha256, priority=priority)
    return AssetInspection(state=INSPECTION_PENDING, requested_at=now)


def asset_inspect(
    *, repo: AssetRepository, inspector: Callable[..., dict], owner: str, sha256: str, now: datetime
) -> AssetInspection | None:
    """A worker's part: read the file's settings with `inspector` (Blender, sandboxed) and record them. A file
    Blender cannot read is recorded as failed, with why; a duplicate message finds the outcome recorded."""
    record = repo.get(owner, sha256)
    if record is None:
        return None  # expired, or never declared
    if record.inspection is not None and record.inspection.state in (INSPECTION_DONE, INSPECTION_FAILED):
        return record.inspection
    try:
        outcome = AssetInspection(state=INSPECTION_DONE, requested_at=now, report=inspector(owner=owner, sha256=sha256))
    except RenderError as exc:
        outcome = AssetInspection(state=INSPECTION_FAILED, requested_at=now, error=str(exc) or "unreadable")
    repo.record_inspection(owner, sha256, outcome)
    log.info("scene file %s of %s inspected: %s", sha256[:12], owner, outcome.state)
    return outcome


def asset_keep_for_job(
    *, repo: AssetRepository, store: AssetStore, owner: str, sha256: str, now: datetime, retention: timedelta
) -> AssetRecord:
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
    return record


def _matches(stored: StoredAsset, sha256: str, size: int) -> bool:
    return stored.size == size and stored.sha256 in (None, sha256)


@dataclass(frozen=True)
class SceneFiles:
    """What submit and retry need to check and keep a job's scene file, and to read its settings (wiring
    builds it)."""

    repo: AssetRepository
    store: AssetStore
    queue: TaskQueue
    retention: timedelta

    def keep(self, *, owner: str, sha256: str, now: datetime, waited_for: bool = True) -> AssetInspection:
        """Check and keep the file (422 when missing or not as declared); its inspection, asked for if need be
        (at low priority unless `waited_for`)."""
        record = asset_keep_for_job(
            repo=self.repo, store=self.store, owner=owner, sha256=sha256, now=now, retention=self.retention
        )
        priority = Priority.HIGH if waited_for else Priority.LOW
        return asset_inspection(repo=self.repo, queue=self.queue, record=record, now=now, priority=priority)
