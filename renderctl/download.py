"""Download a job's frames (and the videos of its encode steps) in parallel, each checked against its SHA-256;
correct files already there are kept.

A file is written to `<name>.part` and renamed only once its checksum matches, so an interrupted download
leaves whole, correct files and the next run fetches only what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from renderctl.client import TIMEOUT, ApiError, Client


@dataclass(frozen=True)
class Item:
    name: str
    url: str
    sha256: str | None
    size: int | None


@dataclass
class Summary:
    downloaded: int = 0
    skipped: int = 0
    total: int = 0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def plan(client: Client, job_id: str) -> tuple[list[Item], dict | None]:
    """The files to fetch (frames, then videos) and the manifest (None for a one-frame job or one not COMPLETED)."""
    links, frames = client.frames(job_id)
    manifest = None
    expected: dict[int, dict] = {}
    if links.get("manifest_url"):
        try:
            resp = httpx.get(links["manifest_url"], timeout=TIMEOUT)
            resp.raise_for_status()
            manifest = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ApiError(0, "manifest_unavailable", f"cannot read the job's manifest: {exc}") from exc
        expected = {entry["frame"]: entry for entry in manifest["frames"]}
    items = []
    for frame in frames:
        entry = expected.get(frame["frame"], frame)
        name = PurePosixPath(entry["key"]).name if "key" in entry else PurePosixPath(frame["url"].split("?")[0]).name
        items.append(Item(name=name, url=frame["url"], sha256=entry.get("sha256"), size=entry.get("size")))
    for video in links.get("videos") or ():  # video.mp4, video.webm: named by their key, as the frames are
        name = PurePosixPath(video["url"].split("?")[0]).name
        items.append(Item(name=name, url=video["url"], sha256=video.get("sha256"), size=video.get("size")))
    return items, manifest


def fetch(item: Item, target: Path, http: httpx.Client) -> bool:
    """True when the file was downloaded, False when a correct copy was already there."""
    path = target / item.name
    part = path.with_name(path.name + ".part")  # left by an interrupted run: never trusted
    if path.exists() and item.sha256 and sha256_of(path) == item.sha256:
        part.unlink(missing_ok=True)
        return False
    digest = hashlib.sha256()
    with http.stream("GET", item.url) as resp:
        if not resp.is_success:
            raise ApiError(
                resp.status_code, "download_failed", f"{item.name}: storage answered HTTP {resp.status_code}"
            )
        with part.open("wb") as out:
            for block in resp.iter_bytes(256 * 1024):
                digest.update(block)
                out.write(block)
    if item.sha256 and digest.hexdigest() != item.sha256:
        part.unlink(missing_ok=True)
        raise ApiError(0, "checksum_mismatch", f"{item.name}: SHA-256 differs from the manifest; not kept")
    part.replace(path)
    return True


def download(
    client: Client,
    job_id: str,
    target: Path,
    *,
    parallel: int = 8,
    on_file: Callable[[Item, bool], None] = lambda item, fetched: None,
    on_plan: Callable[[int], None] = lambda total: None,
) -> Summary:
    target.mkdir(parents=True, exist_ok=True)
    items, manifest = plan(client, job_id)
    if not items:
        raise ApiError(0, "nothing_to_download", f"job {job_id} has no frames stored yet")
    on_plan(len(items))
    summary = Summary(total=len(items))
    with httpx.Client(timeout=TIMEOUT) as http, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(fetch, item, target, http): item for item in items}
        try:
            for future in as_completed(futures):
                fetched = future.result()
                summary.downloaded += fetched
                summary.skipped += not fetched
                on_file(futures[future], fetched)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    if manifest is not None:
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return summary
