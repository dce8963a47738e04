"""`manage.py create_api_key --owner NAME [--allow-high] [--operator]`: print a new API key, alone on stdout.

Only the key's hash is stored. `--allow-high` grants the `high` scope (submit priority=high) and
`--operator` the `operator` scope. The key id (a prefix of the hash, for listing and revoking) goes to
stderr, so stdout stays the key alone for scripts.
"""

import re

from django.core.management.base import BaseCommand, CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import api_key_create
from jobs.services.api_keys import SCOPE_HIGH, SCOPE_OPERATOR, api_key_id

OWNER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Command(BaseCommand):
    help = "Create an API key for an owner and print it (only once: just its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="Owner name: letters, digits, _ . @ - (max 64).")
        parser.add_argument("--allow-high", action="store_true", help="Grant the 'high' scope: priority=high jobs.")
        parser.add_argument("--operator", action="store_true", help="Grant the 'operator' scope.")

    def handle(self, *args, owner: str, allow_high: bool, operator: bool, **options):
        if not OWNER.match(owner):
            raise CommandError("--owner must be 1-64 characters of letters, digits, _ . @ -")
        scopes = frozenset(scope for scope, wanted in ((SCOPE_HIGH, allow_high), (SCOPE_OPERATOR, operator)) if wanted)
        key = api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow(), scopes=scopes)
        self.stdout.write(key)
        self.stderr.write(f"key id {api_key_id(key)}, scopes: {', '.join(sorted(scopes)) or 'none'}")
