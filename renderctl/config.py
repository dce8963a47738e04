"""Where renderctl finds the API: RENDER_API_URL / RENDER_API_KEY, else the file `renderctl login` wrote."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """Nothing says which API to use or with which key."""


@dataclass(frozen=True)
class Config:
    url: str
    key: str


def config_path() -> Path:
    if os.environ.get("RENDERCTL_CONFIG"):
        return Path(os.environ["RENDERCTL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "renderctl" / "config.json"


def load() -> Config:
    """The environment wins over the file, variable by variable."""
    saved: dict = {}
    path = config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    url = os.environ.get("RENDER_API_URL") or saved.get("url") or DEFAULT_URL
    key = os.environ.get("RENDER_API_KEY") or saved.get("key") or ""
    if not key:
        raise ConfigError("no API key: run `renderctl login`, or set RENDER_API_KEY (and RENDER_API_URL)")
    return Config(url=url.rstrip("/"), key=key)


def save(config: Config) -> Path:
    """Write the file readable by its owner only (0600), created that way so the key is never exposed."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(path.name + ".tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": config.url, "key": config.key}, out)
    os.chmod(draft, 0o600)
    draft.replace(path)
    return path
