"""The raw loop: the floor design's AWS calls, done by a minimal boto3 pipeline, for the bench to compare.

Per job: PutItem and SendMessage (the producer). Consumers: ReceiveMessage of up to 10, and per message a
conditional claim (UpdateItem), PutObject, a finishing UpdateItem and DeleteMessage. A job of many frames
is split into chunk messages; a chunk's consumer claims it, and per frame does a PutObject and an
UpdateItem guarded by the frame number; the chunk's last frame finishes it and counts it on the job item,
whose last chunk completes the job. No API, no Celery, no retries: the least a pipeline on these
services must do, run at the same concurrency against the same emulator as the project.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
from botocore.config import Config

from jobs.domain import Job, JobStatus, OutputFormat, Priority, Scene
from jobs.renderers.simulated import paint_frame

# One job, one frame: PutItem, SendMessage, ReceiveMessage, claim UpdateItem, PutObject, finish UpdateItem,
# DeleteMessage: the sequential round trips from submit to done, with no API in front (the bench measures it).
ROUND_TRIPS_PER_JOB = 7


class RawPipeline:
    def __init__(self, env: dict[str, str], *, consumers: int):
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        config = Config(max_pool_connections=max(10, consumers * 2), retries={"mode": "standard"})
        url = env["AWS_ENDPOINT_URL"]
        self.ddb = session.client("dynamodb", endpoint_url=url, config=config)
        self.sqs = session.client("sqs", endpoint_url=url, config=config)
        self.s3 = session.client(
            "s3",
            endpoint_url=url,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=config.max_pool_connections),
        )
        self.consumers = consumers
        suffix = uuid.uuid4().hex[:6]  # each run its own resources, so several runs share one emulator
        self.table, self.queue_name, self.bucket = f"raw-jobs-{suffix}", f"raw-work-{suffix}", f"raw-frames-{suffix}"
        self.finished: dict[str, float] = {}  # job id -> when it completed (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def create(self) -> None:
        self.ddb.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        self.queue = self.sqs.create_queue(QueueName=self.queue_name, Attributes={"VisibilityTimeout": "60"})[
            "QueueUrl"
        ]
        self.s3.create_bucket(Bucket=self.bucket)

    # --- producer ----------------------------------------------------------------------------------
    def submit(self, frames: int = 1, chunk_size: int = 1) -> str:
        job_id = uuid.uuid4().hex
        chunks = -(-frames // chunk_size)
        self.ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": job_id},
                "status": {"S": "QUEUED"},
                "chunks": {"N": str(chunks)},
                "created_at": {"S": datetime.now(UTC).isoformat()},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
        if chunks == 1:
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=f"{job_id} 0 1 {frames}")
            return job_id
        for start in range(0, chunks, 10):
            self.sqs.send_message_batch(
                QueueUrl=self.queue,
                Entries=[
                    {
                        "Id": str(c),
                        "MessageBody": f"{job_id} {c} {c * chunk_size + 1} {min(frames, (c + 1) * chunk_size)}",
                    }
                    for c in range(start, min(chunks, start + 10))
                ],
            )
        return job_id

    # --- consumers ---------------------------------------------------------------------------------
    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._consume, daemon=True) for _ in range(self.consumers)]
        for t in threads:
            t.start()
        return threads

    def stop(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        for t in threads:
            t.join(timeout=30)

    def _consume(self) -> None:
        while not self._stop.is_set():
            resp = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in resp.get("Messages", []):
                job_id, index, first, last = message["Body"].split()
                # A duplicate delivery (at least once: a loaded machine outlasts a visibility timeout) loses its claim.
                with contextlib.suppress(self.ddb.exceptions.ConditionalCheckFailedException):
                    self._work(job_id, int(index), int(first), int(last))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    @staticmethod
    def _paint(job_id: str, first: int, last: int, frame: int) -> bytes:
        """The frame the project's workers paint at render time 0 (jobs/renderers/simulated.py): the same job."""
        now = datetime.now(UTC)
        job = Job(
            id=job_id,
            owner="raw",
            scene=Scene(name="bench", width=64, height=64, output_format=OutputFormat.PNG, samples=64),
            frame_start=first,
            frame_end=last,
            priority=Priority.NORMAL,
            status=JobStatus.PROCESSING,
            created_at=now,
            updated_at=now,
        )
        return paint_frame(job, frame)

    def _work(self, job_id: str, index: int, first: int, last: int) -> None:
        token = uuid.uuid4().hex
        whole = first == last and index == 0
        key = {"pk": {"S": job_id if whole else f"{job_id}#{index}"}}
        claim: dict = {
            "TableName": self.table,
            "Key": key,
            "UpdateExpression": "SET #s = :p, lease = :t",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":p": {"S": "PROCESSING"}, ":t": {"S": token}},
        }
        if whole:
            claim["ConditionExpression"] = "#s = :q"
            claim["ExpressionAttributeValues"][":q"] = {"S": "QUEUED"}
        else:
            claim["ConditionExpression"] = "attribute_not_exists(lease)"
        self.ddb.update_item(**claim)
        for frame in range(first, last + 1):
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{job_id}/{frame:06d}.png",
                Body=self._paint(job_id, first, last, frame),
                ContentType="image/png",
            )
            if frame < last:
                self.ddb.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET done = :n",
                    ConditionExpression="lease = :t AND (attribute_not_exists(done) OR done = :prev)",
                    ExpressionAttributeValues={
                        ":n": {"N": str(frame)},
                        ":prev": {"N": str(frame - 1)},
                        ":t": {"S": token},
                    },
                )
        now = {"S": datetime.now(UTC).isoformat()}
        self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET #s = :c, finished_at = :now REMOVE lease",
            ConditionExpression="lease = :t",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": {"S": "COMPLETED"}, ":t": {"S": token}, ":now": now},
        )
        if not whole:
            job = self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": job_id}},
                UpdateExpression="ADD done_chunks :i",
                ExpressionAttributeValues={":i": {"NS": [str(index)]}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
            if len(job["done_chunks"]["NS"]) < int(job["chunks"]["N"]):
                return
            self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": job_id}},
                UpdateExpression="SET #s = :c, finished_at = :now",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":c": {"S": "COMPLETED"}, ":now": now},
            )
        with self._lock:
            self.finished[job_id] = time.monotonic()

    def wait(self, ids: set[str], timeout: float = 600, *, tick: Callable[[], None] = lambda: None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if ids <= set(self.finished):
                    return
            tick()
            time.sleep(0.05)
        raise TimeoutError(f"raw pipeline: {len(ids - set(self.finished))} of {len(ids)} jobs unfinished")


def raw_jobs(
    env: dict[str, str],
    *,
    jobs: int,
    clients: int,
    consumers: int,
    alone: int = 0,
    measure: Callable[[], None] = lambda: None,
) -> dict:
    """N one-frame jobs through the raw loop: jobs/s (first submit to last completion). First `alone` jobs one at
    a time on idle consumers: `windows`, (submitted, done) in epoch seconds each, for the bench to find their
    calls in the emulator's trace; `measure` is called just before the N jobs (the bench zeroes its counts)."""
    raw = RawPipeline(env, consumers=consumers)
    raw.create()
    threads = raw.start()
    try:
        warm = {raw.submit() for _ in range(min(10, jobs))}
        raw.wait(warm)
        windows = []
        for _ in range(alone):
            time.sleep(0.5)  # every consumer back in its long poll
            submitted = time.time()
            job_id = raw.submit()
            raw.wait({job_id})
            windows.append((submitted, time.time() - (time.monotonic() - raw.finished[job_id])))
        measure()
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            ids = set(pool.map(lambda _: raw.submit(), range(jobs)))
        raw.wait(ids)
        elapsed = max(raw.finished[i] for i in ids) - started
        return {"jobs_per_second": jobs / elapsed, "seconds": elapsed, "windows": windows}
    finally:
        raw.stop(threads)


def raw_frames(env: dict[str, str], *, frames: int, chunk_size: int, consumers: int) -> float:
    """Seconds from submit to completion of one job of `frames` frames in chunks of `chunk_size`."""
    raw = RawPipeline(env, consumers=consumers)
    raw.create()
    threads = raw.start()
    try:
        raw.wait({raw.submit()})
        started = time.monotonic()
        job_id = raw.submit(frames=frames, chunk_size=chunk_size)
        raw.wait({job_id})
        return raw.finished[job_id] - started
    finally:
        raw.stop(threads)
