"""Settings fail closed: each case imports renderproject.settings in a fresh process with its own environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 50
DEV_SECRET = "dev-only-insecure-secret-key-change-me-in-production-0123456789"
PROBE = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({n: getattr(s, n, None) for n in "
    "['SECRET_KEY', 'DEBUG', 'ALLOWED_HOSTS', 'RENDER_TRUSTED_PROXIES', 'SESSION_COOKIE_AGE', "
    "'SECURE_HSTS_SECONDS', 'SESSION_ENGINE']}))"
)


def load(tmp_path: Path, probe: str = PROBE, **env: str) -> tuple[dict | None, str]:
    """(the settings it loaded, None if it refused; stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "RENDER_"))}
    clean |= {"DJANGO_SETTINGS_MODULE": "renderproject.settings", "RENDER_LOCAL_SECRET_FILE": str(tmp_path / "secret")}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=False
    )
    return (json.loads(result.stdout) if result.returncode == 0 else None), result.stderr


def refused(tmp_path: Path, message: str, **env: str) -> None:
    loaded, stderr = load(tmp_path, **env)
    assert loaded is None and "ImproperlyConfigured" in stderr and message in stderr, stderr


@pytest.mark.parametrize("value", ["prod", "Production", "build", "staging", ""])
def test_render_env_must_be_local_or_production(tmp_path, value):
    refused(tmp_path, "RENDER_ENV must be 'local' or 'production'", RENDER_ENV=value, DJANGO_SECRET_KEY=SECRET)


def test_an_unknown_role_is_refused(tmp_path):
    refused(tmp_path, "RENDER_ROLE must be", RENDER_ROLE="web", DJANGO_SECRET_KEY=SECRET)


@pytest.mark.parametrize("env", ["local", "production"])
def test_the_dev_secret_is_refused_whenever_debug_is_off(tmp_path, env):
    refused(tmp_path, "published development key", RENDER_ENV=env, DJANGO_SECRET_KEY=DEV_SECRET)


@pytest.mark.parametrize(("env", "role"), [("production", "api"), ("production", "worker"), ("local", "api")])
def test_the_dockerfiles_build_only_secret_is_refused_outside_collectstatic(tmp_path, env, role):
    from renderproject.settings import BUILD_SECRET_KEY

    refused(tmp_path, "build-only key", RENDER_ENV=env, RENDER_ROLE=role, DJANGO_SECRET_KEY=BUILD_SECRET_KEY)


def test_the_build_only_secret_is_refused_even_with_debug_on(tmp_path):
    from renderproject.settings import BUILD_SECRET_KEY

    refused(tmp_path, "build-only key", RENDER_ENV="local", DJANGO_DEBUG="1", DJANGO_SECRET_KEY=BUILD_SECRET_KEY)


def test_the_dev_secret_is_allowed_locally_with_debug_on(tmp_path):
    loaded, _ = load(tmp_path, RENDER_ENV="local", DJANGO_DEBUG="1", DJANGO_SECRET_KEY=DEV_SECRET)
    assert loaded["SECRET_KEY"] == DEV_SECRET and loaded["DEBUG"] is True


@pytest.mark.parametrize(("env", "message"), [({}, "must be set"), ({"DJANGO_SECRET_KEY": "short"}, "32")])
def test_the_api_in_production_needs_a_long_secret(tmp_path, env, message):
    refused(tmp_path, message, RENDER_ENV="production", RENDER_ROLE="api", **env)


@pytest.mark.parametrize("role", ["worker", "webhooks", "sweeper"])
def test_workers_and_the_sweeper_run_without_a_secret_and_get_a_random_one(tmp_path, role):
    first, _ = load(tmp_path, RENDER_ENV="production", RENDER_ROLE=role, DJANGO_ALLOWED_HOSTS="render.example.com")
    second, _ = load(tmp_path, RENDER_ENV="production", RENDER_ROLE=role, DJANGO_ALLOWED_HOSTS="render.example.com")
    assert first and second, "refused"
    assert first["SECRET_KEY"] != second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 50
    assert DEV_SECRET not in (first["SECRET_KEY"], second["SECRET_KEY"])
    assert not (tmp_path / "secret").exists()


