"""AWS adapters outside the DynamoDB repository: clients, S3 results, the Celery/SQS queue, the dead-letter queue,
resource bootstrap and readiness probes. They implement jobs.ports and never import services or the API."""
