"""`manage.py revoke_api_key --key KEY` or `--owner NAME`: revoke one key, or every key of an owner."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import hash_api_key


class Command(BaseCommand):
    help = "Revoke an API key (or all of an owner's). Running API processes stop accepting it within their cache TTL."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--key", help="The key itself (rk_...).")
        which.add_argument("--owner", help="Revoke every key of this owner.")

    def handle(self, *args, key: str | None, owner: str | None, **options):
        repo = wiring.api_key_repository()
        hashes = [hash_api_key(key)] if key else repo.key_hashes_of(owner)
        revoked = sum(repo.revoke(h, now=utcnow()) for h in hashes)
        if not revoked:
            raise CommandError("No such key." if key else f"Owner {owner!r} has no keys.")
        self.stdout.write(
            f"revoked {revoked} key(s); API processes refuse them within {settings.RENDER_API_KEY_CACHE_SECONDS}s"
        )