def test_locally_without_a_secret_one_random_key_is_made_and_shared(tmp_path):
    first, _ = load(tmp_path, RENDER_ENV="local")
    second, _ = load(tmp_path, RENDER_ENV="local")
    assert first and second, "refused"
    assert first["SECRET_KEY"] == second["SECRET_KEY"] != DEV_SECRET and len(first["SECRET_KEY"]) >= 50
    kept = tmp_path / "secret"
    assert kept.read_text().strip() == first["SECRET_KEY"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


@pytest.mark.parametrize("hosts", ["*", "render.example.com,*", " * "])
def test_wildcard_allowed_hosts_are_refused_in_production(tmp_path, hosts):
    refused(tmp_path, "not '*'", RENDER_ENV="production", DJANGO_SECRET_KEY=SECRET, DJANGO_ALLOWED_HOSTS=hosts)


def test_trusted_proxies_default_to_the_load_balancer_in_production_only(tmp_path):
    prod, _ = load(tmp_path, RENDER_ENV="production", DJANGO_SECRET_KEY=SECRET)
    local, _ = load(tmp_path, RENDER_ENV="local", DJANGO_SECRET_KEY=SECRET)
    assert (prod["RENDER_TRUSTED_PROXIES"], local["RENDER_TRUSTED_PROXIES"]) == (1, 0)


def test_browser_sessions_are_server_side_for_eight_hours_with_hsts_in_production(tmp_path):
    prod, _ = load(tmp_path, RENDER_ENV="production", DJANGO_SECRET_KEY=SECRET)
    local, _ = load(tmp_path, RENDER_ENV="local", DJANGO_SECRET_KEY=SECRET)
    assert prod["SESSION_ENGINE"] == local["SESSION_ENGINE"] == "jobs.api.sessions"
    assert prod["SESSION_COOKIE_AGE"] == local["SESSION_COOKIE_AGE"] == 8 * 3600
    assert prod["SECURE_HSTS_SECONDS"] >= 180 * 24 * 3600 and not local["SECURE_HSTS_SECONDS"]


QUEUES = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({'consumed': [q.name for q in s.CELERY_TASK_QUEUES], 'concurrency': s.CELERY_WORKER_CONCURRENCY, "
    "'predefined': sorted(s.CELERY_BROKER_TRANSPORT_OPTIONS.get('predefined_queues', {}))}))"
)


def test_render_workers_never_consume_the_webhook_queue_and_a_webhook_worker_consumes_only_it(tmp_path):
    urls = {f"RENDER_QUEUE_URL_{q}": f"https://sqs/{q.lower()}" for q in ("HIGH", "NORMAL", "LOW", "WEBHOOKS")}
    render, _ = load(tmp_path, QUEUES, RENDER_ROLE="worker", RENDER_QUEUE_PREFIX="p-", RENDER_WORKER_CONCURRENCY="3")
    hooks, _ = load(tmp_path, QUEUES, RENDER_ROLE="webhooks", RENDER_QUEUE_PREFIX="p-", RENDER_WORKER_CONCURRENCY="3")
    assert render["consumed"] == ["p-render-high", "p-render-normal", "p-render-low"] and render["concurrency"] == 3
    assert hooks["consumed"] == ["p-webhooks"] and hooks["concurrency"] == 4  # RENDER_WEBHOOK_CONCURRENCY
    # In AWS every process that sends to the webhook queue knows its URL (kombu never lists or creates it).
    api, _ = load(tmp_path, QUEUES, RENDER_ROLE="api", RENDER_QUEUE_PREFIX="p-", DJANGO_SECRET_KEY=SECRET, **urls)
    assert api["predefined"] == ["p-render-high", "p-render-low", "p-render-normal", "p-webhooks"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RENDER_WEBHOOK_TOTAL_TIMEOUT": "4"}, "at least the connect and read timeouts"),
        ({"RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER": "-1"}, "0 (no limit) or more"),
        ({"RENDER_WEBHOOK_BUSY_SECONDS": "901"}, "between 1 and 900"),
    ],
)
def test_webhook_timings_and_limits_that_cannot_work_are_refused(tmp_path, env, message):
    refused(tmp_path, message, DJANGO_SECRET_KEY=SECRET, **env)
