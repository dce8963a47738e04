"""The worker's local copies of scene files: per owner, verified on every use, least recently used evicted.

`root/scenes/<owner slug>/<sha256>` (an owner's file is never served for another owner's job, even with the
same hash: each owner's copy was downloaded from that owner's own upload), and `root/chunks/` for the
chunks' scratch directories. Directories are 0711 and files 0644: a sandboxed render (another uid) can open
the one scene file it is given but list nothing. A cached file is checked before each use (a regular
file, not a link, with the SHA-256 of its name); one that fails is dropped and downloaded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from jobs.domain import owner_slug

HASH_BLOCK = 1024 * 1024


class SceneCache:
    """`download(owner=, sha256=, dest=)` writes the owner's file to `dest`, raising RenderError unless its
    SHA-256 matches."""

    def __init__(self, *, root: Path, max_bytes: int, download: Callable[..., None]):
        self.root = root
        self.scenes = root / "scenes"
        self.chunks = root / "chunks"
        self.max_bytes = max_bytes
        self._download = download

    def path(self, *, owner: str, sha256: str) -> Path:
        """The owner's file with this SHA-256, downloaded unless a verified copy is here."""
        folder = self.scenes / owner_slug(owner)
        _directory(self.root, self.scenes, folder)
        dest = folder / sha256
        if _verified(dest, sha256):
            os.utime(dest)  # most recently used
            return dest
        dest.unlink(missing_ok=True)
        part = folder / f".{sha256}.{os.getpid()}.part"
        try:
            self._download(owner=owner, sha256=sha256, dest=part)
            os.chmod(part, 0o644)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        self._evict(keep=dest)
        return dest

    def scratch(self) -> Path:
        """A new scratch directory for one chunk (the caller removes it)."""
        _directory(self.root, self.chunks)
        return Path(tempfile.mkdtemp(prefix="chunk-", dir=self.chunks))

    def _evict(self, *, keep: Path) -> None:
        files = []
        for folder in self.scenes.iterdir():
            with contextlib.suppress(OSError):
                for entry in folder.iterdir():
                    if not entry.name.startswith("."):
                        info = entry.lstat()
                        files.append((info.st_mtime, info.st_size, entry))
        total = sum(size for _, size, _ in files)
        for _, size, entry in sorted(files):
            if total <= self.max_bytes:
                break
            if entry != keep:
                entry.unlink(missing_ok=True)  # a render using it holds its own link or bind of the file
                total -= size


def _directory(*paths: Path) -> None:
    for path in paths:
        path.mkdir(mode=0o711, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != 0o711:
            os.chmod(path, 0o711)  # noqa: S103 (traversable, not listable: see the module docstring)


def _verified(path: Path, sha256: str) -> bool:
    """A regular file (not a link) whose content has this SHA-256."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        digest = hashlib.sha256()
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest() == sha256
