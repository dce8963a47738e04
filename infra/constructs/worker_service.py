"""The workers: Fargate Spot (with an optional on-demand base), scaled on the SQS backlog per task.

Each worker task has two containers. `worker` runs Celery with the task's AWS role. `sandbox` runs every
Blender process (jobs/sandbox/sidecar.py): Fargate allows no user namespaces, so no bubblewrap; instead
Blender runs in a container of its own (its own PID namespace: no process of the worker to look at), with a
read-only root filesystem, no application settings or secrets, and, for each render, a uid of its own with
a seccomp filter that refuses every socket (the task's network, and with it the credentials endpoint, is
shared by its containers). The two meet on one task volume, /sandbox: the scene cache and the chunks'
scratch directories, and the sidecar's socket.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .runtime import AppRuntime, app_task_definition, outbound_only_group, rolling_service

SANDBOX_VOLUME = "sandbox"
SANDBOX_PATH = "/sandbox"  # the same path in both containers: paths pass between them as they are
SANDBOX_SOCKET = f"{SANDBOX_PATH}/run/sandbox.sock"
SANDBOX_UID = 20000  # the first of the uids renders run as, one per slot (none of them exists in the image)
WORKER_GID = 10001  # the worker's group: the only one that may open the socket and read the renders' files
# Capabilities the sidecar does not need (Docker's defaults minus what it uses: CHOWN, DAC_OVERRIDE, FOWNER,
# KILL, SETGID, SETUID, to switch each render to its uid, hand it its scratch directory and clean up after).
SANDBOX_DROPPED = (
    ecs.Capability.AUDIT_WRITE,
    ecs.Capability.FSETID,
    ecs.Capability.MKNOD,
    ecs.Capability.NET_BIND_SERVICE,
    ecs.Capability.NET_RAW,
    ecs.Capability.SETFCAP,
    ecs.Capability.SETPCAP,
    ecs.Capability.SYS_CHROOT,
)

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
        self.security_group = outbound_only_group(self, cluster.vpc, "Render workers")
        self.task_definition, self.log_group = app_task_definition(
            self,
            "Task",
            runtime=runtime,
            role="worker",
            command=["worker", "--concurrency", str(concurrency)],
            cpu=cpu,
            memory_mib=memory_mib,
            stop_timeout_seconds=stop_timeout_seconds,
            environment={
                "RENDER_SHUTDOWN_GRACE_SECONDS": str(max(stop_timeout_seconds - 10, 5)),
                "RENDER_SANDBOX": "sidecar",
                "RENDER_SANDBOX_SOCKET": SANDBOX_SOCKET,
                "RENDER_BLENDER_CACHE_DIR": SANDBOX_PATH,
                "RENDER_SANDBOX_MEMORY_MB": str(memory_mib),
            },
        )
        self.sandbox = self._sandbox(runtime=runtime, slots=concurrency, log_group=self.log_group)
        self.service = rolling_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=min_count,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE", base=on_demand_base, weight=0),
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1),
            ],
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

    def _sandbox(self, *, runtime: AppRuntime, slots: int, log_group) -> ecs.ContainerDefinition:
        """The sidecar that runs Blender, sharing only the /sandbox volume with the worker."""
        task = self.task_definition
        worker = task.default_container
        assert worker is not None
        task.add_volume(name=SANDBOX_VOLUME)
        linux = ecs.LinuxParameters(self, "SandboxLinux", init_process_enabled=True)  # an init reaps orphans
        linux.drop_capabilities(*SANDBOX_DROPPED)
        sandbox = task.add_container(
            "sandbox",
            image=runtime.image,
            command=["sandbox"],
            user="0",  # to switch each render to a uid of its own; nothing else runs as root
            essential=True,
            readonly_root_filesystem=True,
            linux_parameters=linux,
            environment={  # nothing of the application's: no table, bucket, queues or keys
                "RENDER_SANDBOX_SOCKET": SANDBOX_SOCKET,
                "RENDER_SANDBOX_ROOT": f"{SANDBOX_PATH}/chunks",
                "RENDER_SANDBOX_UID": str(SANDBOX_UID),
                "RENDER_SANDBOX_SLOTS": str(slots),
                "RENDER_SANDBOX_WORKER_GID": str(WORKER_GID),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="sandbox", log_group=log_group),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-m", "jobs.sandbox.sidecar", "--ping"],
                interval=Duration.seconds(10),
                start_period=Duration.seconds(10),
            ),
        )
        volume = ecs.MountPoint(container_path=SANDBOX_PATH, source_volume=SANDBOX_VOLUME, read_only=False)
        sandbox.add_mount_points(volume)
        worker.add_mount_points(volume)
        worker.add_container_dependencies(
            ecs.ContainerDependency(container=sandbox, condition=ecs.ContainerDependencyCondition.HEALTHY)
        )
        return sandbox

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
