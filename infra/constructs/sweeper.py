"""The sweeper: the same image's `sweep` command as a Fargate task, run by EventBridge Scheduler."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from .runtime import AppRuntime, app_task_definition, outbound_only_group


class Sweeper(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.Cluster,
        runtime: AppRuntime,
        subnets: ec2.SubnetSelection,
        every_minutes: int,
    ):
        super().__init__(scope, id)
        self.security_group = outbound_only_group(self, cluster.vpc, "Render sweeper")
        self.task_definition, self.log_group = app_task_definition(
            self, "Task", runtime=runtime, role="sweeper", command=["sweep"], cpu=256, memory_mib=512
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(every_minutes)),
            description="Re-enqueue or finish overdue render work (manage.py sweep)",
            target=targets.EcsRunFargateTask(
                cluster,
                task_definition=self.task_definition,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                capacity_provider_strategies=[ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)],
                retry_attempts=2,
                max_event_age=Duration.minutes(every_minutes),
            ),
        )
