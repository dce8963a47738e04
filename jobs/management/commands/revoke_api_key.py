"""`manage.py revoke_api_key --key KEY | --key-id ID | --owner NAME`: revoke one key, or every key of an owner.

Revoking is idempotent: a key that was already revoked is reported as such and left unchanged.
"""

import re

from django.conf import settings
from django.core.management.base import CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.management.base import OperatorCommand
from jobs.ports.values import KEY_ID_LENGTH, Revocation
from jobs.services import hash_api_key

KEY_ID = re.compile(rf"^[0-9a-f]{{{KEY_ID_LENGTH}}}$")


class Command(OperatorCommand):
    help = "Revoke an API key (or all of an owner's). Running API processes stop accepting it within their cache TTL."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--key", help="The key itself (rk_...).")
        which.add_argument("--key-id", help=f"The key's id ({KEY_ID_LENGTH} hex digits, from list_api_keys).")
        which.add_argument("--owner", help="Revoke every key of this owner.")

    def handle(self, *args, key: str | None, key_id: str | None, owner: str | None, **options):
        repo = wiring.api_key_repository()
        if key:
            hashes = [hash_api_key(key)]
        elif key_id:
            hashes = self._hash_of(repo, key_id.lower())
        else:
            hashes = repo.key_hashes_of(owner)
            if not hashes:
                raise CommandError(f"Owner {owner!r} has no keys.")
        outcomes = [repo.revoke(h, now=utcnow()) for h in hashes]
        revoked = outcomes.count(Revocation.REVOKED)
        already = outcomes.count(Revocation.ALREADY_REVOKED)
        if Revocation.NOT_FOUND in outcomes:
            raise CommandError("No such key.")
        if revoked:
            note = f" ({already} already were)" if already else ""
            self.stdout.write(
                f"revoked {revoked} key(s){note}; API processes refuse them within "
                f"{settings.RENDER_API_KEY_CACHE_SECONDS}s"
            )
        else:
            self.stdout.write(
                "already revoked; nothing changed" if len(outcomes) == 1 else f"all {already} keys were already revoked"
            )

    def _hash_of(self, repo, key_id: str) -> list[str]:
        if not KEY_ID.match(key_id):
            raise CommandError(f"--key-id must be {KEY_ID_LENGTH} hex digits (list_api_keys shows them).")
        matches = repo.with_key_id(key_id)
        if not matches:
            raise CommandError(f"No key has id {key_id} (keys made before key ids: list_api_keys --reindex).")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} keys share id {key_id}; revoke with --key instead.")
        return [matches[0].key_hash]
