"""The one stack: composes the constructs, wires grants and outputs. `app.py` only instantiates it."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from . import access
from .config import StageConfig
from .constructs.api_service import ApiService
from .constructs.data import Data
from .constructs.monitoring import Monitoring, metrics_namespace
from .constructs.network import Network
from .constructs.queues import RenderQueues, WebhookQueues
from .constructs.runtime import AppRuntime
from .constructs.sweeper import Sweeper
from .constructs.waf import ApiFirewall
from .constructs.webhook_service import WebhookService
from .constructs.worker_service import WorkerService
from .nag import acknowledge_justified

ROOT = Path(__file__).resolve().parent.parent


class RenderFarmStack(Stack):
    def __init__(
        self, scope: Construct, id: str, *, config: StageConfig, image: ecs.ContainerImage | None = None, **kwargs
    ):
        super().__init__(scope, id, **kwargs)
        retention = log_retention(config.log_retention_days)
        # Production-grade stages keep the table, the buckets and the keys when the stack is deleted.
        removal = RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY

        network = Network(
            self,
            "Network",
            nat_gateways=config.nat_gateways,
            interface_endpoints=config.interface_endpoints,
            log_retention=retention,
        )
        data = Data(
            self,
            "Data",
            retention_days=config.result_retention_days,
            asset_retention_days=config.asset_retention_days,
            infrequent_access_after_days=config.infrequent_access_after_days,
            removal_policy=removal,
        )
        queues = RenderQueues(
            self, "Queues", prefix=f"{config.stage}-", visibility_timeout_seconds=config.visibility_timeout_seconds
        )
        webhook_queues = WebhookQueues(
            self,
            "WebhookQueues",
            prefix=f"{config.stage}-",
            visibility_timeout_seconds=config.visibility_timeout_seconds,
        )
        secret_key = secretsmanager.Secret(
            self,
            "DjangoSecretKey",
            description="Django SECRET_KEY of the render farm API",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        # ECS exec sessions (how operators run manage.py in a task) are encrypted with a key of their own
        # (the session channel and the session log), and logged to their own group, encrypted with it too.
        # CDK adds to the key policy the statement that lets CloudWatch Logs use it for this account's
        # log groups, and kms:Decrypt/GenerateDataKey on it to the exec-enabled task roles.
        exec_key = kms.Key(
            self,
            "ExecKey",
            enable_key_rotation=True,
            description="Render farm ECS exec sessions and their logs",
            removal_policy=removal,
        )
        exec_logs = logs.LogGroup(
            self, "ExecLogs", retention=retention, encryption_key=exec_key, removal_policy=RemovalPolicy.DESTROY
        )
        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            enable_fargate_capacity_providers=True,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            execute_command_configuration=ecs.ExecuteCommandConfiguration(
                kms_key=exec_key,
                logging=ecs.ExecuteCommandLogging.OVERRIDE,
                log_configuration=ecs.ExecuteCommandLogConfiguration(
                    cloud_watch_log_group=exec_logs, cloud_watch_encryption_enabled=True
                ),
            ),
        )
        # Two targets of the one Dockerfile: the API and the sweeper run without Blender, workers with it.
        environment = {
            "RENDER_ENV": "production",
            "RENDER_TABLE_NAME": data.table.table_name,
            "RENDER_BUCKET_NAME": data.results.bucket_name,
            "RENDER_VISIBILITY_TIMEOUT": str(config.visibility_timeout_seconds),
            "RENDER_LEASE_SECONDS": str(config.lease_seconds),
            "RENDER_METRICS_NAMESPACE": metrics_namespace(config.stage),
            "RENDER_RESULT_RETENTION_DAYS": str(config.result_retention_days),
            "RENDER_ASSET_RETENTION_DAYS": str(config.asset_retention_days),
            # what a worker-second costs is priced by the worker task this stack runs (quotes, budgets)
            "RENDER_WORKER_VCPU": f"{config.worker_cpu / 1024:g}",
            "RENDER_WORKER_MEMORY_GB": f"{config.worker_memory_mib / 1024:g}",
            # the `url` of a job in webhook bodies (workers have no request to build it from)
            **({"RENDER_PUBLIC_URL": f"https://{config.domain_name}"} if config.domain_name else {}),
            **queues.environment(),
            **webhook_queues.environment(),  # every process may send a delivery's message
        }
        runtime = AppRuntime(
            image=image or ecs.ContainerImage.from_asset(str(ROOT), file="Dockerfile", target="api"),
            environment=environment,
            log_retention=retention,
        )
        worker_runtime = AppRuntime(
            image=image or ecs.ContainerImage.from_asset(str(ROOT), file="Dockerfile", target="worker"),
            environment=environment,
            log_retention=retention,
        )

        api = ApiService(
            self,
            "Api",
            cluster=cluster,
            runtime=runtime,
            subnets=network.private_subnets,
            certificate_arn=config.certificate_arn,
            domain_name=config.domain_name,
            desired_count=config.api_desired_count,
            max_count=config.api_max_count,
            access_logs=data.access_logs,
            # Only the API signs anything (sessions, cursors): workers and the sweeper never see the key.
            secrets={"DJANGO_SECRET_KEY": ecs.Secret.from_secrets_manager(secret_key)},
            environment={"RENDER_API_KEY_SECRET_PREFIX": access.api_key_secret_prefix(config.stage)},
        )
        if config.waf_enabled:
            ApiFirewall(
                self, "Waf", load_balancer=api.load_balancer, stage=config.stage, rate_limit=config.waf_rate_limit
            )
        workers = WorkerService(
            self,
            "Workers",
            cluster=cluster,
            runtime=worker_runtime,
            subnets=network.private_subnets,
            queues=list(queues.queues.values()),
            min_count=config.worker_min_count,
            max_count=config.worker_max_count,
            on_demand_base=config.worker_on_demand_base,
            concurrency=config.worker_concurrency,
            cpu=config.worker_cpu,
            memory_mib=config.worker_memory_mib,
            stop_timeout_seconds=config.worker_stop_timeout_seconds,
        )
        webhook_workers = WebhookService(
            self,
            "Webhooks",
            cluster=cluster,
            runtime=runtime,
            subnets=network.private_subnets,
            desired_count=config.webhook_worker_count,
            concurrency=config.webhook_concurrency,
        )
        sweeper = Sweeper(
            self,
            "Sweeper",
            cluster=cluster,
            runtime=runtime,
            subnets=network.private_subnets,
            every_minutes=config.sweep_every_minutes,
        )

        # Least privilege: exact actions per role (infra/access.py; tests/infra/test_access.py checks them).
        access.grant_least_privilege(
            api=api.task_definition.task_role,
            worker=workers.task_definition.task_role,
            webhooks=webhook_workers.task_definition.task_role,
            sweeper=sweeper.task_definition.task_role,
            table=data.table,
            key=data.key,
            results=data.results,
            render_queues=list(queues.queues.values()),
            dlq=queues.dlq,
            webhook_queue=webhook_queues.queue,
            webhook_dlq=webhook_queues.dlq,
            stage=config.stage,
        )

        running_workers = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": workers.service.service_name},
            period=Duration.minutes(1),
            statistic="Average",
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            stage=config.stage,
            queues=queues.queues,
            dlq=queues.dlq,
            webhook_queue=webhook_queues.queue,
            webhook_dlq=webhook_queues.dlq,
            worker_log_group=workers.log_group,
            load_balancer=api.load_balancer,
            target_group=api.target_group,
            running_workers=running_workers,
            alarm_email=config.alarm_email,
            oldest_message_alarm_seconds=config.oldest_message_alarm_seconds,
            key=data.key,
            table=data.table,
            worker_max_processes=config.worker_max_count * config.worker_concurrency,
        )
        # Alarms publish to the topic, which the data key encrypts.
        data.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")

        CfnOutput(self, "ApiUrl", value=api.url)
        CfnOutput(self, "ResultsBucket", value=data.results.bucket_name)
        CfnOutput(self, "TableName", value=data.table.table_name)
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        CfnOutput(self, "ApiServiceName", value=api.service.service_name)
        CfnOutput(self, "WebhookServiceName", value=webhook_workers.service.service_name)
        # What `aws ecs run-task` needs to run `manage dlq ...` in a sweeper task (docs/operating/deploy.md).
        CfnOutput(self, "SweeperTaskDefinition", value=sweeper.task_definition.task_definition_arn)
        CfnOutput(self, "SweeperSecurityGroup", value=sweeper.security_group.security_group_id)
        CfnOutput(self, "SweeperLogGroup", value=sweeper.log_group.log_group_name)
        CfnOutput(self, "PrivateSubnets", value=",".join(s.subnet_id for s in network.vpc.private_subnets))
        CfnOutput(self, "ExecKeyArn", value=exec_key.key_arn)  # operators need kms:GenerateDataKey on it
        CfnOutput(self, "AlarmTopic", value=monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"render-farm-{config.stage}")
        acknowledge_justified(self, stage=config.stage, results=data.results, exec_logs=exec_logs)


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def log_retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps logs at least `days` days."""
    return next((v for d, v in sorted(_RETENTION.items()) if d >= days), logs.RetentionDays.TEN_YEARS)
