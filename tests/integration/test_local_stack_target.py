"""manage.py run from a second terminal while `make run` is up: it targets the stack named in `.devstack/env`."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.devstack import envfile
from jobs.devstack.stack import EMULATOR_CREDENTIALS, ROOT
from jobs.services import hash_api_key


def test_manage_py_in_another_terminal_targets_the_local_stack_not_the_shells_aws(emulator, table, key_repo, tmp_path):
    """A second terminal with real-looking credentials, no region and stray endpoints reaches the stack."""
    env_file = tmp_path / "env"
    values = envfile.stack_values(
        {},
        endpoint=emulator.env["AWS_ENDPOINT_URL"],
        credentials=EMULATOR_CREDENTIALS,
        table=table,
        bucket="unused",
        queue_prefix="unused-",
    )
    envfile.write(env_file, values, pid=os.getpid())
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RENDER_", "CELERY_"))}
    shell.update(
        {
            "RENDER_DEVSTACK_ENV": str(env_file),
            "AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY00",
            "AWS_SECRET_ACCESS_KEY": "real-looking-secret",
            "AWS_PROFILE": "no-such-profile",  # would raise ProfileNotFound if it were kept
            "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",  # nothing listens there
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "RENDER_TABLE_NAME": "someone-elses-table",
        }
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--owner", "alice"],
        cwd=ROOT,
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key_repo.owner_for(hash_api_key(key)) == "alice"  # stored in the stack's table, in the emulator
    notices = [line for line in done.stderr.splitlines() if "local stack" in line]
    assert notices == [
        f"Targeting the local stack at {emulator.env['AWS_ENDPOINT_URL']} (settings from {env_file}; "
        "set AWS_ENDPOINT_URL or RENDER_ENV=production to aim elsewhere)."
    ]


def test_a_second_devstack_refuses_to_start_while_one_is_running(tmp_path, monkeypatch):
    env_file = tmp_path / "env"
    envfile.write(env_file, {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, pid=os.getpid())
    monkeypatch.setenv("RENDER_DEVSTACK_ENV", str(env_file))
    with pytest.raises(CommandError, match="already running"):
        call_command("devstack")
