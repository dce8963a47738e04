"""`manage.py bootstrap_aws`: create the table, queues and bucket where missing (safe to run again)."""

from jobs.management.base import OperatorCommand
from jobs.wiring import bootstrap_all


class Command(OperatorCommand):
    help = "Create the DynamoDB table, SQS queues (with DLQ) and S3 bucket where missing."

    def handle(self, *args, **options):
        for name, value in bootstrap_all().items():
            self.stdout.write(f"{name}: {value}")
