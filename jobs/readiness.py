"""Readiness: can this process reach the table, the render queues and the bucket it is configured for?"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from . import aws


def _dynamodb() -> None:
    aws.client("dynamodb").describe_table(TableName=settings.RENDER_TABLE_NAME)


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
