"""cdk-nag's AWS Solutions pack runs on every synth; the findings this stack accepts, each with its reason.

cdk-nag v3 is a CDK policy-validation plugin: a finding that is not acknowledged here fails the synth.
IAM5 (wildcards) is acknowledged finding by finding, never for the rule as a whole.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from .access import ASSETS_PREFIX, RESULTS_PREFIX, api_key_secret_prefix

PACK = "AwsSolutions::AwsSolutions"

RULES = {
    "ECS2": "Environment variables hold only resource names and tuning values; the one secret "
    "(DJANGO_SECRET_KEY, API task only) is injected from Secrets Manager.",
    "SMG4": "The Django SECRET_KEY signs cursors and session cookies; rotating it logs everyone out and "
    "invalidates cursors, so it is rotated by hand (docs/operating/deploy.md).",
    "EC23": "The load balancer is the public entry point and must accept 0.0.0.0/0 on 80/443; the tasks "
    "accept traffic only from the load balancer's security group.",
}

WILDCARDS = {
    "Resource::*": "Actions that have no resource form: ecr:GetAuthorizationToken (task execution roles), "
    "the ssmmessages channels of ECS exec (how operators create the first API key) and "
    "logs:DescribeLogGroups (ECS exec checks its log group).",
    "Action::kms:GenerateDataKey*": "The stack's own data key, only through DynamoDB and S3 (kms:ViaService): "
    "what they ask KMS for to write encrypted items and objects.",
    "Action::kms:ReEncrypt*": "The stack's own data key, only through DynamoDB and S3 (kms:ViaService), as "
    "CDK's table grants have it.",
}


def acknowledge_justified(stack: Stack, *, stage: str, results: s3.Bucket, exec_logs: logs.LogGroup) -> None:
    bucket_arn = stack.get_logical_id(results.node.default_child)
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    exec_group = f"<{stack.get_logical_id(exec_logs.node.default_child)}>"
    wildcards = {
        **WILDCARDS,
        f"Resource::<{bucket_arn}.Arn>/{RESULTS_PREFIX}": "Result objects (jobs/<id>/...) of the stack's own "
        "bucket: the workers write and read frames, the API presigns GETs of them.",
        f"Resource::<{bucket_arn}.Arn>/{ASSETS_PREFIX}": "Scene files (assets/<owner>/<sha256>) of the stack's "
        "own bucket, content-addressed: the API presigns their PUTs and checks them, workers read them.",
        f"Resource::arn:<AWS::Partition>:secretsmanager:{stack.region}:{account}:secret:"
        f"{api_key_secret_prefix(stage)}*": "The secrets create_api_key stores new API keys in (one per key, "
        "named by the operator under this stage's prefix); no GetSecretValue.",
        f"Resource::arn:<AWS::Partition>:logs:{stack.region}:{account}:log-group:{exec_group}:*": "Log streams "
        "of the stack's own ECS exec log group (every exec session is recorded).",
    }
    Validations.of(stack).acknowledge(
        *(Acknowledgment(id=f"{PACK}-{rule}", reason=reason) for rule, reason in RULES.items()),
        *(Acknowledgment(id=f"{PACK}-IAM5[{finding}]", reason=reason) for finding, reason in wildcards.items()),
    )
