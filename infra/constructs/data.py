"""State and results: the DynamoDB table of docs/ARCHITECTURE.md and the private results bucket, under a KMS key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from jobs.repository.items import INDEX_PROJECTIONS  # each index: `<name>pk`/`<name>sk` string keys

INDEXES = tuple(INDEX_PROJECTIONS)


class Data(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        retention_days: int,
        asset_retention_days: int,
        infrequent_access_after_days: int,
        removal_policy: RemovalPolicy,
    ):
        super().__init__(scope, id)
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description="Render farm data (table, results)",
            removal_policy=removal_policy,
        )
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="expires_at",
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            removal_policy=removal_policy,
        )
        # gsi1: an owner's jobs (newest first; by status: filtered) and API keys; gsi2: the sweeper's index of
        # work that could get stuck, and every API key. Projections: keys only for the listing, the few
        # attributes the sweeper acts on for gsi2.
        for index, attributes in INDEX_PROJECTIONS.items():
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=f"{index}pk", type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=f"{index}sk", type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.KEYS_ONLY
                if attributes is None
                else dynamodb.ProjectionType.INCLUDE,
                non_key_attributes=list(attributes) if attributes else None,
            )

        # Server access logs cannot be written to a bucket encrypted with a customer key: SSE-S3 here.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy is RemovalPolicy.DESTROY,
        )
        transitions = []
        if retention_days > infrequent_access_after_days:
            transitions.append(
                s3.Transition(
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=Duration.days(infrequent_access_after_days),
                )
            )
        self.results = s3.Bucket(
            self,
            "Results",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,  # one KMS request per object key prefix window, not per object
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="results",
                    prefix="jobs/",
                    expiration=Duration.days(retention_days),
                    transitions=transitions,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                # Scene files: counted from their upload or the last job that used them (a copy in place).
                s3.LifecycleRule(
                    id="assets",
                    prefix="assets/",
                    expiration=Duration.days(asset_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy is RemovalPolicy.DESTROY,
        )
