"""Synthesize the stack once per configuration (with cdk-nag as a validation plugin) for the assertions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "stage": "prod",
    "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234",
    "domainName": "render.example.com",
    "alarmEmail": "oncall@example.com",
    "interfaceEndpoints": "true",
    "workerOnDemandBase": "1",
    "workerMaxCount": "50",
    "wafRateLimit": "1500",
}


def synth(tmp: Path, extra_context: dict) -> tuple[dict, object]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from infra.config import StageConfig
    from infra.stack import RenderFarmStack

    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], **extra_context}
    app = cdk.App(outdir=str(tmp), context=context)
    stack = RenderFarmStack(
        app, "RenderFarm", config=StageConfig.from_context(app.node), env=cdk.Environment(region="us-east-1")
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()  # raises if cdk-nag reports anything not acknowledged
    return assembly.get_stack_by_name("RenderFarm").template, Template.from_stack(stack)


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("cdk-dev"), {})


@pytest.fixture(scope="session")
def prod(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("cdk-prod"), PROD)


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """A stage under a name the config has never heard of: production-grade by default."""
    return synth(tmp_path_factory.mktemp("cdk-live"), {"stage": "live", "certificateArn": PROD["certificateArn"]})


@pytest.fixture(scope="session")
def staging_plain(tmp_path_factory):
    """A production-grade stage with both escape hatches used: plain HTTP and no WAF, data still retained."""
    context = {"stage": "staging", "allowPlainHttp": "true", "wafEnabled": "false"}
    return synth(tmp_path_factory.mktemp("cdk-staging"), context)
