"""Reads and moves through the indexes: an owner's listing (gsi1) and the sweeper's due index (gsi2), with the
sweeper's position in each shard of it.

Used by DynamoJobRepository; docs/ARCHITECTURE.md has the index layout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.domain import Job, JobStatus
from jobs.errors import InvalidCursor, JobStateConflict
from jobs.ports.values import JobPage, Overdue
from jobs.repository import partitions as P
from jobs.repository.cursor import decode_cursor, encode_cursor
from jobs.repository.dynamo import batch_get, conditional_update, query_page
from jobs.repository.items import (
    chunk_key,
    deserialize,
    due_id,
    due_partitions,
    due_sort_key,
    iso,
    item_to_job,
    job_key,
    owner_partitions,
)

DEFAULT_PAGE = 20
FILTER_BATCH = 100  # entries a status-filtered listing reads from each shard per round
FILTER_READS = 1000  # entries a status-filtered listing reads per request at most (then a short page), by default


def list_for_owner(
    client,
    table: str,
    owner: str,
    *,
    status: JobStatus | None,
    cursor: str | None,
    limit: int | None,
    filter_reads: int | None = None,
) -> JobPage:
    """An owner's jobs, newest first, from gsi1 (owner, `<created_at>#<id>`); with a status, filtered by the
    state of each job's item as read now.

    The owner's jobs are spread over OWNER_SHARDS partitions (items.py): every shard is queried for one
    page more than asked, the entries are merged by sort key (newest first), and the cursor is the last sort
    key shown, so the next page asks each shard for what sorts below it. gsi1 projects keys only and is
    written once per job (a state change writes no index entry): the page's items come from one
    BatchGetItem, so they show the jobs as they are now, and a status filter is applied to them. A filtered
    listing reads at most `filter_reads` (default FILTER_READS) entries per request: when that many did not
    fill the page, the page is short and its cursor continues below the last job read (like DynamoDB's own
    filtered pages). A cursor carries the listing's status and limit: alone it continues the same listing,
    and with another status it is refused.
    """
    scope = f"owner:{owner}"
    below = None
    if cursor:
        position, listing = decode_cursor(cursor, scope)
        if status is not None and listing.get("status") not in (None, str(status)):
            raise InvalidCursor("This cursor continues a listing with another status filter.")
        status = JobStatus(listing["status"]) if listing.get("status") else status
        limit = limit or int(listing.get("limit") or DEFAULT_PAGE)
        below = position.get("below")
        if not isinstance(below, str):
            raise InvalidCursor()
    limit = limit or DEFAULT_PAGE
    reads = filter_reads or FILTER_READS
    # A filtered listing reads in larger rounds (most entries it reads may be left out), within its reads.
    batch = limit + 1 if status is None else min(max(limit + 1, FILTER_BATCH), reads)
    page: list[tuple[str, Job]] = []  # (sort key, job), newest first, one more than the page if there is more
    read, exhausted = 0, False
    while len(page) <= limit and not exhausted:
        if read >= reads:
            break  # a short page: the cursor continues below the last entry read
        entries, exhausted = _merged(client, table, owner, below=below, limit=batch)
        keys = [{"pk": {"S": e["pk"]}, "sk": {"S": e["sk"]}} for e in entries]
        found = {item["id"]: item_to_job(item) for item in batch_get(client, table, keys)}
        for entry in entries:
            read += 1
            below = entry["gsi1sk"]
            job = found.get(entry["pk"].removeprefix(P.JOB))
            if job is not None and (status is None or job.status is status):
                page.append((below, job))
                if len(page) > limit:
                    break
        exhausted = exhausted or not entries
    if len(page) > limit:
        page = page[:limit]
        below = page[-1][0]
    elif exhausted:
        below = None
    next_cursor = None
    if below is not None:
        next_cursor = encode_cursor({"below": below}, scope, status=str(status) if status else None, limit=limit)
    return JobPage(jobs=[job for _, job in page], cursor=next_cursor)


def _merged(client, table: str, owner: str, *, below: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` entries of the owner's shards below `below`, merged newest first, and whether that is
    all there is (every shard answered fewer than asked and nothing was cut)."""
    entries: list[dict[str, Any]] = []
    full = False
    for partition in owner_partitions(owner):
        got = _shard_page(client, table, partition, below=below, limit=limit)
        full = full or len(got) >= limit
        entries += got
    entries.sort(key=lambda e: e["gsi1sk"], reverse=True)
    return entries[:limit], not full and len(entries) <= limit


