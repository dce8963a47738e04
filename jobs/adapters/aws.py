"""boto3 clients shared by the whole process, and the mapping of AWS outages to a domain error."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from jobs.errors import ServiceUnavailable

_lock = threading.Lock()
DEFAULT_REGION = "us-east-1"  # when neither AWS_REGION, AWS_DEFAULT_REGION nor the profile names a region

# Errors that mean "AWS (or the emulator) is not answering properly", as opposed to a lost condition.
_UNAVAILABLE_CODES = {
    "ServiceUnavailable",
    "InternalServerError",
    "InternalError",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "TransactionConflictException",  # an item in a transaction at that moment; still there after retries
}


@functools.cache
def _session() -> boto3.session.Session:
    # boto3 reads AWS_DEFAULT_REGION and the profile but not AWS_REGION (which ECS sets, and the other SDKs
    # prefer); without any of them it would raise NoRegionError at the first call.
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    if not session.region_name:
        session = boto3.session.Session(region_name=DEFAULT_REGION)
    return session


def region() -> str:
    """The region of this process's clients: AWS_REGION, else AWS_DEFAULT_REGION or the profile's, else us-east-1."""
    return _session().region_name


@functools.cache
def client(service: str):
    """One thread-safe client per service for the process (a session per request costs ~0.2 s)."""
    with _lock:
        addressing = {"addressing_style": "path"} if os.environ.get("AWS_ENDPOINT_URL") else {}
        config = Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=32,
            s3=addressing,
            signature_version="s3v4" if service == "s3" else None,
        )
        return _session().client(service, config=config)


def load_models(services: tuple[str, ...]) -> None:
    """Load and keep the services' API models (what a first client costs), without making a client."""
    loader = _session()._session.get_component("data_loader")
    for service in services:
        loader.load_service_model(service, "service-2")
        loader.load_service_model(service, "endpoint-rule-set-1")


def reset_clients() -> None:
    """Forget cached clients (tests that change AWS_ENDPOINT_URL call this)."""
    client.cache_clear()
    _session.cache_clear()


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# What the farm calls each service when it tells a customer that one failed (errors.ServiceUnavailable).
COMPONENTS = {"DynamoDB": "job state storage", "S3": "storage", "SQS": "job queue", "Secrets Manager": "secret storage"}


@contextlib.contextmanager
def unavailable_as_503(what: str, *, component: str | None = None) -> Iterator[None]:
    """Turn connection failures and AWS-side faults into ServiceUnavailable; let other errors through.

    `what` is the AWS service (for operators' messages); `component` the farm's name for what it holds,
    by default the service's in COMPONENTS.
    """
    component = component or COMPONENTS.get(what, what)
    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if error_code(exc) in _UNAVAILABLE_CODES or status >= 500:
            raise ServiceUnavailable(f"{what} is unavailable; try again shortly.", component=component) from exc
        raise
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"{what} is unreachable; try again shortly.", component=component) from exc
