"""`manage.py list_api_keys [--owner NAME] [--json] [--reindex]`: API keys, never the keys themselves.

Each key: owner, key id (the first 16 hex digits of its hash, what revoke_api_key --key-id takes),
created, revoked (or -), scopes. A table by default; `--json` prints one JSON object per line.
Listing is a Query (an owner's keys, or the one partition of all keys), not a table Scan; `--reindex`
first indexes keys made before key ids existed (a one-off Scan after upgrading).
"""

import json
from datetime import UTC, datetime

from jobs import wiring
from jobs.management.base import OperatorCommand
from jobs.ports.values import ApiKeyRecord

EPOCH = datetime.fromtimestamp(0, UTC)
COLUMNS = ("OWNER", "KEY ID", "CREATED", "REVOKED", "SCOPES")


def _when(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def as_dict(record: ApiKeyRecord) -> dict:
    return {
        "owner": record.owner,
        "key_id": record.key_id,
        "created_at": _when(record.created_at),
        "revoked_at": _when(record.revoked_at),
        "scopes": sorted(record.scopes),
    }


class Command(OperatorCommand):
    help = "List API keys (owner, key id, created, revoked, scopes); never shows a key."

    def add_arguments(self, parser):
        parser.add_argument("--owner", help="Only this owner's keys.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object per key and line.")
        parser.add_argument(
            "--reindex", action="store_true", help="First index keys made before key ids existed (one Scan)."
        )

    def handle(self, *args, owner: str | None, as_json: bool, reindex: bool, **options):
        repo = wiring.api_key_repository()
        if reindex:
            self.stderr.write(f"indexed {repo.reindex()} older key(s)")
        records = sorted(repo.list_keys(owner=owner), key=lambda r: (r.owner, r.created_at or EPOCH, r.key_id))
        rows = [as_dict(r) for r in records]
        if as_json:
            for row in rows:
                self.stdout.write(json.dumps(row))
            return
        table = [COLUMNS] + [
            (r["owner"], r["key_id"], r["created_at"] or "-", r["revoked_at"] or "-", ",".join(r["scopes"]) or "-")
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
        for row in table:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
