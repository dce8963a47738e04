"""The farm's live view in the table: workers' heartbeat items, and counts of running work by state.

Heartbeats: `pk=WORKERS`, `sk=WORKER#<worker id>`, one item per worker (pool) process, put every
RENDER_WORKER_HEARTBEAT_SECONDS with `expires_at` three beats ahead (DynamoDB's TTL deletes it within a
day or two; reads skip expired ones, so a killed worker drops out of the listing within its TTL). One
partition for every worker: listing them is one Query, and a write every few seconds per worker is far
below a partition's limits. Nothing else uses the `WORKERS` key, so no other item can clash with it.

Jobs by state: every job has an entry in the sweeper's index gsi2 (`JOB#<shard>`) from its put, and the
sweeper moves its position in each shard past finished jobs only, so every unfinished job is among the
entries from that position on: those (the jobs of the last grace period, and the unfinished ones) are
read and counted by state, up to COUNT_CAP entries (beyond that the counts are a lower bound, and say
so). Finished jobs (COMPLETED, FAILED, CANCELLED) are not counted here (they only grow: the
`JobsFinished` metric by outcome counts them).
"""

from __future__ import annotations

from datetime import datetime

from jobs.adapters.aws import unavailable_as_503
from jobs.ports.values import WorkerBeat
from jobs.repository import partitions as P
from jobs.repository.indexes import unfinished_by_state
from jobs.repository.items import from_seconds, iso, parse_iso

PARTITION = P.WORKERS
COUNT_CAP = 20_000  # index entries the count of jobs by state reads at most (10,000 read units at most)


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

    def jobs_by_state(self) -> tuple[dict[str, int], bool]:
        """Unfinished jobs by state, and whether every one was counted (indexes.unfinished_by_state)."""
        return unfinished_by_state(self._client, self._table, cap=COUNT_CAP)


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