def _shard_page(client, table: str, partition: str, *, below: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` entries of one shard, newest first, whose sort key is below `below` (if given)."""
    values: dict[str, Any] = {":owner": {"S": partition}}
    condition = "gsi1pk = :owner"
    if below:
        condition += " AND gsi1sk < :below"
        values[":below"] = {"S": below}
    params = {
        "TableName": table,
        "IndexName": "gsi1",
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit,
    }
    entries, _ = query_page(client, params, start=None)
    return entries


def overdue(client, table: str, kind: str, *, before: datetime, limit: int) -> list[Overdue]:
    """Entries of one kind of work (JOB or TASK) whose grace started before `before` and that the sweeper has
    not passed yet (its position in each shard, `advance`), up to `limit` a shard, oldest first within each:
    each with the state of its item as read now (one BatchGetItem a page; None when the item is gone).

    Every job and chunk has its entry from its put until its item expires (items.due_index), so what the
    sweeper has passed is never read again; an entry it postpones moves past its position."""
    partitions = due_partitions(kind)
    positions = _positions(client, table, partitions)
    entries = []
    for partition in partitions:
        since = positions.get(partition, _START)
        with unavailable_as_503("DynamoDB"):
            resp = client.query(
                TableName=table,
                IndexName="gsi2",
                KeyConditionExpression="gsi2pk = :key AND gsi2sk BETWEEN :since AND :before",
                ExpressionAttributeValues={
                    ":key": {"S": partition},
                    ":since": {"S": since},
                    ":before": {"S": iso(before)},
                },
                Limit=limit + 1,
            )
        entries += [e for e in map(deserialize, resp.get("Items", [])) if e["gsi2sk"] != since][:limit]
    keys = [job_key(e["id"]) if kind == P.JOB_KIND else chunk_key(e["job_id"], int(e["index"])) for e in entries]
    items = {(i["pk"], i["sk"]): i for i in batch_get(client, table, keys)}
    out = []
    for entry, key in zip(entries, keys, strict=True):
        item = items.get((key["pk"]["S"], key["sk"]["S"]))
        out.append(
            Overdue(
                job_id=entry["job_id"] if kind == P.CHUNK_KIND else entry["id"],
                index=int(entry["index"]) if kind == P.CHUNK_KIND else None,
                status=JobStatus(item["status"]) if item else None,
                attempt=int(item["attempt"]) if item else int(entry["attempt"]),
                marker=(entry["gsi2pk"], entry["gsi2sk"]),
            )
        )
    return out


# The sweeper's position in a shard of gsi2: `pk=SWEEP#<gsi2pk>, sk=SWEEP`, `swept_to` the last sort key it
# passed (an ISO time and an id: any real key sorts after _START).
_START = "0"
_SWEEP_SK = P.fixed_sort_key(P.SWEEP)


def _position_key(partition: str) -> dict[str, Any]:
    return {"pk": {"S": P.SWEEP + partition}, "sk": {"S": _SWEEP_SK}}


def _positions(client, table: str, partitions: list[str]) -> dict[str, str]:
    found = batch_get(client, table, [_position_key(p) for p in partitions])
    return {item["pk"].removeprefix(P.SWEEP): item["swept_to"] for item in found if "swept_to" in item}


def advance(client, table: str, passed: list[Overdue]) -> None:
    """Move the sweeper's position in each shard past the entries it has looked at (only ever forward, so two
    sweepers at once cannot move it back)."""
    reached: dict[str, str] = {}
    for work in passed:
        partition, position = work.marker
        reached[partition] = max(reached.get(partition, _START), position)
    for partition, position in reached.items():
        try:
            with unavailable_as_503("DynamoDB"):
                client.update_item(
                    TableName=table,
                    Key=_position_key(partition),
                    UpdateExpression="SET swept_to = :to",
                    ConditionExpression="attribute_not_exists(swept_to) OR swept_to < :to",
                    ExpressionAttributeValues={":to": {"S": position}},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise  # else another sweeper got further


def unfinished_by_state(client, table: str, *, cap: int) -> tuple[dict[str, int], bool]:
    """Jobs QUEUED, PROCESSING or CANCELLING, counted from the job entries the sweeper has not passed (every
    unfinished job is among them: the sweeper passes only finished ones and moves the others ahead), and
    whether that is all of them (False when more than `cap` entries were there to read)."""
    counts = {str(s): 0 for s in (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.CANCELLING)}
    partitions = due_partitions(P.JOB_KIND)
    positions = _positions(client, table, partitions)
    read = 0
    for partition in partitions:
        params = {
            "TableName": table,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :key AND gsi2sk > :since",
            "ExpressionAttributeValues": {":key": {"S": partition}, ":since": {"S": positions.get(partition, _START)}},
        }
        start = None
        while True:
            entries, start = query_page(client, params, start=start)
            read += len(entries)
            for item in batch_get(client, table, [job_key(e["id"]) for e in entries]):
                if item.get("status") in counts:
                    counts[item["status"]] += 1
            if read > cap:
                return counts, False
            if start is None:
                break
    return counts, True


def postpone(client, table: str, work: Overdue, *, until: datetime) -> bool:
    """Start the entry's grace period again at `until` (the sweeper looks at it once more after that); False
    if someone else moved it first."""
    key = job_key(work.job_id) if work.index is None else chunk_key(work.job_id, work.index)
    try:
        conditional_update(
            client,
            table,
            key,
            "SET gsi2sk = :next",
            condition="gsi2pk = :key AND gsi2sk = :due",
            values={
                ":next": due_sort_key(until, due_id(work.job_id, work.index)),
                ":key": work.marker[0],
                ":due": work.marker[1],
            },
        )
    except JobStateConflict:
        return False
    return True
