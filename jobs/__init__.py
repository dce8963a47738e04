"""Render jobs: domain, persistence, storage, use cases, Celery tasks and the REST API."""
