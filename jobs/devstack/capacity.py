"""Capacity units as DynamoDB would bill them, metered inside the emulator from the items it really holds.

moto does not compute consumed capacity, so the emulator reads each written item before and after the
write and prices it by DynamoDB's published rules (docs/ARCHITECTURE.md, "What a job costs"):
- a write costs ceil(size / 1 KB) units, of the larger of the item before and after; a transactional write
  costs double; a write whose condition fails still costs the units of the item it was checked against;
- each global secondary index whose entry changes costs a write of the projected entry's size; an entry
  whose index key changes costs a delete of the old entry and a put of the new one; an entry the write does
  not change costs nothing (so projections and unchanged index attributes matter);
- a read costs ceil(size / 4 KB) units of the whole item, whatever attributes it asks for (a projection
  saves no units), half for an eventually consistent read, double in a transaction; a
  Query or Scan is billed for the items it evaluates, not those it returns: with a FilterExpression, or
  `Select=COUNT` (nothing returned), the emulator prices the same page read without them (`evaluated`).
Item sizes follow DynamoDB's rules: attribute names plus values (numbers about one byte per two digits).
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from typing import Any

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
READS = {"GetItem", "Query", "Scan", "TransactGetItems", "BatchGetItem"}


def _wire_bytes(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not an attribute value")


def value_size(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: e}) for e in v)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in v.items())
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / 4096))


class CapacityMeter:
    """Counts units per (table or `table/index`, read|write), and the items written, for one emulator."""

    def __init__(self, backend_for):
        self._backend_for = backend_for  # table name -> moto's table (None when unknown)
        self.units: Counter[tuple[str, str]] = Counter()
        self.writes: Counter[str] = Counter()  # per item kind (the sort key's prefix): how many item writes
        self.largest: Counter[str] = Counter()  # per item kind: the largest item written, in bytes
        self.bytes_written: Counter[str] = Counter()  # per table: the sizes of the items as written, summed

    def clear(self) -> None:
        self.units.clear()
        self.writes.clear()
        self.largest.clear()
        self.bytes_written.clear()

    def report(self) -> dict[str, Any]:
        return {
            "units": [{"target": t, "kind": k, "units": n} for (t, k), n in sorted(self.units.items())],
            "item_writes": dict(self.writes),
            "largest_item": dict(self.largest),
            "bytes_written": dict(self.bytes_written),
        }

    # --- writes --------------------------------------------------------------------------------------
    def keys_written(self, action: str, body: dict[str, Any]) -> list[tuple[str, dict, int]]:
        """(table, key, multiplier) of every item a write request touches."""
        if action in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(body["TableName"], self._key(body["TableName"], body.get("Key") or body.get("Item")), 1)]
        out = []
        if action == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                ((_, op),) = entry.items()
                out.append((op["TableName"], self._key(op["TableName"], op.get("Key") or op.get("Item")), 2))
        elif action == "BatchWriteItem":
            for table, requests in body.get("RequestItems", {}).items():
                for request in requests:
                    ((_, op),) = request.items()
                    out.append((table, self._key(table, op.get("Key") or op.get("Item")), 1))
        return out

    def snapshot(self, touched: list[tuple[str, dict, int]]) -> list[dict | None]:
        return [self._item(table, key) for table, key, _ in touched]

    def charge_writes(self, touched: list[tuple[str, dict, int]], before: list, after: list) -> None:
        for (table_name, _key, times), old, new in zip(touched, before, after, strict=True):
            table = self._backend_for(table_name)
            if table is None:
                continue
            sort = (new or old or {}).get(table.range_key_attr or "", {}).get("S", "")
            kind = sort.split("#")[0] or "item"
            self.writes[kind] += 1
            self.largest[kind] = max(self.largest[kind], item_size(new))
            self.bytes_written[table_name] += item_size(new) if new != old else 0
            self.units[(table_name, "write")] += times * write_units(max(item_size(old), item_size(new)))
            if old == new:
                continue  # a failed condition: the table write above is all it costs
            for index in table.global_indexes:
                was, now = _entry(table, index, old), _entry(table, index, new)
                if was == now:
                    continue
                target = f"{table_name}/{index.name}"
                if was and now and _index_key(index, was) == _index_key(index, now):
                    self.units[(target, "write")] += write_units(max(item_size(was), item_size(now)))
                    continue
                for entry in (was, now):
                    if entry:
                        self.units[(target, "write")] += write_units(item_size(entry))

    # --- reads ---------------------------------------------------------------------------------------
    def charge_read(
        self, action: str, body: dict[str, Any], response: dict[str, Any], evaluated: list | None = None
    ) -> None:
        """`evaluated`: the items a filtered or counted Query/Scan read (see `evaluation_request`)."""
        consistent = 1.0 if body.get("ConsistentRead") else 0.5
        if action == "GetItem":
            item = self._billed_item(body["TableName"], body["Key"], body, response.get("Item"))
            self.units[(body["TableName"], "read")] += consistent * read_units(item_size(item))
        elif action in ("Query", "Scan"):
            target = body["TableName"] + (f"/{body['IndexName']}" if body.get("IndexName") else "")
            items = response.get("Items", []) if evaluated is None else evaluated
            if "ScannedCount" in response:  # DynamoDB's own count of the items the page read, before its filter
                items = items[: response["ScannedCount"]]
            self.units[(target, "read")] += consistent * read_units(sum(item_size(i) for i in items))
        elif action == "TransactGetItems":
            for entry, got in zip(body.get("TransactItems", []), response.get("Responses", []), strict=False):
                get = entry["Get"]
                item = self._billed_item(get["TableName"], get["Key"], get, got.get("Item"))
                self.units[(get["TableName"], "read")] += 2 * read_units(item_size(item))
        elif action == "BatchGetItem":
            for table, request in body.get("RequestItems", {}).items():
                consistent = 1.0 if request.get("ConsistentRead") else 0.5  # per table in a batch
                items = response.get("Responses", {}).get(table, [])
                if _projected(request):
                    items = [i for i in (self._item(table, self._key(table, k)) for k in request["Keys"]) if i]
                for item in items:
                    self.units[(table, "read")] += consistent * read_units(item_size(item))

    def _billed_item(self, table: str, key: dict, request: dict[str, Any], returned: dict | None) -> dict | None:
        """The item a read is billed for: all of it, though the request asked for some of its attributes."""
        if returned is None or not _projected(request):
            return returned
        return self._item(table, self._key(table, key)) or returned

    @staticmethod
    def evaluation_request(action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The same Query/Scan page without its filter, projection and COUNT, so its items are the ones the
        request evaluated (and is billed for); None when the request returns what it evaluates."""
        if action not in ("Query", "Scan") or not ({"FilterExpression", "Select", "ProjectionExpression"} & set(body)):
            return None
        plain = {k: v for k, v in body.items() if k not in ("FilterExpression", "Select", "ProjectionExpression")}
        used = " ".join(str(plain.get(k, "")) for k in ("KeyConditionExpression",))
        names = {k: v for k, v in (plain.get("ExpressionAttributeNames") or {}).items() if k in used}
        values = {k: v for k, v in (plain.get("ExpressionAttributeValues") or {}).items() if k in used}
        plain.pop("ExpressionAttributeNames", None)
        plain.pop("ExpressionAttributeValues", None)
        if names:
            plain["ExpressionAttributeNames"] = names
        if values:
            plain["ExpressionAttributeValues"] = values
        return plain

    # --- moto's items --------------------------------------------------------------------------------
    def _key(self, table_name: str, item: dict | None) -> dict:
        table = self._backend_for(table_name)
        if table is None or not item:
            return {}
        return {a: item[a] for a in (table.hash_key_attr, table.range_key_attr) if a and a in item}

    def _item(self, table_name: str, key: dict) -> dict | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._backend_for(table_name)
        if table is None or table.hash_key_attr not in key:
            return None
        found = table.get_item(
            DynamoType(key[table.hash_key_attr]),
            DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None,
        )
        if found is None:
            return None
        # A copy of the item as the wire has it (moto leaves a binary inside a list as bytes: base64 here).
        return json.loads(json.dumps(found.to_json()["Attributes"], default=_wire_bytes))


def _projected(request: dict[str, Any]) -> bool:
    return "ProjectionExpression" in request or "AttributesToGet" in request


def _index_key(index, entry: dict) -> tuple:
    return tuple(json.dumps(entry.get(a), sort_keys=True) for a in index.schema_key_attrs)


def _entry(table, index, item: dict | None) -> dict | None:
    """The item's entry in the index as projected, or None when the item lacks the index's key."""
    if not item or any(a not in item for a in index.schema_key_attrs):
        return None
    projection = (index.projection or {}).get("ProjectionType", "ALL")
    if projection == "ALL":
        return item
    keep = {*table.table_key_attrs, *index.schema_key_attrs}
    if projection == "INCLUDE":
        keep |= set(index.projection.get("NonKeyAttributes", []))
    return {k: v for k, v in item.items() if k in keep}
