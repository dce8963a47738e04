"""The CDK app (`cdk.json` runs it): one RenderFarmStack, configured from context."""

from __future__ import annotations

import os

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import StageConfig
from infra.stack import RenderFarmStack


def main() -> None:
    app = cdk.App()
    config = StageConfig.from_context(app.node)
    # The region is needed offline too (ALB access logging names its log-delivery account by region);
    # the account stays unresolved unless given, so synth needs no credentials and no lookups.
    region = app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION") or "us-east-1"
    account = app.node.try_get_context("account")
    RenderFarmStack(
        app, f"RenderFarm-{config.stage}", config=config, env=cdk.Environment(account=account, region=region)
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()


if __name__ == "__main__":
    main()
