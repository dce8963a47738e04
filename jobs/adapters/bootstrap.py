"""Create the table, queues and bucket where missing (idempotent); used by `bootstrap_aws` and devstack."""

from __future__ import annotations

import json
import logging

from botocore.exceptions import ClientError

from jobs.adapters import aws
from jobs.domain.timing import MAX_RECEIVE_COUNT

log = logging.getLogger(__name__)
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


def ensure_queues(client, names: list[str], dlq_name: str, visibility_timeout: int) -> dict[str, str]:
    """Queues each redriving to `dlq_name` after MAX_RECEIVE_COUNT receives (the render queues to the render DLQ,
    the webhook queue to its own). Returns name -> URL, the DLQ's included."""
    dlq_url = client.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": "20",
        "MessageRetentionPeriod": str(4 * 24 * 3600),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
    }
    urls = {dlq_name: dlq_url}
    for name in names:
        try:
            urls[name] = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as exc:
            if aws.error_code(exc) not in {"QueueAlreadyExists", "QueueNameExists"}:
                raise
            # Same name, other attributes (e.g. a new visibility timeout): bring the queue in line.
            urls[name] = client.get_queue_url(QueueName=name)["QueueUrl"]
            client.set_queue_attributes(QueueUrl=urls[name], Attributes=attributes)
    return urls


def lifecycle_rules(*, result_days: int, asset_days: int) -> list[dict]:
    """Results (`jobs/`) and scene files (`assets/`) expire like their DynamoDB items (docs/ARCHITECTURE.md)."""
    return [
        {"ID": "results", "Filter": {"Prefix": "jobs/"}, "Status": "Enabled", "Expiration": {"Days": result_days}},
        {
            "ID": "assets",
            "Filter": {"Prefix": "assets/"},
            "Status": "Enabled",
            "Expiration": {"Days": asset_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def ensure_bucket(client, name: str, *, result_days: int = 30, asset_days: int = 30) -> None:
    try:
        client.head_bucket(Bucket=name)
    except ClientError as exc:
        if aws.error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        _create_bucket(client, name)
    client.put_bucket_lifecycle_configuration(
        Bucket=name, LifecycleConfiguration={"Rules": lifecycle_rules(result_days=result_days, asset_days=asset_days)}
    )


def _create_bucket(client, name: str) -> None:
    region = client.meta.region_name
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=name, **kwargs)
    client.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    log.info("created bucket %s", name)
