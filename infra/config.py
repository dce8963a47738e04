"""Deployment settings, read from CDK context (`cdk deploy -c key=value`), with defaults for a dev stage."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Node

# AWS WAF's bounds for a rate-based rule's limit (requests per evaluation window, per IP).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)


@dataclass(frozen=True)
class StageConfig:
    stage: str = "dev"
    certificate_arn: str | None = None  # HTTPS on the ALB (HTTP is redirected); none: plain HTTP (not prod)
    allow_plain_http: bool = False  # lets stage prod synthesize without a certificate (a throwaway test stack)
    domain_name: str | None = None  # the API's host name (Django ALLOWED_HOSTS); default: the ALB's DNS name
    api_desired_count: int = 2
    api_max_count: int = 6
    worker_min_count: int = 0
    worker_max_count: int = 20
    worker_on_demand_base: int = 0  # tasks kept on regular Fargate; the rest run on Fargate Spot
    worker_concurrency: int = 1
    # Sized for real rendering (Blender, Cycles on CPU): a Fargate CPU/memory pair (4 vCPU, 8 GiB).
    worker_cpu: int = 4096
    worker_memory_mib: int = 8192
    worker_stop_timeout_seconds: int = 120  # Fargate's maximum; the worker's graceful shutdown fits in it
    webhook_worker_count: int = 1  # webhook worker tasks (always on; each a prefork pool)
    webhook_concurrency: int = 4  # deliveries one webhook worker task POSTs at once
    visibility_timeout_seconds: int = 15  # kept alive by the worker while it renders: a dead worker's chunk in 15 s
    lease_seconds: int = 12  # must be shorter than the visibility timeout
    result_retention_days: int = 90
    asset_retention_days: int = 30  # scene files, after their upload or the last job submitted with them
    infrequent_access_after_days: int = 30
    log_retention_days: int = 30
    alarm_email: str | None = None
    oldest_message_alarm_seconds: int = 3600
    sweep_every_minutes: int = 5
    nat_gateways: int = 1
    interface_endpoints: bool = False  # SQS, ECR, Logs, Secrets Manager endpoints (see README: cost)
    waf_enabled: bool | None = None  # AWS WAF on the ALB; None: on for stage prod, off elsewhere
    waf_rate_limit: int = 2000  # requests per client IP per 5 minutes before WAF blocks that IP

    def __post_init__(self):
        if self.waf_enabled is None:
            object.__setattr__(self, "waf_enabled", self.stage == "prod")

    @classmethod
    def from_context(cls, node: Node) -> StageConfig:
        values = {}
        for name, field in cls.__dataclass_fields__.items():
            key = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))  # camelCase
            raw = node.try_get_context(key)
            if raw is None:
                continue
            if field.type in ("int",):
                raw = int(raw)
            elif field.type in ("bool", "bool | None"):
                raw = str(raw).lower() in ("1", "true", "yes")
            values[name] = raw
        config = cls(**values)
        if config.infrequent_access_after_days < 30:
            raise ValueError("infrequentAccessAfterDays must be at least 30 (S3's minimum for STANDARD_IA)")
        if config.lease_seconds >= config.visibility_timeout_seconds:
            raise ValueError("leaseSeconds must be shorter than visibilityTimeoutSeconds")
        if config.webhook_worker_count < 1 or config.webhook_concurrency < 1:
            raise ValueError("webhookWorkerCount and webhookConcurrency must be at least 1 (deliveries need a worker)")
        if config.worker_stop_timeout_seconds > 120:
            raise ValueError("workerStopTimeoutSeconds cannot exceed Fargate's 120 s")
        if config.stage == "prod" and not config.certificate_arn and not config.allow_plain_http:
            raise ValueError(
                "stage=prod needs certificateArn: production serves HTTPS only (API keys travel in every request). "
                "For a throwaway test stack without TLS, pass -c allowPlainHttp=true explicitly."
            )
        low, high = WAF_RATE_LIMIT_RANGE
        if not low <= config.waf_rate_limit <= high:
            raise ValueError(f"wafRateLimit must be between {low} and {high} requests per 5 minutes (AWS WAF's range)")
        return config
