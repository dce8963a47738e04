"""jobs.adapters.aws: the region defaults to us-east-1 when nothing names one (no NoRegionError)."""

import pytest

from jobs.adapters import aws


@pytest.fixture
def fresh_clients(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))  # no region from ~/.aws/config
    aws.reset_clients()
    yield
    monkeypatch.undo()
    aws.reset_clients()


def test_region_defaults_to_us_east_1(fresh_clients):
    assert aws.region() == "us-east-1"
    assert aws.client("dynamodb").meta.region_name == "us-east-1"


def test_region_from_the_environment_wins(fresh_clients, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert aws.client("sqs").meta.region_name == "eu-west-1"
    aws.reset_clients()
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")  # boto3 prefers AWS_REGION
    assert aws.region() == "ap-southeast-2"


def test_region_from_the_profile_wins(fresh_clients, monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert aws.region() == "eu-central-1"
