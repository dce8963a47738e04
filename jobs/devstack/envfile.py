"""`.devstack/env`: where a running local stack says how to reach it, for commands run from other terminals.

`manage.py devstack` (what `make run` runs) writes the file once its resources exist and removes it when it
stops. `manage.py` loads it before Django starts, unless the environment names a target itself
(`AWS_ENDPOINT_URL` set, or `RENDER_ENV=production`). Loading it sets the stack's endpoint, region and
resource names, and drops the variables that could send a call elsewhere (per-service endpoints, predefined
queue URLs); a stack on the emulator also writes its dummy credentials, which then replace the shell's
credentials and profile. So credentials in the shell never reach real AWS while the stack is up. A file
whose stack process is gone (a `kill -9`) is ignored.

The file is shell syntax (`set -a; . .devstack/env; set +a` works too). This module imports nothing
heavy: manage.py reads it before Django and boto3 are loaded.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[2]
PATH_VARIABLE = "RENDER_DEVSTACK_ENV"  # another file than ROOT/.devstack/env (tests)
REQUIRED_VARIABLE = "RENDER_DEVSTACK_REQUIRED"  # `make key`: refuse to run unless a local target is known
PID_VARIABLE = "RENDER_DEVSTACK_PID"

# Variables that decide where AWS calls go, with which identity, and on which resources. A loaded file
# replaces them: whatever of a group the file does not set is removed from the environment. Credentials
# are replaced only when the file has some (a stack on the emulator writes its dummy ones).
_ENDPOINT = ("AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_REGION", "AWS_DEFAULT_REGION")
_ENDPOINT_PREFIXES = ("AWS_ENDPOINT_URL_",)  # AWS_ENDPOINT_URL_DYNAMODB, _SQS, _S3 ...
_CREDENTIALS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
)
_RESOURCES = (
    "RENDER_TABLE_NAME",
    "RENDER_BUCKET_NAME",
    "RENDER_QUEUE_PREFIX",
    "RENDER_QUEUE_URL_HIGH",
    "RENDER_QUEUE_URL_NORMAL",
    "RENDER_QUEUE_URL_LOW",
    "RENDER_QUEUE_URL_WEBHOOKS",
    "RENDER_DLQ_URL",
    "RENDER_WEBHOOK_DLQ_URL",
    "CELERY_BROKER_URL",
)


def env_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(PATH_VARIABLE) or ROOT / ".devstack" / "env")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read(path: Path) -> dict[str, str] | None:
    """The variables of a stack's file, or None if there is no file or its stack process is gone."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for token in shlex.split(line):
            name, sep, value = token.partition("=")
            if sep and name:
                values[name] = value
    pid = values.get(PID_VARIABLE, "")
    if not pid.isdigit() or not _pid_alive(int(pid)):
        return None
    return values


def write(path: Path, values: Mapping[str, str], *, pid: int | None = None) -> None:
    """Write the file (mode 0600, atomically); `pid` is the stack's process, by which stale files are told."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `manage.py devstack` (make run) while the local stack is up; removed when it stops.",
        "# manage.py loads it unless AWS_ENDPOINT_URL or RENDER_ENV=production is set.",
        f"{PID_VARIABLE}={pid or os.getpid()}",
        *(f"{name}={shlex.quote(value)}" for name, value in values.items()),
    ]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    tmp.replace(path)


def remove(path: Path, *, pid: int | None = None) -> None:
    """Remove the file if it is this stack's (another stack may have written it since)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    if f"{PID_VARIABLE}={pid or os.getpid()}\n" in text:
        path.unlink(missing_ok=True)


def explicit_target(environ: Mapping[str, str]) -> str | None:
    """Why the environment's own settings win over a stack's file, or None if they do not."""
    if environ.get("AWS_ENDPOINT_URL"):
        return f"AWS_ENDPOINT_URL={environ['AWS_ENDPOINT_URL']}"
    if environ.get("RENDER_ENV") == "production":
        return "RENDER_ENV=production"
    return None


def apply(environ: MutableMapping[str, str], values: Mapping[str, str]) -> None:
    """Replace the environment's targeting variables with the file's."""
    replaced = (*_ENDPOINT, *_RESOURCES, *(_CREDENTIALS if "AWS_ACCESS_KEY_ID" in values else ()))
    for name in list(environ):
        if name in replaced or name.startswith(_ENDPOINT_PREFIXES):
            del environ[name]
    environ.update(values)


def use_local_stack(environ: MutableMapping[str, str], stderr: TextIO) -> bool:
    """manage.py's hook: load the running stack's file into `environ` if nothing explicit says otherwise.

    Says so in one line on stderr. With RENDER_DEVSTACK_REQUIRED=1 (`make key`) it exits with status 2
    when there is neither a running stack nor an explicit AWS_ENDPOINT_URL.
    """
    path = env_path(environ)
    values = None if explicit_target(environ) else read(path)
    if values is None:
        if environ.get(REQUIRED_VARIABLE) == "1" and not environ.get("AWS_ENDPOINT_URL"):
            stderr.write(f"No local stack is running ({path} is missing or stale): start it with `make run`.\n")
            raise SystemExit(2)
        return False
    apply(environ, values)
    stderr.write(
        f"Targeting the local stack at {values.get('AWS_ENDPOINT_URL', '?')} (settings from {path}; "
        "set AWS_ENDPOINT_URL or RENDER_ENV=production to aim elsewhere).\n"
    )
    return True


def stack_values(
    environ: Mapping[str, str],
    *,
    endpoint: str,
    credentials: Mapping[str, str] | None,
    table: str,
    bucket: str,
    queue_prefix: str,
) -> dict[str, str]:
    """What a stack writes to its file: endpoint, region, the given credentials (only ever the emulator's
    dummy ones; never the shell's), resource names, and the broker and queue URL overrides it runs with."""
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    values = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region, "AWS_DEFAULT_REGION": region, **(credentials or {})}
    values.update({"RENDER_TABLE_NAME": table, "RENDER_BUCKET_NAME": bucket, "RENDER_QUEUE_PREFIX": queue_prefix})
    for name in _RESOURCES:
        if name not in values and environ.get(name):
            values[name] = environ[name]
    return values
