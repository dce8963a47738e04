"""The webhook worker: a small always-on Fargate service of the API image consuming the webhook queue only."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from .runtime import AppRuntime, app_task_definition, outbound_only_group, rolling_service

# A try ends within the task's hard time limit (30 s by default: the sender's 10 s cut-off and the DynamoDB
# calls around it); a SIGTERMed worker finishes the tries it has before it exits, so none is cut mid-POST.
STOP_TIMEOUT_SECONDS = 60


class WebhookService(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.Cluster,
        runtime: AppRuntime,
        subnets: ec2.SubnetSelection,
        desired_count: int,
        concurrency: int,
    ):
        super().__init__(scope, id)
        # Outbound to the receivers (through the NAT); nothing comes in.
        self.security_group = outbound_only_group(self, cluster.vpc, "Webhook workers")
        # 0.25 vCPU, 1 GiB: a prefork pool of `concurrency` processes that mostly wait on the network (about
        # 60 MiB each once they share the main process's pages); no Blender, so the API image.
        self.task_definition, self.log_group = app_task_definition(
            self,
            "Task",
            runtime=runtime,
            role="webhooks",
            command=["webhooks", "--concurrency", str(concurrency)],
            cpu=256,
            memory_mib=1024,
            stop_timeout_seconds=STOP_TIMEOUT_SECONDS,
        )
        # On-demand Fargate: one small task that should always be there (deliveries wait in the queue while
        # it is replaced, but a Spot interruption would make that routine).
        self.service = rolling_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
        )
