"""`manage.py create_webhook_secret --owner NAME`: create or rotate an owner's webhook signing secret.

The secret is printed once on stdout; the previous one (if any) stops signing at once. It is kept in the
table (`HOOKSECRET#<owner>`) because the workers must use it to sign; owners can also rotate their own
with `POST /api/webhook-secret`.
"""

from django.core.management.base import CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.management.base import OperatorCommand
from jobs.management.commands.create_api_key import OWNER
from jobs.services.webhooks import webhook_secret_rotate


class Command(OperatorCommand):
    help = "Create or rotate an owner's webhook signing secret and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="Owner name: letters, digits, _ . @ - (max 64).")

    def handle(self, *args, owner: str, **options):
        if not OWNER.match(owner):
            raise CommandError("--owner must be 1-64 characters of letters, digits, _ . @ -")
        secret = webhook_secret_rotate(hooks=wiring.webhook_repository(), owner=owner, now=utcnow())
        self.stdout.write(secret)
        self.stderr.write(f"webhook secret of {owner}: shown once; the previous one no longer signs")
