"""Deployment settings, read from CDK context (`cdk deploy -c key=value`), with defaults for a dev stage.

Every stage is production-grade (HTTPS required, WAF on, data retained when the stack is deleted) unless it is
named in NON_PRODUCTION_STAGES or the context says `production=false`: a stage called `production`, `live`
or anything new fails safe instead of deploying plain HTTP with deletable data.
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Node

from jobs.domain import pricing, timing

# AWS WAF's bounds for a rate-based rule's limit (requests per evaluation window, per IP).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)
# The only stage names that are not production-grade by default (docs/operating/deploy.md); a short, exact list,
# so a typo or a new name gets the safe side.
NON_PRODUCTION_STAGES = ("dev", "test", "ci")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class StageConfig:
    stage: str = "dev"
    # Production-grade: HTTPS required, WAF on by default, table, bucket and keys retained on deletion.
    # None: every stage but NON_PRODUCTION_STAGES; `-c production=false` makes any stage a throwaway one.
    production: bool | None = None
    certificate_arn: str | None = None  # HTTPS on the ALB (HTTP is redirected); none: plain HTTP (non-production)
    allow_plain_http: bool = False  # lets a production-grade stage synthesize without a certificate (a test stack)
    domain_name: str | None = None  # the API's host name (Django ALLOWED_HOSTS); default: the ALB's DNS name
    api_desired_count: int = 2
    api_max_count: int = 6
    worker_min_count: int = 0
    worker_max_count: int = 20
    worker_on_demand_base: int = 0  # tasks kept on regular Fargate; the rest run on Fargate Spot
    worker_concurrency: int = 1
    # Sized for real rendering (Blender, Cycles on CPU): a Fargate CPU/memory pair (4 vCPU, 8 GiB), named once in
    # jobs/domain/pricing.py (the settings price a worker-second by it; the stack tells them this task's size).
    worker_cpu: int = pricing.WORKER_CPU_UNITS
    worker_memory_mib: int = pricing.WORKER_MEMORY_MIB
    worker_stop_timeout_seconds: int = 120  # Fargate's maximum; the worker's graceful shutdown fits in it
    webhook_worker_count: int = 1  # webhook worker tasks (always on; each a prefork pool)
    webhook_concurrency: int = 4  # deliveries one webhook worker task POSTs at once
    # kept alive by the worker while it renders: a dead worker's chunk in 15 s; the lease must be shorter
    visibility_timeout_seconds: int = timing.VISIBILITY_TIMEOUT_SECONDS
    lease_seconds: int = timing.LEASE_SECONDS
    result_retention_days: int = 90
    asset_retention_days: int = 30  # scene files, after their upload or the last job submitted with them
    infrequent_access_after_days: int = 30
    log_retention_days: int = 30
    alarm_email: str | None = None
    oldest_message_alarm_seconds: int = 3600
    sweep_every_minutes: int = 5
    nat_gateways: int = 1
    interface_endpoints: bool = False  # SQS, ECR, Logs, Secrets Manager endpoints (docs/operating/deploy.md: cost)
    waf_enabled: bool | None = None  # AWS WAF on the ALB; None: on for production-grade stages, off elsewhere
    waf_rate_limit: int = 2000  # requests per client IP per 5 minutes before WAF blocks that IP

    def __post_init__(self):
        if self.production is None:
            object.__setattr__(self, "production", self.stage not in NON_PRODUCTION_STAGES)
        if self.waf_enabled is None:
            object.__setattr__(self, "waf_enabled", self.production)

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
                raw = _flag(key, raw)
            values[name] = raw
        config = cls(**values)
        if config.infrequent_access_after_days < 30:
            raise ValueError("infrequentAccessAfterDays must be at least 30 (S3's minimum for STANDARD_IA)")
        if problem := timing.lease_problem(config.lease_seconds, config.visibility_timeout_seconds):
            raise ValueError(f"leaseSeconds and visibilityTimeoutSeconds: {problem}")
        if config.webhook_worker_count < 1 or config.webhook_concurrency < 1:
            raise ValueError("webhookWorkerCount and webhookConcurrency must be at least 1 (deliveries need a worker)")
        if config.worker_stop_timeout_seconds > 120:
            raise ValueError("workerStopTimeoutSeconds cannot exceed Fargate's 120 s")
        if config.production and not config.certificate_arn and not config.allow_plain_http:
            raise ValueError(
                f"stage={config.stage} is production-grade (only {', '.join(NON_PRODUCTION_STAGES)} are not, "
                "unless -c production=false) and needs certificateArn: production serves HTTPS only (API keys "
                "travel in every request). For a throwaway test stack without TLS, pass -c allowPlainHttp=true."
            )
        low, high = WAF_RATE_LIMIT_RANGE
        if not low <= config.waf_rate_limit <= high:
            raise ValueError(f"wafRateLimit must be between {low} and {high} requests per 5 minutes (AWS WAF's range)")
        return config


def _flag(key: str, raw: object) -> bool:
    """A context flag: true/false, yes/no or 1/0 (any case); anything else is refused, not read as false."""
    text = str(raw).strip().lower()
    if text not in TRUE + FALSE:
        raise ValueError(f"{key} must be true or false, got {raw!r}")
    return text in TRUE
