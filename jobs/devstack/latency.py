"""AWS-like round trips for the emulator: how long each call waits, by service or by service and action.

A spec is a profile name, `service=ms` and `service:Action=ms` entries, or both (`aws,sqs=20`: the profile,
then overrides). `aws` is an in-region round trip per call, as assumed here (docs/developing/benchmark.md,
"AWS-like latency", says where the numbers come from): DynamoDB 5 ms, SQS 10 ms, S3 GET and HEAD 15 ms,
S3 PUT 25 ms. The emulator takes it from `--latency` or `RENDER_EMULATOR_LATENCY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENV = "RENDER_EMULATOR_LATENCY"
PROFILES: dict[str, dict[str, float]] = {
    "aws": {"dynamodb": 5, "sqs": 10, "s3": 15, "s3:PutObject": 25},
    "none": {},
}


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call by `service` or `service:Action` (the action's entry wins)."""

    ms: dict[str, float] = field(default_factory=dict)

    def seconds(self, service: str, action: str) -> float:
        return self.ms.get(f"{service}:{action}", self.ms.get(service, 0.0)) / 1000

    def __bool__(self) -> bool:
        return any(self.ms.values())

    def __str__(self) -> str:
        return ",".join(f"{key}={ms:g}" for key, ms in sorted(self.ms.items())) or "none"


def parse_latency(spec: str) -> Latency:
    """`aws`, `dynamodb=5,sqs=10`, `aws,s3:GetObject=40` -> a Latency; ValueError on an unknown profile."""
    ms: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            if key not in PROFILES:
                raise ValueError(f"unknown latency profile {key!r} (known: {', '.join(sorted(PROFILES))})")
            ms.update(PROFILES[key])
            continue
        ms[key.strip()] = float(value)
    return Latency(ms)
