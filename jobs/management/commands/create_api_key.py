"""`manage.py create_api_key --owner NAME`: print a new API key, alone on stdout (it is stored hashed)."""

import re

from django.core.management.base import BaseCommand, CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.services import api_key_create

OWNER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Command(BaseCommand):
    help = "Create an API key for an owner and print it (only once: just its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="Owner name: letters, digits, _ . @ - (max 64).")

    def handle(self, *args, owner: str, **options):
        if not OWNER.match(owner):
            raise CommandError("--owner must be 1-64 characters of letters, digits, _ . @ -")
        self.stdout.write(api_key_create(repo=wiring.api_key_repository(), owner=owner, now=utcnow()))
