"""API keys by the SHA-256 of the key; the key itself is never stored.

A key is found by its hash alone, so no secret is ever compared in code: the only comparison is
DynamoDB's lookup of a hash of a 256-bit random key, whose timing reveals nothing about other keys.

Layout, in the one table:
- `pk=APIKEY#<hash>, sk=APIKEY`: `owner`, `created_at`, `key_id`, `scopes` (a list, maybe empty) and,
  once revoked, `revoked_at`. The key id is the hash's first 16 hex digits (64 bits: no two keys of a
  deployment share one in practice; a lookup by id that finds two refuses to choose). It names a key in
  listings, logs and rate limits, and says nothing about the key itself.
- gsi1 `APIKEYS#<owner>` / `<created>#<hash>`: an owner's keys, oldest first (revoke or list by owner).
- gsi2 `APIKEYS` / `<key id>`: every key in one fixed partition, so listing all keys and finding one by
  its id are Queries, never a Scan. gsi2 otherwise indexes work that could get stuck; the sweeper only
  reads its `JOB#...`/`TASK#...` partitions, which this one never mixes with. One partition is plenty:
  keys are made by operators, a few thousand at most.
Keys made before key ids existed have neither `key_id`, `scopes` nor the gsi2 entry: `reindex()` adds
them (one Scan, once: `manage.py list_api_keys --reindex`); until then they work, with no scopes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503
from jobs.ports.values import ApiKeyRecord, Revocation, key_id_of
from jobs.repository import partitions as P
from jobs.repository.dynamo import query_keys_then_items
from jobs.repository.items import deserialize, iso, parse_iso, serialize, serialize_value

ALL_KEYS = P.APIKEYS
APIKEY_SK = P.fixed_sort_key(P.APIKEY)


def _key(key_hash: str) -> dict[str, Any]:
    return {"pk": {"S": P.APIKEY + key_hash}, "sk": {"S": APIKEY_SK}}


def _record(item: dict[str, Any]) -> ApiKeyRecord:
    key_hash = item["pk"].removeprefix(P.APIKEY)
    return ApiKeyRecord(
        key_hash=key_hash,
        owner=item["owner"],
        key_id=item.get("key_id") or key_id_of(key_hash),
        scopes=frozenset(item.get("scopes") or ()),
        created_at=parse_iso(item.get("created_at")),
        revoked_at=parse_iso(item.get("revoked_at")),
    )


class DynamoApiKeyRepository:
    def __init__(self, *, client, table_name: str):
        self._client = client
        self._table = table_name

    def add(self, *, key_hash: str, owner: str, now: datetime, scopes: frozenset[str] = frozenset()) -> ApiKeyRecord:
        key_id = key_id_of(key_hash)
        item = {
            "pk": P.APIKEY + key_hash,
            "sk": APIKEY_SK,
            "owner": owner,
            "created_at": iso(now),
            "key_id": key_id,
            "scopes": sorted(scopes),
            "gsi1pk": f"{P.APIKEYS}#{owner}",  # an owner's keys, for revoking them all
            "gsi1sk": f"{iso(now)}#{key_hash}",
            "gsi2pk": ALL_KEYS,  # every key, for listing them and finding one by id
            "gsi2sk": key_id,
        }
        with unavailable_as_503("DynamoDB"):
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
        return ApiKeyRecord(key_hash=key_hash, owner=owner, key_id=key_id, scopes=frozenset(scopes), created_at=now)

    def record_for(self, key_hash: str) -> ApiKeyRecord | None:
        """The key's record, revoked or not; None if there is no such key."""
        with unavailable_as_503("DynamoDB"):
            resp = self._client.get_item(TableName=self._table, Key=_key(key_hash))
        item = resp.get("Item")
        return _record(deserialize(item)) if item else None

    def owner_for(self, key_hash: str) -> str | None:
        """The owner of an active key; None if it is unknown or revoked."""
        record = self.record_for(key_hash)
        return record.owner if record and record.active else None

    def revoke(self, key_hash: str, *, now: datetime) -> Revocation:
        """Mark a key revoked (once: a second revocation changes nothing). Processes notice within their cache TTL."""
        try:
            with unavailable_as_503("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(key_hash),
                    UpdateExpression="SET revoked_at = :now",
                    ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                    ExpressionAttributeValues={":now": {"S": iso(now)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return Revocation.ALREADY_REVOKED if exc.response.get("Item") else Revocation.NOT_FOUND
            raise
        return Revocation.REVOKED

    def key_hashes_of(self, owner: str) -> list[str]:
        return [r.key_hash for r in self.list_keys(owner=owner)]

    def list_keys(self, *, owner: str | None = None) -> list[ApiKeyRecord]:
        """An owner's keys (oldest first), or every key (by key id); revoked ones too."""
        if owner is not None:
            return self._query("gsi1", "gsi1pk = :p", {":p": f"{P.APIKEYS}#{owner}"})
        return self._query("gsi2", "gsi2pk = :p", {":p": ALL_KEYS})

    def with_key_id(self, key_id: str) -> list[ApiKeyRecord]:
        """The keys whose id is `key_id`: one, or none (two would be a 64-bit collision)."""
        return self._query("gsi2", "gsi2pk = :p AND gsi2sk = :id", {":p": ALL_KEYS, ":id": key_id})

    def reindex(self) -> int:
        """Give keys made before key ids existed their key id, scopes and gsi2 entry; returns how many.

        A Scan of the whole table (filtered to such keys), so it is a one-off after an upgrade, not a habit.
        """
        done, start = 0, None
        while True:
            with unavailable_as_503("DynamoDB"):
                resp = self._client.scan(
                    TableName=self._table,
                    FilterExpression="sk = :sk AND attribute_not_exists(key_id)",
                    ExpressionAttributeValues={":sk": {"S": APIKEY_SK}},
                    ProjectionExpression="pk",
                    **({"ExclusiveStartKey": start} if start else {}),
                )
            for item in resp.get("Items", []):
                key_hash = item["pk"]["S"].removeprefix(P.APIKEY)
                with unavailable_as_503("DynamoDB"):
                    self._client.update_item(
                        TableName=self._table,
                        Key=_key(key_hash),
                        UpdateExpression="SET key_id = :id, gsi2pk = :all, gsi2sk = :id,"
                        " scopes = if_not_exists(scopes, :none)",
                        ConditionExpression="attribute_exists(pk)",
                        ExpressionAttributeValues={
                            ":id": {"S": key_id_of(key_hash)},
                            ":all": {"S": ALL_KEYS},
                            ":none": serialize_value([]),
                        },
                    )
                done += 1
            start = resp.get("LastEvaluatedKey")
            if not start:
                return done

    def _query(self, index: str, condition: str, values: dict[str, str]) -> list[ApiKeyRecord]:
        records, start = [], None
        params = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {k: {"S": v} for k, v in values.items()},
        }
        while True:
            _, items, start = query_keys_then_items(self._client, params, start=start)
            records += [_record(i) for i in items]
            if not start:
                return records
