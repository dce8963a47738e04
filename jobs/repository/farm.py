"""The farm's live view in the table: workers' heartbeat items, and counts of running work by state.

Heartbeats: `pk=WORKERS`, `sk=WORKER#<worker id>`, one item per worker (pool) process, put every
RENDER_WORKER_HEARTBEAT_SECONDS with `expires_at` three beats ahead (DynamoDB's TTL deletes it within a
day or two; reads skip expired ones, so a killed worker drops out of the listing within its TTL). One
partition for every worker: listing them is one Query, and a write every few seconds per worker is far
below a partition's limits. Nothing else uses the `WORKERS` key, so no other item can clash with it.

Jobs by state: the sweeper's sparse index gsi2 already holds every job that is QUEUED, PROCESSING or
CANCELLING (partition `JOB#<status>`), so a `Select=COUNT` Query per state counts them reading only
those items. Finished jobs (COMPLETED, FAILED, CANCELLED) are not counted here (they only grow: the
`JobsFinished` metric by outcome counts them).
"""

from __future__ import annotations

from datetime import datetime

from jobs.adapters.aws import unavailable_as_503
from jobs.domain import JobStatus
from jobs.ports.values import WorkerBeat
from jobs.repository import partitions as P
from jobs.repository.items import due_partitions, from_seconds, iso, parse_iso

PARTITION = P.WORKERS
ACTIVE_STATES = (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.CANCELLING)


class DynamoFarm:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def beat(self, beat: WorkerBeat) -> None:
        item = {
            "pk": {"S": PARTITION},
            "sk": {"S": P.WORKER + beat.id},
            "id": {"S": beat.id},
            "host": {"S": beat.host},
            "pid": {"N": str(beat.pid)},
            "version": {"S": beat.version},
            "started_at": {"S": iso(beat.started_at)},
            "beat_at": {"S": iso(beat.beat_at)},
            "expires_at": {"N": str(int(beat.expires_at.timestamp()))},
            "frames_done": {"N": str(beat.frames_done)},
            "frames_total": {"N": str(beat.frames_total)},
        }
        if beat.job_id:
            item["job_id"] = {"S": beat.job_id}
            item["attempt"] = {"N": str(beat.attempt or 0)}
            if beat.chunk is not None:
                item["chunk"] = {"N": str(beat.chunk)}
        # A plain put: the item is this process's own, and the last beat is the truth.
        self._client.put_item(TableName=self._table, Item=item)

    def workers(self, *, now: datetime) -> list[WorkerBeat]:
        beats, start = [], None
        with unavailable_as_503("DynamoDB"):
            while True:
                resp = self._client.query(
                    TableName=self._table,
                    KeyConditionExpression="pk = :pk",
                    FilterExpression="expires_at > :now",
                    ExpressionAttributeValues={":pk": {"S": PARTITION}, ":now": {"N": str(int(now.timestamp()))}},
                    **({"ExclusiveStartKey": start} if start else {}),
                )
                beats += [_beat(item) for item in resp["Items"]]
                start = resp.get("LastEvaluatedKey")
                if not start:
                    return sorted(beats, key=lambda b: (b.host, b.started_at, b.id))

    def jobs_by_state(self) -> dict[str, int]:
        counts = {}
        with unavailable_as_503("DynamoDB"):
            for status in ACTIVE_STATES:
                total = 0
                for partition in due_partitions(P.JOB_KIND, status):
                    start = None
                    while True:
                        resp = self._client.query(
                            TableName=self._table,
                            IndexName="gsi2",
                            KeyConditionExpression="gsi2pk = :key",
                            ExpressionAttributeValues={":key": {"S": partition}},
                            Select="COUNT",
                            **({"ExclusiveStartKey": start} if start else {}),
                        )
                        total += resp["Count"]
                        start = resp.get("LastEvaluatedKey")
                        if not start:
                            break
                counts[str(status)] = total
        return counts


def _beat(item: dict) -> WorkerBeat:
    def s(name):
        return item[name]["S"] if name in item else None

    def n(name):
        return int(item[name]["N"]) if name in item else None

    return WorkerBeat(
        id=s("id"),
        host=s("host"),
        pid=n("pid"),
        version=s("version"),
        started_at=parse_iso(s("started_at")),
        beat_at=parse_iso(s("beat_at")),
        expires_at=from_seconds(n("expires_at")),
        job_id=s("job_id"),
        chunk=n("chunk"),
        attempt=n("attempt"),
        frames_done=n("frames_done") or 0,
        frames_total=n("frames_total") or 0,
    )
