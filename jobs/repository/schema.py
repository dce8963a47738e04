"""The table itself: its keys, indexes (with INDEX_PROJECTIONS) and TTL, created where missing (locally and in
tests; in AWS the CDK app's data construct defines the same table)."""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from jobs.adapters import aws
from jobs.repository.items import INDEX_PROJECTIONS

log = logging.getLogger(__name__)


def projection(attributes: tuple[str, ...] | None) -> dict:
    if attributes is None:
        return {"ProjectionType": "KEYS_ONLY"}
    return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(attributes)}


def ensure_table(client, name: str) -> None:
    try:
        client.describe_table(TableName=name)
        return
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
    attrs = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
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
                "Projection": projection(INDEX_PROJECTIONS[index]),
            }
            for index in INDEX_PROJECTIONS
        ],
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    log.info("created table %s", name)
