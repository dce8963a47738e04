"""Builds the process-wide adapters (repository, store, queue, renderer) from settings, lazily."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from jobs.adapters import aws, bootstrap
from jobs.adapters.assets import S3AssetStore
from jobs.adapters.s3 import S3ResultStore
from jobs.ports import Renderer
from jobs.renderers import get_renderer
from jobs.repository import DynamoApiKeyRepository, DynamoJobRepository, schema
from jobs.repository.assets import DynamoAssetRepository
from jobs.services.assets import SceneFiles

# Imported here, at import time: in a Celery worker that is in the main process, before the pool forks, so its
# shutdown event is the one the main process sets on SIGTERM (a pool process importing it later gets its own).
from jobs.worker import shutdown


@functools.cache
def job_repository() -> DynamoJobRepository:
    return DynamoJobRepository(
        client=aws.client("dynamodb"),
        table_name=settings.RENDER_TABLE_NAME,
        usage_block_frames=settings.RENDER_USAGE_BLOCK_FRAMES,
        usage_hold_seconds=settings.RENDER_USAGE_HOLD_SECONDS,
        filter_reads=settings.RENDER_LISTING_FILTER_READS,
    )


@functools.cache
def api_key_repository() -> DynamoApiKeyRepository:
    return DynamoApiKeyRepository(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


@functools.cache
def throttle_counters():
    from jobs.repository.counters import DynamoCounters

    return DynamoCounters(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


@functools.cache
def result_store() -> S3ResultStore:
    return S3ResultStore(
        client=aws.client("s3"), bucket=settings.RENDER_BUCKET_NAME, url_expiry=settings.RENDER_RESULT_URL_EXPIRY
    )


@functools.cache
def dead_letter_queue():
    """The render DLQ: poison render and fan-out messages."""
    from jobs.adapters.dead_letter_queue import DeadLetterQueue

    url = settings.RENDER_DLQ_URL or aws.client("sqs").get_queue_url(QueueName=settings.RENDER_DLQ_NAME)["QueueUrl"]
    return DeadLetterQueue(client=aws.client("sqs"), url=url)


@functools.cache
def webhook_dead_letter_queue():
    """The webhook queue's own DLQ: delivery messages no webhook worker could finish (`dlq ... --queue webhooks`)."""
    from jobs.adapters.dead_letter_queue import DeadLetterQueue

    name = settings.RENDER_WEBHOOK_DLQ_NAME
    url = settings.RENDER_WEBHOOK_DLQ_URL or aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
    return DeadLetterQueue(client=aws.client("sqs"), url=url)


@functools.cache
def renderer() -> Renderer:
    return get_renderer(settings.RENDER_RENDERER, simulated_seconds=settings.RENDER_SIMULATED_SECONDS)


def _confined(name: str, program: str):
    """A sandbox for `program` (its sidecar name `name`) as RENDER_SANDBOX says (jobs/sandbox/)."""
    if settings.RENDER_SANDBOX == "sidecar":
        from jobs.sandbox.client import SidecarSandbox

        return SidecarSandbox(socket_path=settings.RENDER_SANDBOX_SOCKET, program=name)
    if settings.RENDER_SANDBOX == "none":
        from jobs.sandbox.unconfined import Unconfined

        return Unconfined(program=program)
    from jobs.sandbox.bubblewrap import BubblewrapSandbox

    return BubblewrapSandbox(program=program, uid=settings.RENDER_SANDBOX_UID)


@functools.cache
def sandbox():
    """How Blender is confined on this worker (RENDER_SANDBOX; jobs/sandbox/)."""
    return _confined("blender", settings.RENDER_BLENDER_BINARY)


@functools.cache
def ffmpeg_sandbox():
    """How ffmpeg (encode steps) is confined on this worker: the same sandbox as Blender's."""
    return _confined("ffmpeg", settings.RENDER_FFMPEG_BINARY)


@functools.cache
def scene_cache():
    """The worker's scene files and the scratch directories of its sandboxed runs (RENDER_BLENDER_CACHE_DIR)."""
    from jobs.renderers.scene_cache import SceneCache

    return SceneCache(
        root=Path(settings.RENDER_BLENDER_CACHE_DIR),
        max_bytes=settings.RENDER_BLENDER_CACHE_BYTES,
        download=asset_store().download,
    )


def _sandbox_limits():
    from jobs.sandbox import Limits

    return Limits(
        memory_bytes=settings.RENDER_SANDBOX_MEMORY_MB * 1024**2,
        file_bytes=settings.RENDER_SANDBOX_FILE_MB * 1024**2,
        processes=settings.RENDER_SANDBOX_PROCESSES,
    )


@functools.cache
def video_encoder():
    """ffmpeg in the render sandbox, scratch directories beside the chunks' (where the sidecar reaches them)."""
    from jobs.renderers.ffmpeg import FfmpegEncoder

    return FfmpegEncoder(
        sandbox=ffmpeg_sandbox(),
        scratch=scene_cache().scratch,
        timeout=settings.RENDER_ENCODE_TIMEOUT,
        limits=_sandbox_limits(),
        max_input_bytes=settings.RENDER_ENCODE_MAX_INPUT_MB * 1024**2,
    )


