"""`manage.py farm_status [--json]`: live workers and what they render, queue depths and age of the oldest
message per priority, in-flight messages, DLQ depth, running jobs by state. What replaces `celery inspect`
(which needs a broadcast transport; SQS has none)."""

import json

from jobs import wiring
from jobs.domain import utcnow
from jobs.management.base import OperatorCommand
from jobs.services.farm import farm_status, format_farm_status


class Command(OperatorCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")

    def handle(self, *args, **options):
        status = farm_status(farm=wiring.farm_registry(), queues=wiring.queue_stats(), now=utcnow())
        self.stdout.write(json.dumps(status) if options["json"] else format_farm_status(status))
