"""The render dead-letter queue: messages SQS moved there after maxReceiveCount receives (poison work).

Reads the Celery messages back into (task, args) so the sweeper can fail their jobs and operators can
list, replay (retry the job) or purge them with `manage.py dlq`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from jobs.adapters.aws import unavailable_as_503
from jobs.ports.values import DeadLetter


def decode_celery_message(raw: str) -> tuple[str | None, list]:
    """(task name, positional args) of a Celery message as kombu's SQS transport writes it; (None, []) if not."""
    try:
        envelope = json.loads(base64.b64decode(raw))
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        return envelope.get("headers", {}).get("task"), list(args)
    except (ValueError, KeyError, TypeError):
        return None, []


def _letter(message: dict) -> DeadLetter:
    task, args = decode_celery_message(message["Body"])
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        task=task,
        args=args,
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
    )


class DeadLetterQueue:
    def __init__(self, *, client, url: str):
        self._client = client
        self.url = url

    def receive(self, *, limit: int = 100, hide_seconds: int = 0) -> list[DeadLetter]:
        """Up to `limit` letters. With `hide_seconds=0` this is a peek: the letters stay visible."""
        letters: dict[str, DeadLetter] = {}
        while len(letters) < limit:
            with unavailable_as_503("SQS"):
                resp = self._client.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=min(10, limit - len(letters)),
                    VisibilityTimeout=hide_seconds,
                    WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["All"],
                )
            fresh = [m for m in resp.get("Messages", []) if m["MessageId"] not in letters]
            if not fresh:
                break  # empty, or only letters seen already (a peek sees the same ones again)
            for message in fresh:
                letters[message["MessageId"]] = _letter(message)
        return list(letters.values())

    def delete(self, letter: DeadLetter) -> None:
        with unavailable_as_503("SQS"):
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)

    def count(self) -> int:
        with unavailable_as_503("SQS"):
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def purge(self) -> None:
        with unavailable_as_503("SQS"):
            self._client.purge_queue(QueueUrl=self.url)
