"""Worker-process plumbing: the SQS priority transport, graceful shutdown, the liveness check and Celery bootsteps."""
