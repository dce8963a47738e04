"""The bench's cost model: what the AWS requests of a measured run would cost, per job or per frame.

DynamoDB write and read units come from the emulator's capacity meter (jobs/devstack/capacity.py: the
sizes of the items the run really wrote, each index's projection, transactions double); SQS and S3 from
its request counts. Prices are AWS list prices, us-east-1, on-demand (docs/ARCHITECTURE.md, "What a job
costs", has the formula).
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import dataclass

# US dollars per million requests or request units.
PRICE_WRITE_UNIT = 0.625  # DynamoDB on-demand write request unit
PRICE_READ_UNIT = 0.125  # DynamoDB on-demand read request unit
PRICE_SQS_REQUEST = 0.40  # SQS standard queue, per request (each 64 KB of payload)
PRICE_S3_PUT = 5.0  # S3 Standard PUT, COPY, POST, LIST
PRICE_S3_GET = 0.4  # S3 Standard GET, HEAD and others
S3_PUT_ACTIONS = {"PutObject", "CopyObject", "ListObjectsV2", "ListObjects", "CreateMultipartUpload", "UploadPart"}


@dataclass(frozen=True)
class Cost:
    write_units: float
    read_units: float
    write_units_by_target: dict[str, float]
    sqs: float
    s3_put: float
    s3_get: float

    @property
    def dollars_per_million(self) -> float:
        return (
            self.write_units * PRICE_WRITE_UNIT
            + self.read_units * PRICE_READ_UNIT
            + self.sqs * PRICE_SQS_REQUEST
            + self.s3_put * PRICE_S3_PUT
            + self.s3_get * PRICE_S3_GET
        )

    def lines(self, unit: str) -> list[str]:
        targets = ", ".join(f"{t} {n:.2f}" for t, n in sorted(self.write_units_by_target.items()))
        return [
            f"DynamoDB write units per {unit}: {self.write_units:.2f} ({targets})",
            f"DynamoDB read units per {unit}: {self.read_units:.2f}; SQS requests {self.sqs:.2f}; "
            f"S3 PUT {self.s3_put:.2f}, GET/HEAD {self.s3_get:.2f}",
            f"orchestration: ${self.dollars_per_million:.2f} per million {unit}s",
        ]


def capacity(endpoint: str) -> list[dict]:
    with urllib.request.urlopen(f"{endpoint}/_emulator/capacity", timeout=5) as resp:
        return json.load(resp)["units"]


def cost_of(units: list[dict], counts: Counter, per: float, *, tables: tuple[str, ...]) -> Cost:
    """The cost of a run's requests divided by `per` (jobs or frames), counting only `tables`' units."""
    mine = [u for u in units if u["target"].split("/")[0].startswith(tables)]
    by_target: Counter[str] = Counter()
    for u in mine:
        if u["kind"] == "write":
            by_target[u["target"].split("/", 1)[-1] if "/" in u["target"] else "table"] += u["units"] / per
    sqs = sum(n for (service, _), n in counts.items() if service == "sqs")
    s3_put = sum(n for (service, action), n in counts.items() if service == "s3" and action in S3_PUT_ACTIONS)
    s3_get = sum(n for (service, action), n in counts.items() if service == "s3" and action not in S3_PUT_ACTIONS)
    return Cost(
        write_units=sum(by_target.values()),
        read_units=sum(u["units"] for u in mine if u["kind"] == "read") / per,
        write_units_by_target=dict(by_target),
        sqs=sqs / per,
        s3_put=s3_put / per,
        s3_get=s3_get / per,
    )


def bytes_written(endpoint: str) -> dict[str, int]:
    """Per table: the sizes of the items as each write left them, summed (DynamoDB's sizing)."""
    with urllib.request.urlopen(f"{endpoint}/_emulator/capacity", timeout=5) as resp:
        return json.load(resp).get("bytes_written", {})


def largest_items(endpoint: str) -> dict[str, int]:
    """The largest item written of each kind (the sort key's prefix), in bytes as DynamoDB sizes them."""
    with urllib.request.urlopen(f"{endpoint}/_emulator/capacity", timeout=5) as resp:
        return json.load(resp).get("largest_item", {})
