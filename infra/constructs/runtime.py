"""What every task of the one image shares: the image, environment and a log group per role."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

TMP_VOLUME = "tmp"  # the writable /tmp of a container whose root filesystem is read-only


@dataclass(frozen=True)
class AppRuntime:
    image: ecs.ContainerImage
    environment: dict[str, str]
    log_retention: logs.RetentionDays


def app_task_definition(
    scope: Construct,
    id: str,
    *,
    runtime: AppRuntime,
    role: str,
    command: list[str],
    cpu: int,
    memory_mib: int,
    environment: dict[str, str] | None = None,
    secrets: dict[str, ecs.Secret] | None = None,
    port: int | None = None,
    stop_timeout_seconds: int | None = None,
) -> tuple[ecs.FargateTaskDefinition, logs.LogGroup]:
    """A Fargate task definition running `bin/entrypoint <command>` with its own log group.

    `RENDER_ROLE` (api, worker, webhooks, sweeper) tells the app which role it runs; only the roles given
    `secrets` (the API: DJANGO_SECRET_KEY) can read them, through their own execution role. The root
    filesystem is read-only (the code under /app is root's and cannot be rewritten); /tmp is a task volume.
    """
    log_group = logs.LogGroup(scope, f"{id}Logs", retention=runtime.log_retention, removal_policy=RemovalPolicy.DESTROY)
    task = ecs.FargateTaskDefinition(
        scope,
        id,
        cpu=cpu,
        memory_limit_mib=memory_mib,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64, operating_system_family=ecs.OperatingSystemFamily.LINUX
        ),
    )
    container = task.add_container(
        role,
        image=runtime.image,
        command=command,
        environment={**runtime.environment, "RENDER_ROLE": role, **(environment or {})},
        secrets=secrets,
        logging=ecs.LogDrivers.aws_logs(stream_prefix=role, log_group=log_group),
        readonly_root_filesystem=True,
        stop_timeout=None if stop_timeout_seconds is None else Duration.seconds(stop_timeout_seconds),
        health_check=ecs.HealthCheck(command=["CMD", "python", "-m", "jobs.worker.healthcheck"])
        if role != "sweeper"
        else None,
    )
    task.add_volume(name=TMP_VOLUME)
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume=TMP_VOLUME, read_only=False))  # noqa: S108
    if port is not None:
        container.add_port_mappings(ecs.PortMapping(container_port=port))
    return task, log_group


def outbound_only_group(scope: Construct, vpc: ec2.IVpc, who: str) -> ec2.SecurityGroup:
    """The security group of a task that only calls out (AWS, receivers, through the NAT): nothing comes in."""
    return ec2.SecurityGroup(scope, "Sg", vpc=vpc, allow_all_outbound=True, description=f"{who}: no inbound traffic")


def rolling_service(scope: Construct, **props) -> ecs.FargateService:
    """A Fargate service whose deployments roll back on their own when new tasks keep failing, and which
    keeps its running tasks until the new ones are up (unless `props` says otherwise)."""
    props = {"min_healthy_percent": 100, "max_healthy_percent": 200, **props}
    return ecs.FargateService(
        scope, "Service", circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True), **props
    )
