"""Readiness: can this process reach the table, the render queues and the bucket it is configured for?

/readyz is public, so its cost is bounded: the answer (ready or not) is kept for
RENDER_READYZ_CACHE_SECONDS, and one refresh at a time makes at most three data-plane calls (a GetItem
of a key that never exists, GetQueueAttributes or GetQueueUrl, HeadBucket). No control-plane call such
as DescribeTable: those have low account-wide rate limits that a probe must not spend.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from jobs.adapters import aws

PROBE_KEY = {"pk": {"S": "READYZ"}, "sk": {"S": "READYZ"}}  # never written: the GetItem finds nothing


def _dynamodb() -> None:
    aws.client("dynamodb").get_item(TableName=settings.RENDER_TABLE_NAME, Key=PROBE_KEY, ProjectionExpression="pk")


def _sqs() -> None:
    predefined = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("predefined_queues", {})
    queue = settings.RENDER_QUEUE_NAMES["normal"]
    if queue in predefined:  # in AWS: the URL is known, and the role may not list or look up queues
        aws.client("sqs").get_queue_attributes(QueueUrl=predefined[queue]["url"], AttributeNames=["QueueArn"])
    else:
        aws.client("sqs").get_queue_url(QueueName=queue)


def _s3() -> None:
    aws.client("s3").head_bucket(Bucket=settings.RENDER_BUCKET_NAME)


CHECKS = {"dynamodb": _dynamodb, "sqs": _sqs, "s3": _s3}


def check_all() -> dict[str, str]:
    """Run the checks in parallel; each is "ok" or a short reason."""

    def run(check) -> str:
        try:
            check()
            return "ok"
        except ClientError as exc:
            return f"error: {aws.error_code(exc) or 'ClientError'}"
        except BotoCoreError as exc:
            return f"unreachable: {type(exc).__name__}"

    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        results = pool.map(run, CHECKS.values())
    return dict(zip(CHECKS, results, strict=True))


class _Cached:
    """The last answer and when it was made; a refresh is made by one thread while the others wait for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._answer: dict[str, str] | None = None
        self._at = 0.0

    def get(self, max_age: float) -> dict[str, str]:
        with self._lock:
            if self._answer is None or time.monotonic() - self._at >= max_age:
                self._answer = check_all()
                self._at = time.monotonic()
            return dict(self._answer)

    def clear(self) -> None:
        with self._lock:
            self._answer = None


_cached = _Cached()


def cached_check_all() -> dict[str, str]:
    """check_all(), at most once per RENDER_READYZ_CACHE_SECONDS per process (0: every time)."""
    return _cached.get(settings.RENDER_READYZ_CACHE_SECONDS)


def clear_cache() -> None:
    _cached.clear()
