"""Django and Celery settings, every value from the environment (each one in docs/operating/configuration.md)."""

import math
import os
import secrets
import sys
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from jobs.domain import Priority, pricing, timing

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_number(name: str, default, parse, kind: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {kind}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


# Published in this repository's history: refused whenever DEBUG is off.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-in-production-0123456789"
# The Dockerfile's collectstatic step loads production settings, which need a key: it passes this one. It is
# public (in the Dockerfile and in every image's build history), so it is accepted by that command only, which
# signs nothing; anything else started with it stops (tests/infra/test_image.py reads it from the Dockerfile).
BUILD_SECRET_KEY = "collectstatic-only-not-used-at-runtime-0123456789abcdef"
COLLECTING_STATIC = sys.argv[1:2] == ["collectstatic"]
ENVIRONMENTS = ("local", "production")
# Processes that never sign anything (no sessions, cursors or CSRF tokens): in production only the API
# task is given DJANGO_SECRET_KEY. `webhooks` is the worker of webhook deliveries (`bin/entrypoint webhooks`).
SIGNS_NOTHING = ("worker", "webhooks", "sweeper")

RENDER_ENV = env("RENDER_ENV", "local")
if RENDER_ENV not in ENVIRONMENTS:
    raise ImproperlyConfigured(f"RENDER_ENV must be 'local' or 'production', got {RENDER_ENV!r}")
RENDER_ROLE = env("RENDER_ROLE", "api")
if RENDER_ROLE not in ("api", *SIGNS_NOTHING):
    raise ImproperlyConfigured(f"RENDER_ROLE must be 'api', 'worker', 'webhooks' or 'sweeper', got {RENDER_ROLE!r}")
DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG and RENDER_ENV == "production":
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")


def local_secret_key(path: Path) -> str:
    """A random key made once and kept in `path` (mode 0600), shared by every local process.

    make run's API runs several gunicorn processes, plus tests and management commands: a key per
    process would make one process refuse the cursors and sessions another signed. The first process
    to get here writes the file (atomically: a hard link that fails if another won the race).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(f"{path} holds no usable secret key; delete it to have a new one made")
    return key


def secret_key() -> str:
    """DJANGO_SECRET_KEY, checked; else a key no one else knows, where that is safe.

    - Given: at least 32 characters, never the published dev key unless DEBUG is on, and never the
      Dockerfile's build-only key outside collectstatic.
    - Not given, worker or sweeper (they sign nothing): a random key per process.
    - Not given, API in production: refused.
    - Not given, locally (DEBUG is off by default there too, so the dev key would be refused): a random
      key kept in .devstack/secret (RENDER_LOCAL_SECRET_FILE), or per process if that cannot be written.
    """
    given = os.environ.get("DJANGO_SECRET_KEY", "")
    if given:
        if given == DEV_SECRET_KEY and not DEBUG:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is the published development key; it is refused unless DEBUG is on"
            )
        if given == BUILD_SECRET_KEY and not COLLECTING_STATIC:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is the Dockerfile's build-only key (public); only collectstatic accepts it"
            )
        if len(given) < 32:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a random value of at least 32 characters")
        return given
    if RENDER_ROLE in SIGNS_NOTHING:
        return secrets.token_urlsafe(50)
    if RENDER_ENV == "production":
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY must be set to a long random value in production (RENDER_ROLE={RENDER_ROLE})"
        )
    try:
        return local_secret_key(Path(env("RENDER_LOCAL_SECRET_FILE", str(BASE_DIR / ".devstack" / "secret"))))
    except OSError:
        return secrets.token_urlsafe(50)


SECRET_KEY = secret_key()
ALLOWED_HOSTS = [h.strip() for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]

if RENDER_ENV == "production":
    # Refuse to start with settings that are only safe on a laptop.
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must not be empty in production")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must name the hosts in production, not '*'")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Browsers remember to use HTTPS only (sent on HTTPS responses only). Not for subdomains nor preloaded:
    # the API's parent domain may serve sites this deployment does not control.
    SECURE_HSTS_SECONDS = env_int("RENDER_HSTS_SECONDS", 365 * 24 * 3600)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = [o for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "jobs",
]

MIDDLEWARE = [
    "jobs.api.observe.RequestContextMiddleware",  # request id, owner and job in every log line; API metrics
    # A strict Content-Security-Policy on every response whose view set none (the console sets its own).
    "jobs.api.security_headers.ContentSecurityPolicyMiddleware",
    "jobs.api.health.HealthzMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "jobs.api.throttling.AuthFailureLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # ETag on GET answers and 304 for If-None-Match: the console polls with conditional requests.
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# What SecurityMiddleware and XFrameOptionsMiddleware send on every response: Django's defaults, stated here so
# a change of default cannot drop them silently (tests/integration/test_security_headers.py checks them).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "renderproject.urls"
WSGI_APPLICATION = "renderproject.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csrf",
            ],
        },
    },
]

# No relational database: job state and API keys live in DynamoDB.
DATABASES: dict = {}
# The browsable API's login lives in DynamoDB sessions (jobs/api/sessions.py), so logout and key
# revocation end it on the server; the cookie holds only a random session key. A login lasts 8 hours.
SESSION_ENGINE = "jobs.api.sessions"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_HTTPONLY = True
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # API key records by key hash (jobs/api/auth.py), per process, for RENDER_API_KEY_CACHE_SECONDS.
    "api_keys": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "api-keys",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None  # set where collectstatic runs (the image)
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Bodies larger than this are refused with 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("RENDER_MAX_BODY_BYTES", 16 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.auth.BearerApiKeyAuthentication",
        "jobs.api.auth.BrowserApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "jobs.api.browsable.RenderFarmBrowsableRenderer",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["jobs.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "VIEW_DESCRIPTION_FUNCTION": "jobs.api.browsable.view_description",
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Render farm API",
    "DESCRIPTION": "Submit render jobs, follow their progress and download the frames.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# `json`: one JSON object per line with the request, job, chunk, attempt, worker and owner it is about
# (jobs/adapters/logs.py), and the embedded-metric lines CloudWatch reads; `text`: the same for people.
RENDER_LOG_FORMAT = env("RENDER_LOG_FORMAT", "json" if RENDER_ENV == "production" else "text")
if RENDER_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"RENDER_LOG_FORMAT must be 'json' or 'text', got {RENDER_LOG_FORMAT!r}")
# CloudWatch namespace of the metrics the code writes as embedded-metric log lines (jobs/adapters/metrics.py).
RENDER_METRICS_NAMESPACE = env("RENDER_METRICS_NAMESPACE", "RenderFarm")
LOGGING_CONFIG = "jobs.adapters.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "jobs.adapters.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "jobs.adapters.logs.JsonLineFormatter"},
        "text": {"()": "jobs.adapters.logs.TextFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": RENDER_LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env("RENDER_LOG_LEVEL", "INFO")},
    # httpx logs every request's URL at INFO, and a webhook URL may hold a secret in its path.
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Render farm -------------------------------------------------------------------------------
RENDER_TABLE_NAME = env("RENDER_TABLE_NAME", "render-jobs")
RENDER_BUCKET_NAME = env("RENDER_BUCKET_NAME", "render-results")
RENDER_QUEUE_PREFIX = env("RENDER_QUEUE_PREFIX", "")
RENDER_RENDERER = env("RENDER_RENDERER", "simulated")
RENDER_SIMULATED_SECONDS = env("RENDER_SIMULATED_SECONDS", "2-5")
# Scene files (assets): uploaded straight to S3 with a presigned PUT (one request, so at most 5 GiB).
RENDER_MAX_ASSET_BYTES = env_int("RENDER_MAX_ASSET_BYTES", 2 * 1024**3)
if not 0 < RENDER_MAX_ASSET_BYTES <= 5 * 1024**3:
    raise ImproperlyConfigured("RENDER_MAX_ASSET_BYTES must be between 1 and 5 GiB (one presigned PUT)")
RENDER_ASSET_UPLOAD_EXPIRY = env_int("RENDER_ASSET_UPLOAD_EXPIRY", 3600)
# Other renderers a worker offers besides the simulated one (jobs choose with `renderer`).
RENDER_RENDERERS = [r.strip() for r in env("RENDER_RENDERERS", "blender").split(",") if r.strip()]
RENDER_BLENDER_BINARY = env("RENDER_BLENDER_BINARY", "blender")
RENDER_BLENDER_FRAME_TIMEOUT = env_int("RENDER_BLENDER_FRAME_TIMEOUT", 1800)
RENDER_BLENDER_CACHE_DIR = env("RENDER_BLENDER_CACHE_DIR", os.path.join(tempfile.gettempdir(), "render-scenes"))
RENDER_BLENDER_CACHE_BYTES = env_int("RENDER_BLENDER_CACHE_BYTES", 10 * 1024**3)
# One Blender process kept across consecutive chunks of the same job (jobs/renderers/blender.py), stopped
# after RENDER_BLENDER_IDLE_SECONDS without work.
RENDER_BLENDER_PERSISTENT = env_bool("RENDER_BLENDER_PERSISTENT", True)
RENDER_BLENDER_IDLE_SECONDS = env_float("RENDER_BLENDER_IDLE_SECONDS", 15.0)
if RENDER_BLENDER_IDLE_SECONDS <= 0:
    raise ImproperlyConfigured("RENDER_BLENDER_IDLE_SECONDS must be above 0 (seconds)")
# The longest a new scene file's inspection renders its first frame to measure its speed (the chunk size of jobs
# that give none); 0: no probe. The probe holds a worker for up to this long per new file.
RENDER_BLENDER_PROBE_SECONDS = env_float("RENDER_BLENDER_PROBE_SECONDS", 20.0)
if RENDER_BLENDER_PROBE_SECONDS < 0:
    raise ImproperlyConfigured("RENDER_BLENDER_PROBE_SECONDS must be 0 or more (seconds)")
# Encode steps: ffmpeg (Debian's package), confined like Blender, and the longest one run may take.
RENDER_FFMPEG_BINARY = env("RENDER_FFMPEG_BINARY", "ffmpeg")
RENDER_ENCODE_TIMEOUT = env_int("RENDER_ENCODE_TIMEOUT", 3600)
if RENDER_ENCODE_TIMEOUT < 1:
    raise ImproperlyConfigured("RENDER_ENCODE_TIMEOUT must be at least 1 (seconds)")
# The most frame bytes one video is made of: they are written to the worker's disk (beside the scene cache and
# the chunks' scratch: keep it under the task's ephemeral storage, RENDER_BLENDER_CACHE_BYTES aside).
RENDER_ENCODE_MAX_INPUT_MB = env_int("RENDER_ENCODE_MAX_INPUT_MB", 6 * 1024)
if RENDER_ENCODE_MAX_INPUT_MB < 1:
    raise ImproperlyConfigured("RENDER_ENCODE_MAX_INPUT_MB must be at least 1 (MiB)")
# How Blender is confined (jobs/sandbox/): `bwrap` (bubblewrap: namespaces, where user namespaces exist),
# `sidecar` (ECS Fargate: the task's sandbox container, reached on RENDER_SANDBOX_SOCKET), `none` (local only).
RENDER_SANDBOX = env("RENDER_SANDBOX", "bwrap")
if RENDER_SANDBOX not in ("bwrap", "sidecar", "none"):
    raise ImproperlyConfigured(f"RENDER_SANDBOX must be 'bwrap', 'sidecar' or 'none', got {RENDER_SANDBOX!r}")
if RENDER_SANDBOX == "none" and RENDER_ENV == "production":
    raise ImproperlyConfigured("RENDER_SANDBOX=none is for local measurements only; production renders sandboxed")
RENDER_SANDBOX_SOCKET = env("RENDER_SANDBOX_SOCKET", "/sandbox/run/sandbox.sock")
# The uid renders run as when the worker is root (bwrap), or the first of the sidecar's uids (one per slot).
RENDER_SANDBOX_UID = env_int("RENDER_SANDBOX_UID", 10002)
if RENDER_SANDBOX_UID <= 0:
    raise ImproperlyConfigured("RENDER_SANDBOX_UID must be an unprivileged uid (above 0)")
# Limits of one Blender process: address space, largest file written, processes and threads of its uid.
RENDER_SANDBOX_MEMORY_MB = env_int("RENDER_SANDBOX_MEMORY_MB", 8192)
RENDER_SANDBOX_FILE_MB = env_int("RENDER_SANDBOX_FILE_MB", 4096)
RENDER_SANDBOX_PROCESSES = env_int("RENDER_SANDBOX_PROCESSES", 1024)
# A worker holds a chunk by a lease in DynamoDB and keeps its SQS message invisible while it works, so a
# live render is never run twice and a SIGKILLed worker's chunk is taken over within a visibility timeout
# (15 s: the takeover issue 12 asks for is under 20 s). Every progress write renews the lease; a background
# thread speaks only after RENDER_HEARTBEAT_SECONDS without one (recording the frames waiting, or renewing
# the lease alone). The worker's main process extends each message it holds shortly before its visibility
# ends (jobs/worker/transport.py: VisibilityKeeper). The lease must lapse no later than the
# message reappears; a redelivery that still finds a live lease waits for it instead of dropping the work.
# The heartbeat leaves a third of the lease for a slow write and its retries (lease 12 s, heartbeat 8 s).
RENDER_LEASE_SECONDS = env_int("RENDER_LEASE_SECONDS", timing.LEASE_SECONDS)
RENDER_VISIBILITY_TIMEOUT = env_int("RENDER_VISIBILITY_TIMEOUT", timing.VISIBILITY_TIMEOUT_SECONDS)
RENDER_HEARTBEAT_SECONDS = env_float("RENDER_HEARTBEAT_SECONDS", max(0.5, min(8.0, RENDER_LEASE_SECONDS * 2 / 3)))
if not 0 < RENDER_HEARTBEAT_SECONDS < RENDER_LEASE_SECONDS:
    raise ImproperlyConfigured("RENDER_HEARTBEAT_SECONDS must be above 0 and below RENDER_LEASE_SECONDS")
# A rendering chunk records the frames it has stored in S3 in one write once the last write is this old (and
# at its last frame); a chunk of a multi-chunk job publishes its progress on the job item in the same
# transaction. Progress in the API lags by at most this plus a frame; a cancel reaches a running chunk at its
# next write; a worker that dies loses at most this much rendering (its next holder renders those frames
# again, to the same keys). By default the heartbeat's period: one write per heartbeat, whoever makes it.
RENDER_PROGRESS_SECONDS = env_float("RENDER_PROGRESS_SECONDS", RENDER_HEARTBEAT_SECONDS)
# Each worker process writes a heartbeat item this often (live workers for `farm_status` and /api/farm);
# it expires after three beats, so a killed worker drops out of the listing within that.
RENDER_WORKER_HEARTBEAT_SECONDS = env_float("RENDER_WORKER_HEARTBEAT_SECONDS", 10.0)
# A render worker's pool process writes the usage of the jobs it ended (frames given back, worker-seconds
# charged) at most this often, one write per owner (jobs/repository/usage.py); 0: at each job's end.
RENDER_USAGE_FLUSH_SECONDS = env_float("RENDER_USAGE_FLUSH_SECONDS", 5.0)
# An API process reserves an owner's frames ahead, in blocks of up to this many (and 1% of the limit), while the
# owner submits steadily, so a stream of submits writes the usage item once a block (jobs/repository/usage.py
# FrameAllowance); what it has not used goes back once the owner has not submitted to it for
# RENDER_USAGE_HOLD_SECONDS. 0: each submit reserves its own frames.
RENDER_USAGE_BLOCK_FRAMES = env_int("RENDER_USAGE_BLOCK_FRAMES", 100)
RENDER_USAGE_HOLD_SECONDS = env_float("RENDER_USAGE_HOLD_SECONDS", 2.0)
# A submit's budget check reads the owner's budget and spend; an owner found with no budget is not read again by
# that API process for this long (a budget set elsewhere bites within it). 0: read on every submit.
RENDER_BUDGET_RECHECK_SECONDS = env_float("RENDER_BUDGET_RECHECK_SECONDS", 2.0)
# A status-filtered job listing (GET /api/jobs?status=) reads at most this many of the owner's jobs a request;
# a page they did not fill is short, with a cursor to go on (jobs/repository/indexes.py).
RENDER_LISTING_FILTER_READS = env_int("RENDER_LISTING_FILTER_READS", 1000)
if RENDER_LISTING_FILTER_READS < 1:
    raise ImproperlyConfigured("RENDER_LISTING_FILTER_READS must be 1 or more")
# After SIGTERM a running chunk keeps rendering only if its remaining frames fit in this many seconds;
# otherwise it is released at the next frame boundary for another worker (ECS then stops the task).
RENDER_SHUTDOWN_GRACE_SECONDS = env_int("RENDER_SHUTDOWN_GRACE_SECONDS", 30)
if problem := timing.lease_problem(RENDER_LEASE_SECONDS, RENDER_VISIBILITY_TIMEOUT):
    raise ImproperlyConfigured(f"RENDER_LEASE_SECONDS and RENDER_VISIBILITY_TIMEOUT: {problem}")
RENDER_MAX_ATTEMPTS = env_int("RENDER_MAX_ATTEMPTS", 3)
# Attempts of a chunk whose failure was the farm's own (its storage or queue unavailable, not the scene): with
# the doubling backoff, 8 retry for about ten minutes before the job fails.
RENDER_MAX_OUTAGE_ATTEMPTS = env_int("RENDER_MAX_OUTAGE_ATTEMPTS", 8)
# Fairness: frames of an owner's jobs waiting or rendering (QUEUED, PROCESSING, CANCELLING); 0 for no limit.
RENDER_MAX_ACTIVE_FRAMES_PER_OWNER = env_int("RENDER_MAX_ACTIVE_FRAMES_PER_OWNER", 100_000)
# What a worker-second costs (quotes, spend, budgets): the render worker's size (the CDK stack sets both from
# its task's cpu and memory) times Fargate's prices, dollars per vCPU-hour and per GB-hour.
RENDER_WORKER_VCPU = env_float("RENDER_WORKER_VCPU", pricing.WORKER_CPU_UNITS / 1024)
RENDER_WORKER_MEMORY_GB = env_float("RENDER_WORKER_MEMORY_GB", pricing.WORKER_MEMORY_MIB / 1024)
RENDER_PRICE_VCPU_HOUR = env_float("RENDER_PRICE_VCPU_HOUR", pricing.PRICE_VCPU_HOUR)
RENDER_PRICE_GB_HOUR = env_float("RENDER_PRICE_GB_HOUR", pricing.PRICE_GB_HOUR)
RENDER_MAX_CRASHES = env_int("RENDER_MAX_CRASHES", 5)  # takeovers from dead holders before a chunk is poison
RENDER_RETRY_BACKOFF_SECONDS = env_int("RENDER_RETRY_BACKOFF_SECONDS", 5)
RENDER_RESULT_URL_EXPIRY = env_int("RENDER_RESULT_URL_EXPIRY", 3600)
# Webhooks (docs/using/webhooks.md): tries of one delivery, the first retry's delay (doubling, at most 900 s),
# the sender's timeouts, and whether callback URLs may reach non-public addresses (the local stack, tests).
RENDER_WEBHOOK_MAX_TRIES = env_int("RENDER_WEBHOOK_MAX_TRIES", 6)
RENDER_WEBHOOK_BACKOFF_SECONDS = env_int("RENDER_WEBHOOK_BACKOFF_SECONDS", 15)
RENDER_WEBHOOK_CONNECT_TIMEOUT = env_float("RENDER_WEBHOOK_CONNECT_TIMEOUT", 3.0)
RENDER_WEBHOOK_READ_TIMEOUT = env_float("RENDER_WEBHOOK_READ_TIMEOUT", 5.0)
RENDER_WEBHOOK_ALLOW_PRIVATE = env_bool("RENDER_WEBHOOK_ALLOW_PRIVATE", False)
RENDER_WEBHOOK_HTTPS_ONLY = RENDER_ENV == "production"
# The wall-clock limit of one POST (httpx's timeouts are per socket operation: a receiver that drips its answer
# would never trip them); the sender closes the connection when it is reached.
RENDER_WEBHOOK_TOTAL_TIMEOUT = env_float("RENDER_WEBHOOK_TOTAL_TIMEOUT", 10.0)
if not RENDER_WEBHOOK_TOTAL_TIMEOUT >= max(RENDER_WEBHOOK_CONNECT_TIMEOUT, RENDER_WEBHOOK_READ_TIMEOUT) > 0:
    raise ImproperlyConfigured("RENDER_WEBHOOK_TOTAL_TIMEOUT must be at least the connect and read timeouts")
# The timings of one try nest, each bounding the one before: the POST is cut at the total timeout; the task's
# soft limit leaves the DynamoDB reads and writes around it 15 s more (SoftTimeLimitExceeded is raised in the
# task, which then frees its owner slot); the hard limit kills the pool process 5 s later; the delivery's lease
# and the owner slot's outlast that by 5 s, so a live try never outlives its lease and a killed one frees both
# within it. The soft limit is the task's own (below the hard one): a retry is refused by Celery otherwise.
RENDER_WEBHOOK_SOFT_TIME_LIMIT = math.ceil(RENDER_WEBHOOK_TOTAL_TIMEOUT) + 15
RENDER_WEBHOOK_TIME_LIMIT = RENDER_WEBHOOK_SOFT_TIME_LIMIT + 5
RENDER_WEBHOOK_LEASE_SECONDS = RENDER_WEBHOOK_TIME_LIMIT + 5
# Deliveries of one owner POSTing at the same time, across every webhook worker (0: no limit). A delivery over
# it comes back after RENDER_WEBHOOK_BUSY_SECONDS, without counting as a try: one owner's slow receiver cannot
# hold the whole webhook pool.
RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER = env_int("RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER", 2)
if RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER < 0:
    raise ImproperlyConfigured("RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER must be 0 (no limit) or more")
RENDER_WEBHOOK_BUSY_SECONDS = env_int("RENDER_WEBHOOK_BUSY_SECONDS", math.ceil(RENDER_WEBHOOK_TOTAL_TIMEOUT / 2))
if not 1 <= RENDER_WEBHOOK_BUSY_SECONDS <= 900:
    raise ImproperlyConfigured("RENDER_WEBHOOK_BUSY_SECONDS must be between 1 and 900 (SQS's longest delay)")
# Pool processes of a webhook worker (`bin/entrypoint webhooks`): each POSTs one delivery at a time.
RENDER_WEBHOOK_CONCURRENCY = env_int("RENDER_WEBHOOK_CONCURRENCY", 4)
# The API's public base URL, for the `url` of a job in webhook bodies (workers have no request to build it from).
RENDER_PUBLIC_URL = env("RENDER_PUBLIC_URL", "").rstrip("/")
RENDER_RESULT_RETENTION_DAYS = env_int("RENDER_RESULT_RETENTION_DAYS", 30)
# An asset is kept this long after its declaration or the last job submitted or retried with it.
RENDER_ASSET_RETENTION_DAYS = env_int("RENDER_ASSET_RETENTION_DAYS", RENDER_RESULT_RETENTION_DAYS)
RENDER_API_KEY_CACHE_SECONDS = env_int("RENDER_API_KEY_CACHE_SECONDS", 30)
# Requests per API key per minute, counted in DynamoDB across every API process (see jobs/api/throttling.py).
RENDER_THROTTLE_PER_MINUTE = env_int("RENDER_THROTTLE_PER_MINUTE", 1200)
RENDER_THROTTLE_BATCH = env_int("RENDER_THROTTLE_BATCH", 20)
# 401 answers and failed browser logins per client address per minute; past it, 429 without a key lookup.
RENDER_AUTH_FAILURES_PER_MINUTE = env_int("RENDER_AUTH_FAILURES_PER_MINUTE", 30)
# Proxies in front of the API that append the client's address to X-Forwarded-For (production: the ALB).
# 0 means the TCP peer (REMOTE_ADDR) is the client and X-Forwarded-For is ignored.
RENDER_TRUSTED_PROXIES = env_int("RENDER_TRUSTED_PROXIES", 1 if RENDER_ENV == "production" else 0)
if RENDER_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("RENDER_TRUSTED_PROXIES must be 0 or more")
RENDER_SQS_WAIT_SECONDS = env_int("RENDER_SQS_WAIT_SECONDS", 20)
# /readyz is public: its answer is kept this long per process, so probes cost at most 3 AWS calls per period.
RENDER_READYZ_CACHE_SECONDS = env_int("RENDER_READYZ_CACHE_SECONDS", 5)
# QUEUED work older than this with no progress gets its message sent again by the sweeper.
RENDER_SWEEP_GRACE_SECONDS = env_int("RENDER_SWEEP_GRACE_SECONDS", 300)
# Origins besides the result bucket's that console pages may load images from and upload to (CSP), e.g. a
# scene-upload bucket on another host: space-separated, like "https://assets.s3.amazonaws.com".
RENDER_CONSOLE_EXTRA_ORIGINS = env("RENDER_CONSOLE_EXTRA_ORIGINS", "").split()

PRIORITIES = [str(p) for p in Priority]  # high, normal, low: the order the queues are polled in
RENDER_QUEUE_NAMES = {p: f"{RENDER_QUEUE_PREFIX}render-{p}" for p in PRIORITIES}
RENDER_DLQ_NAME = f"{RENDER_QUEUE_PREFIX}render-dlq"
RENDER_DLQ_URL = env("RENDER_DLQ_URL", "")
RENDER_QUEUE_URLS = {
    p: env(f"RENDER_QUEUE_URL_{p.upper()}", "") for p in PRIORITIES
}  # in AWS (CDK sets it); locally the URL is looked up by name
# Webhook deliveries have a queue (and a dead-letter queue) of their own, consumed only by webhook workers:
# a slow receiver never holds a render worker, and a dead delivery message never reaches the render DLQ.
RENDER_WEBHOOK_QUEUE_NAME = f"{RENDER_QUEUE_PREFIX}webhooks"
RENDER_WEBHOOK_DLQ_NAME = f"{RENDER_QUEUE_PREFIX}webhooks-dlq"
RENDER_WEBHOOK_QUEUE_URL = env("RENDER_QUEUE_URL_WEBHOOKS", "")
RENDER_WEBHOOK_DLQ_URL = env("RENDER_WEBHOOK_DLQ_URL", "")

# --- Celery (SQS broker; task state lives in DynamoDB, so no result backend) ----------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "sqs://")
_predefined = {
    RENDER_QUEUE_NAMES[p]: {"url": os.environ[f"RENDER_QUEUE_URL_{p.upper()}"]}
    for p in PRIORITIES
    if os.environ.get(f"RENDER_QUEUE_URL_{p.upper()}")
}
if RENDER_WEBHOOK_QUEUE_URL:
    _predefined[RENDER_WEBHOOK_QUEUE_NAME] = {"url": RENDER_WEBHOOK_QUEUE_URL}
# kombu's SQS transport, polling the render queues in priority order (see jobs/worker/transport.py).
CELERY_BROKER_TRANSPORT = env("CELERY_BROKER_TRANSPORT", "jobs.worker.transport:Transport")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "queue_order": [RENDER_QUEUE_NAMES[p] for p in PRIORITIES],
    "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    "visibility_timeout": RENDER_VISIBILITY_TIMEOUT,
    "wait_time_seconds": RENDER_SQS_WAIT_SECONDS,
    "polling_interval": 0,
}
if _predefined:
    # In AWS the queues exist (CDK made them): workers never list or create queues.
    CELERY_BROKER_TRANSPORT_OPTIONS["predefined_queues"] = _predefined
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = RENDER_QUEUE_NAMES["normal"]
# A worker started without -Q consumes these: the three render queues, or for a webhook worker
# (RENDER_ROLE=webhooks, `bin/entrypoint webhooks`) the webhook queue alone. A render worker never takes a
# delivery; messages sent to the webhook queue from any process are routed by its name (jobs/adapters/celery_queue.py).
if RENDER_ROLE == "webhooks":
    CELERY_TASK_QUEUES = [Queue(RENDER_WEBHOOK_QUEUE_NAME, routing_key=RENDER_WEBHOOK_QUEUE_NAME)]
else:
    CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in RENDER_QUEUE_NAMES.values()]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# An error no service handled leaves its message for SQS to deliver again (and to dead-letter in the end).
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # SQS has no broadcast; avoids pidbox queues
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_CONCURRENCY = (
    RENDER_WEBHOOK_CONCURRENCY if RENDER_ROLE == "webhooks" else env_int("RENDER_WORKER_CONCURRENCY", 1)
)
# A chunk that renders longer than this is stopped (the lease keeps renewing while it runs).
CELERY_TASK_TIME_LIMIT = env_int("RENDER_TASK_TIME_LIMIT", 6 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = max(1, CELERY_TASK_TIME_LIMIT - 30)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CSRF_FAILURE_VIEW = "jobs.api.errors.forbidden"