@functools.cache
def blender_renderer() -> Renderer:
    from jobs.renderers.blender import BlenderRenderer, SandboxLimits

    cache = scene_cache()
    limits = SandboxLimits(
        memory_bytes=settings.RENDER_SANDBOX_MEMORY_MB * 1024**2,
        file_bytes=settings.RENDER_SANDBOX_FILE_MB * 1024**2,
        processes=settings.RENDER_SANDBOX_PROCESSES,
    )
    return BlenderRenderer(
        sandbox=sandbox(),
        cache=cache,
        frame_timeout=settings.RENDER_BLENDER_FRAME_TIMEOUT,
        limits=limits,
        persistent=settings.RENDER_BLENDER_PERSISTENT,
        idle_seconds=settings.RENDER_BLENDER_IDLE_SECONDS,
        probe_seconds=settings.RENDER_BLENDER_PROBE_SECONDS,
    )


def offered_renderers() -> dict[str, Callable[[], Renderer]]:
    """The renderers besides `simulated` this worker offers (RENDER_RENDERERS), built on first use."""
    known = {"blender": blender_renderer}
    unknown = sorted(set(settings.RENDER_RENDERERS) - set(known))
    if unknown:
        raise ValueError(f"RENDER_RENDERERS names unknown renderers: {', '.join(unknown)}")
    return {name: known[name] for name in settings.RENDER_RENDERERS}


