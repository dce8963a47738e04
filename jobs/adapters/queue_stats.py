"""Depths of the render queues and the DLQ for the farm status: SQS queue attributes, plus the age of the
oldest message, which SQS publishes only to CloudWatch (`AWS/SQS ApproximateAgeOfOldestMessage`, one
datapoint a minute; None where CloudWatch has none, as in the local emulator).

Nothing here receives a message: a peek would count as a receive and push work toward the DLQ.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from jobs.adapters.aws import unavailable_as_503
from jobs.domain import utcnow
from jobs.ports.values import QueueDepth

log = logging.getLogger(__name__)
ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class SqsQueueStats:
    def __init__(self, *, sqs, cloudwatch, queues: dict[str, str], urls: dict[str, str], dlq_name: str, dlq_url: str):
        self._sqs, self._cloudwatch = sqs, cloudwatch
        self._names = queues  # priority -> queue name
        self._urls = dict(urls)  # priority -> URL, when configured (AWS); else looked up by name once
        self._dlq_name, self._dlq_url = dlq_name, dlq_url

    def queues(self) -> dict[str, QueueDepth]:
        ages = self._oldest_ages([*self._names.values()])
        return {p: self._depth(name, self._url(p, name), ages.get(name)) for p, name in self._names.items()}

    def dead_letters(self) -> QueueDepth:
        if not self._dlq_url:
            with unavailable_as_503("SQS"):
                self._dlq_url = self._sqs.get_queue_url(QueueName=self._dlq_name)["QueueUrl"]
        return self._depth(self._dlq_name, self._dlq_url, None)

    def _url(self, priority: str, name: str) -> str:
        if not self._urls.get(priority):
            with unavailable_as_503("SQS"):
                self._urls[priority] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[priority]

    def _depth(self, name: str, url: str, oldest_age: float | None) -> QueueDepth:
        with unavailable_as_503("SQS"):
            attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=ATTRIBUTES)["Attributes"]
        return QueueDepth(
            name=name,
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
            oldest_age=oldest_age,
        )

    def _oldest_ages(self, names: list[str]) -> dict[str, float]:
        """CloudWatch's latest age of the oldest message per queue; {} when it cannot say (not fatal)."""
        now = utcnow()
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": name}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for i, name in enumerate(names)
        ]
        try:
            resp = self._cloudwatch.get_metric_data(
                MetricDataQueries=queries,
                StartTime=now - timedelta(minutes=5),
                EndTime=now + timedelta(minutes=1),  # the current minute's period included
                ScanBy="TimestampDescending",
            )
        except Exception:  # an optional figure: the rest of the status still helps
            log.info("CloudWatch gave no age of the oldest messages", exc_info=True)
            return {}
        ages = {}
        for result in resp.get("MetricDataResults", []):
            if result.get("Values"):
                ages[names[int(result["Id"][1:])]] = float(result["Values"][0])
        return ages
