"""Per-owner slots of webhook deliveries in flight: one item per owner, each slot a lease (jobs.ports.DeliverySlots).

`pk=HOOKSLOTS#<owner>, sk=HOOKSLOTS`, with `s<i>` (slot i's lease, epoch seconds) and `t<i>` (its holder's
token) for i below the limit. A slot is taken by one conditional UpdateItem (`attribute_not_exists(s<i>) OR
s<i> < :now`), so two workers never hold the same slot, and a slot whose holder died (SIGKILL, a lost task) is
free again once its lease lapses; only its holder's token releases it early. A lost condition returns the item
as it stands, so the next try goes straight to a slot that is free or lapsed: one write while a slot is free,
at most `limit` when every slot is held. The item expires (TTL) a day after its last take.
"""

from __future__ import annotations

import contextlib
import zlib
from datetime import datetime, timedelta
from typing import Any

from jobs.errors import JobNotFound, JobStateConflict, StaleWrite
from jobs.repository import partitions as P
from jobs.repository.dynamo import conditional_update
from jobs.repository.items import epoch, seconds

KEEP_IDLE = timedelta(days=1)  # an owner's item outlives its last take by this long (DynamoDB TTL)


def slots_key(owner: str) -> dict[str, Any]:
    return {"pk": {"S": P.HOOKSLOTS + owner}, "sk": {"S": P.fixed_sort_key(P.HOOKSLOTS)}}


def _free(item: dict[str, Any], slot: int, now: datetime) -> bool:
    lease = item.get(f"s{slot}")
    return lease is None or lease < seconds(now)


class DynamoDeliverySlots:
    """Implements jobs.ports.DeliverySlots."""

    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def take(self, owner: str, *, limit: int, token: str, now: datetime, until: datetime) -> int | None:
        # Contenders start at different slots (by their token), so they rarely try the same one first.
        slot = zlib.crc32(token.encode()) % limit
        tried: set[int] = set()
        while True:
            try:
                conditional_update(
                    self._client,
                    self._table,
                    slots_key(owner),
                    f"SET s{slot} = :until, t{slot} = :token, expires_at = :ttl",
                    condition=f"attribute_not_exists(s{slot}) OR s{slot} < :now",
                    values={
                        ":until": seconds(until),
                        ":token": token,
                        ":now": seconds(now),
                        ":ttl": epoch(until + KEEP_IDLE),
                    },
                    returns=False,
                )
                return slot
            except StaleWrite as lost:
                tried.add(slot)
                free = [i for i in range(limit) if i not in tried and _free(lost.current, i, now)]
                if not free:
                    return None
                slot = free[0]

    def release(self, owner: str, slot: int, *, token: str) -> None:
        # A lost condition: its lease lapsed and another try holds it now (or the item expired): not ours.
        with contextlib.suppress(JobStateConflict, JobNotFound):
            conditional_update(
                self._client,
                self._table,
                slots_key(owner),
                f"SET s{slot} = :free REMOVE t{slot}",
                condition=f"t{slot} = :token",
                values={":free": 0, ":token": token},
                returns=False,
            )
