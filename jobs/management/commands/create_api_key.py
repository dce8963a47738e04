"""`manage.py create_api_key --owner NAME [--allow-high] [--operator] [--secret-name NAME]`: make an API key.

Only the key's hash is stored. `--allow-high` grants the `high` scope (submit priority=high) and
`--operator` the `operator` scope. By default the key is printed alone on stdout (its key id, for
listing and revoking, goes to stderr). With `--secret-name` the key is never printed: it is written to
AWS Secrets Manager (created, or a new version; tagged with the owner and key id) and only the
secret's ARN and the key id are printed. If that write fails the new key is revoked at once.
"""

import re

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import CommandError

from jobs import wiring
from jobs.adapters import aws
from jobs.domain import utcnow
from jobs.errors import DomainError
from jobs.management.base import OperatorCommand
from jobs.repository.secrets import SecretsManagerStore
from jobs.services import api_key_create, hash_api_key
from jobs.services.api_keys import SCOPE_HIGH, SCOPE_OPERATOR, api_key_id

OWNER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")  # what Secrets Manager accepts


class Command(OperatorCommand):
    help = "Create an API key for an owner and print it, or store it in Secrets Manager (only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="Owner name: letters, digits, _ . @ - (max 64).")
        parser.add_argument("--allow-high", action="store_true", help="Grant the 'high' scope: priority=high jobs.")
        parser.add_argument("--operator", action="store_true", help="Grant the 'operator' scope.")
        parser.add_argument(
            "--secret-name", help="Write the key to this Secrets Manager secret instead of printing it."
        )

    def handle(self, *args, owner: str, allow_high: bool, operator: bool, secret_name: str | None, **options):
        if not OWNER.match(owner):
            raise CommandError("--owner must be 1-64 characters of letters, digits, _ . @ -")
        if secret_name is not None and not SECRET_NAME.match(secret_name):
            raise CommandError("--secret-name must be 1-512 characters of letters, digits, / _ + = . @ -")
        scopes = frozenset(scope for scope, wanted in ((SCOPE_HIGH, allow_high), (SCOPE_OPERATOR, operator)) if wanted)
        repo = wiring.api_key_repository()
        key = api_key_create(repo=repo, owner=owner, now=utcnow(), scopes=scopes)
        key_id = api_key_id(key)
        if secret_name is None:
            self.stdout.write(key)
            self.stderr.write(f"key id {key_id}, scopes: {', '.join(sorted(scopes)) or 'none'}")
            return
        try:
            arn = SecretsManagerStore(client=aws.client("secretsmanager")).put(
                secret_name,
                key,
                tags={"owner": owner, "key-id": key_id},
                description=f"Render farm API key of {owner}",
            )
        except (DomainError, ClientError, BotoCoreError) as exc:
            repo.revoke(hash_api_key(key), now=utcnow())  # nobody can ever know this key: it must not work
            raise CommandError(f"Could not write secret {secret_name!r} ({exc}); the new key was revoked.") from exc
        self.stdout.write(f"secret {arn}\nkey id {key_id}")
