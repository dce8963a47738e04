"""Integration fixtures: real boto3 clients against the session's emulator."""

import uuid

import pytest

from jobs.adapters import aws
from jobs.adapters.bootstrap import ensure_bucket
from jobs.adapters.s3 import S3ResultStore
from jobs.repository import DynamoApiKeyRepository, DynamoJobRepository
from jobs.repository.schema import ensure_table


@pytest.fixture
def table(emulator):
    name = f"t-{uuid.uuid4().hex[:10]}"
    ensure_table(aws.client("dynamodb"), name)
    return name


@pytest.fixture
def dynamo_repo(table):
    return DynamoJobRepository(client=aws.client("dynamodb"), table_name=table)


@pytest.fixture
def key_repo(table):
    return DynamoApiKeyRepository(client=aws.client("dynamodb"), table_name=table)


@pytest.fixture
def store(emulator):
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    ensure_bucket(aws.client("s3"), bucket)
    return S3ResultStore(client=aws.client("s3"), bucket=bucket, url_expiry=300)
