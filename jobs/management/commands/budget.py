"""`manage.py budget --owner NAME [--dollars N | --clear]`: set, clear or show an owner's monthly budget.

A budget is dollars per calendar month (UTC) of the owner's worker-seconds at the configured prices; once this
month's spend reaches it, the owner's submits (dry runs too) are refused with 429 budget_exceeded. Jobs that are
running are not stopped.
"""

from django.core.management.base import CommandError

from jobs import wiring
from jobs.domain import utcnow
from jobs.management.base import OperatorCommand
from jobs.services.budgets import budget_set, usage_get


class Command(OperatorCommand):
    help = "Set (--dollars), clear (--clear) or show an owner's monthly budget, and its spend this month."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="The owner (as its API keys name it).")
        change = parser.add_mutually_exclusive_group()
        change.add_argument("--dollars", type=float, help="Dollars a calendar month (UTC); 0 refuses every submit.")
        change.add_argument("--clear", action="store_true", help="No budget: submits are not limited by spend.")

    def handle(self, *args, owner: str, dollars: float | None, clear: bool, **options):
        if dollars is not None and not 0 <= dollars < 10**9:  # NaN and infinities too
            raise CommandError("--dollars must be a number from 0 to 1,000,000,000.")
        now = utcnow()
        if dollars is not None or clear:
            budget_set(budgets=wiring.budgets(), owner=owner, dollars=None if clear else dollars, now=now)
        usage = usage_get(spending=wiring.spending(), owner=owner, now=now)
        budget = "no budget" if usage.budget is None else f"budget ${usage.budget:.2f}, ${usage.remaining:.2f} left"
        self.stdout.write(
            f"{owner}: {usage.month}: ${usage.spent:.2f} spent ({usage.worker_seconds:.0f} worker-seconds), {budget}"
        )
