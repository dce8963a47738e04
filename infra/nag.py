"""cdk-nag's AWS Solutions pack runs on every synth; the findings this stack accepts, each with its reason.

cdk-nag v3 is a CDK policy-validation plugin: a finding that is not acknowledged here fails the synth.
IAM5 (wildcards) is acknowledged finding by finding, never for the rule as a whole.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

PACK = "AwsSolutions::AwsSolutions"

RULES = {
    "ECS2": "Environment variables hold only resource names and tuning values; the one secret "
    "(DJANGO_SECRET_KEY, API task only) is injected from Secrets Manager.",
    "SMG4": "The Django SECRET_KEY signs cursors and session cookies; rotating it logs everyone out and "
    "invalidates cursors, so it is rotated by hand (README: Deploy to AWS).",
    "EC23": "The load balancer is the public entry point and must accept 0.0.0.0/0 on 80/443; the tasks "
    "accept traffic only from the load balancer's security group.",
}

WILDCARDS = {
    "Resource::*": "Actions that have no resource form: ecr:GetAuthorizationToken (task execution roles), "
    "the ssmmessages channels of ECS exec (how operators create the first API key) and "
    "logs:DescribeLogGroups (ECS exec checks its log group).",
    "Action::kms:GenerateDataKey*": "CDK's grant on the stack's own data key, needed to write KMS-encrypted "
    "items and objects.",
    "Action::kms:ReEncrypt*": "CDK's grant on the stack's own data key (read/write grants include it).",
    "Action::s3:GetObject*": "Reads of the stack's own results bucket (frames, previews, presigned GETs).",
    "Action::s3:GetBucket*": "CDK's read grant on the stack's own results bucket.",
    "Action::s3:List*": "CDK's read grant on the stack's own results bucket.",
    "Action::s3:DeleteObject*": "CDK's write grant on the stack's own results bucket (re-runs overwrite).",
    "Action::s3:Abort*": "CDK's write grant: aborting the workers' own multipart uploads.",
}


def acknowledge_justified(stack: Stack, *, table: dynamodb.Table, results: s3.Bucket, exec_logs: logs.LogGroup) -> None:
    table_arn = stack.get_logical_id(table.node.default_child)
    bucket_arn = stack.get_logical_id(results.node.default_child)
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    exec_group = f"<{stack.get_logical_id(exec_logs.node.default_child)}>"
    wildcards = {
        **WILDCARDS,
        f"Resource::<{table_arn}.Arn>/index/*": "The table's own indexes (gsi1 owner listing, gsi2 sweeper).",
        f"Resource::<{bucket_arn}.Arn>/*": "Objects of the stack's own results bucket.",
        f"Resource::arn:<AWS::Partition>:logs:{stack.region}:{account}:log-group:{exec_group}:*": "Log streams "
        "of the stack's own ECS exec log group (every exec session is recorded).",
    }
    Validations.of(stack).acknowledge(
        *(Acknowledgment(id=f"{PACK}-{rule}", reason=reason) for rule, reason in RULES.items()),
        *(Acknowledgment(id=f"{PACK}-IAM5[{finding}]", reason=reason) for finding, reason in wildcards.items()),
    )
