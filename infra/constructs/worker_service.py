"""The workers: Fargate Spot (with an optional on-demand base), scaled on the SQS backlog per task."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .runtime import AppRuntime, app_task_definition

TARGET_BACKLOG_PER_TASK = 2  # messages waiting or in flight per running worker


class WorkerService(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.Cluster,
        runtime: AppRuntime,
        subnets: ec2.SubnetSelection,
        queues: list[sqs.IQueue],
        min_count: int,
        max_count: int,
        on_demand_base: int,
        concurrency: int,
        cpu: int,
        memory_mib: int,
        stop_timeout_seconds: int,
    ):
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self, "Sg", vpc=cluster.vpc, allow_all_outbound=True, description="Render workers: no inbound traffic"
        )
        self.task_definition, self.log_group = app_task_definition(
            self,
            "Task",
            runtime=runtime,
            role="worker",
            command=["worker", "--concurrency", str(concurrency)],
            cpu=cpu,
            memory_mib=memory_mib,
            stop_timeout_seconds=stop_timeout_seconds,
            environment={"RENDER_SHUTDOWN_GRACE_SECONDS": str(max(stop_timeout_seconds - 10, 5))},
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=min_count,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE", base=on_demand_base, weight=0),
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1),
            ],
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=0 if min_count == 0 else 100,
            enable_execute_command=True,
        )
        self.backlog_per_task = self._backlog_per_task(queues)
        scaling = self.service.auto_scale_task_count(min_capacity=min_count, max_capacity=max_count)
        # Step scaling on metric math: target tracking takes no math expression. From zero tasks any
        # backlog reads as 100 per task, so the first message starts a worker.
        scaling.scale_on_metric(
            "Backlog",
            metric=self.backlog_per_task,
            scaling_steps=[
                appscaling.ScalingInterval(upper=0, change=-1),
                appscaling.ScalingInterval(lower=TARGET_BACKLOG_PER_TASK, upper=6, change=+1),
                appscaling.ScalingInterval(lower=6, upper=20, change=+3),
                appscaling.ScalingInterval(lower=20, change=+10),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.seconds(60),
            evaluation_periods=1,
        )

    def _backlog_per_task(self, queues: list[sqs.IQueue]) -> cw.MathExpression:
        using = {}
        for i, queue in enumerate(queues):
            using[f"v{i}"] = queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            )
            using[f"f{i}"] = queue.metric_approximate_number_of_messages_not_visible(
                period=Duration.minutes(1), statistic="Maximum"
            )
        using["tasks"] = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": self.service.cluster.cluster_name, "ServiceName": self.service.service_name},
            period=Duration.minutes(1),
            statistic="Average",
        )
        work = " + ".join(f"v{i} + f{i}" for i in range(len(queues)))
        return cw.MathExpression(
            expression=f"IF(FILL(tasks, 0) < 1, IF(({work}) > 0, 100, 0), ({work}) / tasks)",
            using_metrics=using,
            label="SQS backlog per running worker",
            period=Duration.minutes(1),
        )
