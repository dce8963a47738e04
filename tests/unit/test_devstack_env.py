"""`.devstack/env`: when manage.py loads a running stack's settings, and what loading them replaces."""

import io
import os
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.devstack import envfile
from jobs.devstack.stack import EMULATOR_CREDENTIALS

ENDPOINT = "http://127.0.0.1:4599"


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "env"
    values = envfile.stack_values(
        {}, endpoint=ENDPOINT, credentials=EMULATOR_CREDENTIALS, table="t", bucket="b", queue_prefix="p-"
    )
    envfile.write(path, values, pid=os.getpid())
    return path


def load(environ: dict) -> tuple[bool, str]:
    err = io.StringIO()
    return envfile.use_local_stack(environ, err), err.getvalue()


def test_the_file_replaces_everything_that_aims_aws_calls(env_file):
    environ = {
        envfile.PATH_VARIABLE: str(env_file),
        "AWS_ACCESS_KEY_ID": "AKIAREAL",
        "AWS_SECRET_ACCESS_KEY": "real",
        "AWS_PROFILE": "prod",
        "AWS_ENDPOINT_URL_S3": "https://s3.amazonaws.com",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
        "RENDER_QUEUE_URL_HIGH": "https://sqs.us-east-1.amazonaws.com/1/prod-render-high",
        "RENDER_TABLE_NAME": "prod",
        "PATH": "/bin",
    }
    loaded, err = load(environ)
    assert loaded and err.count("\n") == 1 and f"local stack at {ENDPOINT}" in err
    assert environ == {
        envfile.PATH_VARIABLE: str(env_file),
        envfile.PID_VARIABLE: str(os.getpid()),
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        **EMULATOR_CREDENTIALS,
        "RENDER_TABLE_NAME": "t",
        "RENDER_BUCKET_NAME": "b",
        "RENDER_QUEUE_PREFIX": "p-",
        "PATH": "/bin",
    }


@pytest.mark.parametrize("explicit", [{"AWS_ENDPOINT_URL": "http://elsewhere:1"}, {"RENDER_ENV": "production"}])
def test_an_explicit_target_wins_over_the_file(env_file, explicit):
    environ = {envfile.PATH_VARIABLE: str(env_file), **explicit}
    assert load(environ) == (False, "")
    assert environ == {envfile.PATH_VARIABLE: str(env_file), **explicit}


def test_a_file_whose_stack_is_gone_is_ignored(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "env"
    envfile.write(path, {"AWS_ENDPOINT_URL": ENDPOINT}, pid=gone.pid)
    environ = {envfile.PATH_VARIABLE: str(path)}
    assert load(environ) == (False, "")
    assert envfile.read(path) is None


def test_make_key_refuses_without_a_running_stack(tmp_path):
    environ = {envfile.PATH_VARIABLE: str(tmp_path / "missing"), envfile.REQUIRED_VARIABLE: "1"}
    with pytest.raises(SystemExit) as exc:
        load(environ)
    assert exc.value.code == 2


def test_the_file_is_shell_syntax_private_and_removed_only_by_its_stack(env_file):
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run(
        ["sh", "-c", f'set -a; . "{env_file}"; echo "$AWS_ENDPOINT_URL $RENDER_QUEUE_PREFIX"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{ENDPOINT} p-\n"
    envfile.remove(env_file, pid=os.getpid() + 1)  # another stack's: left alone
    assert env_file.exists()
    envfile.remove(env_file, pid=os.getpid())
    assert not env_file.exists()


def test_a_stack_on_an_endpoint_of_its_own_writes_no_credentials():
    values = envfile.stack_values(
        {"AWS_ACCESS_KEY_ID": "AKIAREAL", "AWS_REGION": "eu-west-1", "CELERY_BROKER_URL": "sqs://x"},
        endpoint=ENDPOINT,
        credentials=None,
        table="t",
        bucket="b",
        queue_prefix="",
    )
    assert "AWS_ACCESS_KEY_ID" not in values
    assert values["AWS_REGION"] == values["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert values["CELERY_BROKER_URL"] == "sqs://x"


def test_make_worker_refuses_without_a_running_stack(tmp_path, monkeypatch):
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / "env"
    envfile.write(stale, {"AWS_ENDPOINT_URL": ENDPOINT}, pid=gone.pid)  # its stack was killed with SIGKILL
    for path in (tmp_path / "missing", stale):
        monkeypatch.setenv(envfile.PATH_VARIABLE, str(path))
        with pytest.raises(CommandError) as refused:
            call_command("devstack_worker")
        assert (
            str(refused.value) == f"No local stack is running ({path} is missing or stale): start one with `make run`."
        )
