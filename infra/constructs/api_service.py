"""The API: Fargate tasks in private subnets behind a public ALB (HTTPS when a certificate is given)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .runtime import AppRuntime, app_task_definition, rolling_service

PORT = 8000


class ApiService(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.Cluster,
        runtime: AppRuntime,
        subnets: ec2.SubnetSelection,
        certificate_arn: str | None,
        domain_name: str | None,
        desired_count: int,
        max_count: int,
        access_logs: s3.IBucket,
        secrets: dict[str, ecs.Secret],
        environment: dict[str, str],
    ):
        super().__init__(scope, id)
        vpc = cluster.vpc
        self.alb_security_group = ec2.SecurityGroup(
            self, "AlbSg", vpc=vpc, allow_all_outbound=False, description="Render API load balancer"
        )
        self.service_security_group = ec2.SecurityGroup(
            self,
            "ServiceSg",
            vpc=vpc,
            allow_all_outbound=True,
            description="Render API tasks: reachable from the ALB only",
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            security_group=self.alb_security_group,
            drop_invalid_header_fields=True,
        )
        self.load_balancer.log_access_logs(access_logs, prefix="alb")
        host = domain_name or self.load_balancer.load_balancer_dns_name
        self.task_definition, self.log_group = app_task_definition(
            self,
            "Task",
            runtime=runtime,
            role="api",
            command=["api"],
            cpu=512,
            memory_mib=1024,
            port=PORT,
            environment={
                "DJANGO_ALLOWED_HOSTS": host,
                "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{host}",
                **environment,
            },
            secrets=secrets,
        )
        self.service = rolling_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            vpc_subnets=subnets,
            security_groups=[self.service_security_group],
            health_check_grace_period=Duration.seconds(30),
            enable_execute_command=True,  # the first API key is made with ECS exec (docs/operating/deploy.md)
        )
        if certificate_arn:
            certificate = acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
            listener = self.load_balancer.add_listener(
                "Https", port=443, certificates=[certificate], ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS, open=True
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443)
            self.url = f"https://{host}"
        else:  # no certificate: plain HTTP (a non-production stage, or allowPlainHttp)
            listener = self.load_balancer.add_listener("Http", port=80, open=True)
            self.url = f"http://{host}"
        self.target_group = listener.add_targets(
            "Api",
            port=PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            health_check=elbv2.HealthCheck(path="/healthz", healthy_http_codes="200", interval=Duration.seconds(15)),
            deregistration_delay=Duration.seconds(20),
        )
        self.service_security_group.add_ingress_rule(self.alb_security_group, ec2.Port.tcp(PORT), "ALB to API")
        self.alb_security_group.add_egress_rule(self.service_security_group, ec2.Port.tcp(PORT), "ALB to API")

        scaling = self.service.auto_scale_task_count(min_capacity=desired_count, max_capacity=max_count)
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        scaling.scale_on_request_count("Requests", requests_per_target=600, target_group=self.target_group)
