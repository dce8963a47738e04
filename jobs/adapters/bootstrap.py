"""Create the table, queues and bucket where missing (idempotent); used by `bootstrap_aws` and devstack."""

from __future__ import annotations

import json
import logging

from botocore.exceptions import ClientError
from django.conf import settings

from jobs.adapters import aws

log = logging.getLogger(__name__)
MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


def ensure_table(client, name: str) -> None:
    try:
        client.describe_table(TableName=name)
        return
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
    attrs = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk"]
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                    {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in ("gsi1", "gsi2", "gsi3")
        ],
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    log.info("created table %s", name)


def ensure_queues(client, names: list[str], dlq_name: str, visibility_timeout: int) -> dict[str, str]:
    """The render queues, each redriving to the DLQ after MAX_RECEIVE_COUNT receives. Returns name -> URL."""
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


def bootstrap_all() -> dict[str, str]:
    """Everything the configured settings name; returns a summary for printing."""
    ensure_table(aws.client("dynamodb"), settings.RENDER_TABLE_NAME)
    urls = ensure_queues(
        aws.client("sqs"),
        list(settings.RENDER_QUEUE_NAMES.values()),
        settings.RENDER_DLQ_NAME,
        settings.RENDER_VISIBILITY_TIMEOUT,
    )
    ensure_bucket(
        aws.client("s3"),
        settings.RENDER_BUCKET_NAME,
        result_days=settings.RENDER_RESULT_RETENTION_DAYS,
        asset_days=settings.RENDER_ASSET_RETENTION_DAYS,
    )
    return {"table": settings.RENDER_TABLE_NAME, "bucket": settings.RENDER_BUCKET_NAME, **urls}