@functools.cache
def asset_repository() -> DynamoAssetRepository:
    return DynamoAssetRepository(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


@functools.cache
def asset_store() -> S3AssetStore:
    return S3AssetStore(
        client=aws.client("s3"), bucket=settings.RENDER_BUCKET_NAME, upload_expiry=settings.RENDER_ASSET_UPLOAD_EXPIRY
    )


def asset_retention() -> timedelta:
    return timedelta(days=settings.RENDER_ASSET_RETENTION_DAYS)


def scene_files() -> SceneFiles:
    return SceneFiles(repo=asset_repository(), store=asset_store(), queue=task_queue(), retention=asset_retention())


@functools.cache
def task_queue():
    from jobs.adapters.celery_queue import CeleryTaskQueue

    return CeleryTaskQueue()


@functools.cache
def metrics():
    from jobs.adapters.metrics import EmbeddedMetrics

    return EmbeddedMetrics(namespace=settings.RENDER_METRICS_NAMESPACE)


@functools.cache
def render_metrics():
    """The render loop's metrics in a worker: embedded metrics, and the process's activity for its heartbeat."""
    from jobs.worker.activity import ActivityMetrics

    return ActivityMetrics(metrics())


@functools.cache
def farm_registry():
    from jobs.repository.farm import DynamoFarm

    return DynamoFarm(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


@functools.cache
def budgets():
    from jobs.repository.budgets import DynamoBudgets

    return DynamoBudgets(
        client=aws.client("dynamodb"),
        table_name=settings.RENDER_TABLE_NAME,
        unbudgeted_seconds=settings.RENDER_BUDGET_RECHECK_SECONDS,
    )


def prices():
    """What a worker-second costs: the worker's size times Fargate's prices (settings)."""
    from jobs.domain import Prices

    return Prices(
        vcpu=settings.RENDER_WORKER_VCPU,
        memory_gb=settings.RENDER_WORKER_MEMORY_GB,
        vcpu_hour=settings.RENDER_PRICE_VCPU_HOUR,
        gb_hour=settings.RENDER_PRICE_GB_HOUR,
    )


def spending():
    """What submits and `/api/usage` price an owner's month with: the budgets and the prices."""
    from jobs.services.budgets import Spending

    return Spending(budgets=budgets(), prices=prices())


@functools.cache
def queue_stats():
    from jobs.adapters.queue_stats import SqsQueueStats

    return SqsQueueStats(
        sqs=aws.client("sqs"),
        cloudwatch=aws.client("cloudwatch"),
        queues=dict(settings.RENDER_QUEUE_NAMES),
        urls={p: url for p, url in settings.RENDER_QUEUE_URLS.items() if url},
        dlq_name=settings.RENDER_DLQ_NAME,
        dlq_url=settings.RENDER_DLQ_URL,
    )


@functools.cache
def webhook_repository():
    from jobs.repository.webhooks import DynamoWebhookRepository

    return DynamoWebhookRepository(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


@functools.cache
def delivery_slots():
    from jobs.repository.webhook_slots import DynamoDeliverySlots

    return DynamoDeliverySlots(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


def webhook_policy():
    from jobs.services.webhooks import WebhookPolicy

    return WebhookPolicy(
        max_tries=settings.RENDER_WEBHOOK_MAX_TRIES,
        backoff_seconds=settings.RENDER_WEBHOOK_BACKOFF_SECONDS,
        # Outlasts the task's hard time limit (settings: the nested timings of one try).
        lease_seconds=settings.RENDER_WEBHOOK_LEASE_SECONDS,
        grace_seconds=settings.RENDER_SWEEP_GRACE_SECONDS,
        max_in_flight_per_owner=settings.RENDER_WEBHOOK_MAX_IN_FLIGHT_PER_OWNER,
        busy_seconds=settings.RENDER_WEBHOOK_BUSY_SECONDS,
    )


@functools.cache
def job_notifier():
    """What services tell when a job ends: counted in the metrics (jobs by outcome, duration), then its
    webhook delivery opened and its message sent."""
    from jobs.domain import utcnow
    from jobs.services.outcomes import CountingNotifier
    from jobs.services.webhooks import WebhookNotifier

    hooks = WebhookNotifier(
        hooks=webhook_repository(), queue=task_queue(), clock=utcnow, policy=webhook_policy(), retention=retention()
    )
    return CountingNotifier(hooks, metrics=metrics(), clock=utcnow)


@functools.cache
def webhook_sender():
    from jobs.adapters.webhook_sender import HttpWebhookSender

    return HttpWebhookSender(
        https_only=settings.RENDER_WEBHOOK_HTTPS_ONLY,
        allow_private=settings.RENDER_WEBHOOK_ALLOW_PRIVATE,
        connect_timeout=settings.RENDER_WEBHOOK_CONNECT_TIMEOUT,
        read_timeout=settings.RENDER_WEBHOOK_READ_TIMEOUT,
        total_timeout=settings.RENDER_WEBHOOK_TOTAL_TIMEOUT,
    )


def retention() -> timedelta:
    return timedelta(days=settings.RENDER_RESULT_RETENTION_DAYS)


# --- the bundles each role's services take, built once per process -----------------------------------


@functools.cache
def job_control():
    """Every role's: the jobs' store, their queue, who hears of an end (metrics, webhooks), the retention."""
    from jobs.ports import JobControl

    return JobControl(repo=job_repository(), queue=task_queue(), notifier=job_notifier(), retention=retention())


@functools.cache
def render_context():
    """A worker process's: what its renders run with (its identity, limits, renderers, metrics, shutdown)."""
    from jobs.domain import utcnow
    from jobs.ports import RenderContext
    from jobs.worker.identity import worker_id

    return RenderContext(
        jobs=job_control(),
        store=result_store(),
        renderer=renderer(),
        renderers=offered_renderers(),
        clock=utcnow,
        name=worker_id(),
        lease_seconds=settings.RENDER_LEASE_SECONDS,
        max_attempts=settings.RENDER_MAX_ATTEMPTS,
        max_crashes=settings.RENDER_MAX_CRASHES,
        max_outage_attempts=settings.RENDER_MAX_OUTAGE_ATTEMPTS,
        heartbeat_seconds=settings.RENDER_HEARTBEAT_SECONDS,
        progress_seconds=settings.RENDER_PROGRESS_SECONDS,
        grace_left=lambda: shutdown.grace_left(settings.RENDER_SHUTDOWN_GRACE_SECONDS),
        metrics=render_metrics(),
        encoder=video_encoder,
    )


def reset() -> None:
    """Drop every cached adapter and client (tests that repoint AWS call this)."""
    for factory in (
        job_repository,
        api_key_repository,
        throttle_counters,
        result_store,
        renderer,
        sandbox,
        ffmpeg_sandbox,
        scene_cache,
        video_encoder,
        blender_renderer,
        asset_repository,
        asset_store,
        task_queue,
        dead_letter_queue,
        webhook_dead_letter_queue,
        delivery_slots,
        metrics,
        render_metrics,
        farm_registry,
        budgets,
        queue_stats,
        webhook_repository,
        job_notifier,
        webhook_sender,
        job_control,
        render_context,
    ):
        factory.cache_clear()
    aws.reset_clients()


def bootstrap_all() -> dict[str, str]:
    """Create what the configured settings name, where missing (table, queues, bucket); a summary to print."""
    schema.ensure_table(aws.client("dynamodb"), settings.RENDER_TABLE_NAME)
    urls = bootstrap.ensure_queues(
        aws.client("sqs"),
        list(settings.RENDER_QUEUE_NAMES.values()),
        settings.RENDER_DLQ_NAME,
        settings.RENDER_VISIBILITY_TIMEOUT,
    )
    urls |= bootstrap.ensure_queues(
        aws.client("sqs"),
        [settings.RENDER_WEBHOOK_QUEUE_NAME],
        settings.RENDER_WEBHOOK_DLQ_NAME,
        settings.RENDER_VISIBILITY_TIMEOUT,
    )
    bootstrap.ensure_bucket(
        aws.client("s3"),
        settings.RENDER_BUCKET_NAME,
        result_days=settings.RENDER_RESULT_RETENTION_DAYS,
        asset_days=settings.RENDER_ASSET_RETENTION_DAYS,
    )
    return {"table": settings.RENDER_TABLE_NAME, "bucket": settings.RENDER_BUCKET_NAME, **urls}
