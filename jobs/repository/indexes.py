"""Reads and moves through the indexes: an owner's listings (gsi1, gsi3) and the sweeper's due index (gsi2).

Used by DynamoJobRepository; docs/ARCHITECTURE.md has the index layout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.adapters.aws import unavailable_as_503
from jobs.domain import JobStatus
from jobs.errors import InvalidCursor, JobStateConflict
from jobs.ports.values import JobPage, Overdue
from jobs.repository.cursor import decode_cursor, encode_cursor
from jobs.repository.dynamo import batch_get, conditional_update, query_page
from jobs.repository.items import (
    chunk_key,
    deserialize,
    due_id,
    due_partition,
    due_sort_key,
    iso,
    item_to_job,
    job_key,
    owner_partition,
)

DEFAULT_PAGE = 20


def list_for_owner(
    client, table: str, owner: str, *, status: JobStatus | None, cursor: str | None, limit: int | None
) -> JobPage:
    """An owner's jobs, newest first; with a status, from gsi3 (owner, `<status>#<id>`), so pages are full.

    Both indexes project keys only: the page's items come from one BatchGetItem, so they show the jobs as
    they are now (a job whose state moved on since the index was read is shown in its new state).

    A cursor carries the listing's status and limit: alone it continues the same listing, and with
    another status it is refused.
    """
    scope = f"owner:{owner}"
    start = None
    if cursor:
        start, listing = decode_cursor(cursor, scope)
        if status is not None and listing.get("status") not in (None, str(status)):
            raise InvalidCursor("This cursor continues a listing with another status filter.")
        status = JobStatus(listing["status"]) if listing.get("status") else status
        limit = limit or int(listing.get("limit") or DEFAULT_PAGE)
    limit = limit or DEFAULT_PAGE
    if status is None:
        index, sort, values = "gsi1", "gsi1pk = :owner", {":owner": {"S": owner_partition(owner)}}
    else:
        index, sort = "gsi3", "gsi3pk = :owner AND begins_with(gsi3sk, :status)"
        values = {":owner": {"S": owner_partition(owner)}, ":status": {"S": f"{status}#"}}
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": sort,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit + 1,  # one more tells whether another page exists
    }
    entries, _ = query_page(client, params, start=start)
    more = len(entries) > limit
    entries = entries[:limit]
    next_cursor = None
    if more:
        last = entries[-1]
        key = {k: {"S": last[k]} for k in ("pk", "sk", f"{index}pk", f"{index}sk")}
        next_cursor = encode_cursor(key, scope, status=str(status) if status else None, limit=limit)
    keys = [{"pk": {"S": e["pk"]}, "sk": {"S": e["sk"]}} for e in entries]
    return JobPage(jobs=[item_to_job(i) for i in batch_get(client, table, keys)], cursor=next_cursor)


def overdue(client, table: str, kind: str, status: JobStatus, *, now: datetime, limit: int) -> list[Overdue]:
    """Jobs (kind JOB) or chunk items (kind TASK) in `status` whose gsi2 due time is before `now`."""
    partition = due_partition(kind, status)
    with unavailable_as_503("DynamoDB"):
        resp = client.query(
            TableName=table,
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :key AND gsi2sk < :now",
            ExpressionAttributeValues={":key": {"S": partition}, ":now": {"S": iso(now)}},
            Limit=limit,
        )
    out = []
    for raw in resp.get("Items", []):
        item = deserialize(raw)
        out.append(
            Overdue(
                job_id=item["job_id"] if kind == "TASK" else item["id"],
                index=int(item["index"]) if kind == "TASK" else None,
                status=status,
                attempt=int(item["attempt"]),
                marker=(item["gsi2pk"], item["gsi2sk"]),
            )
        )
    return out


def postpone(client, table: str, work: Overdue, *, until: datetime) -> bool:
    """Move an overdue item's due time; False if someone else moved it (or its state) first."""
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
