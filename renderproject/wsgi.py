"""WSGI entry point (gunicorn renderproject.wsgi; `bin/entrypoint api` runs it with --preload)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")

application = get_wsgi_application()


def _warm_up() -> None:
    """Do now what the first requests would: import the URLconf with every view, DRF and the schema
    generator, and load the AWS service models. Under gunicorn's --preload this runs once in the master,
    whose pages the forked workers share instead of each building its own copy; `gc.freeze()` keeps the
    collector from writing to (and so un-sharing) them. No client or connection is made here: each worker
    makes its own after the fork."""
    from django.urls import get_resolver

    from jobs.adapters import aws

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    aws.load_models(("dynamodb", "sqs", "s3"))
    gc.freeze()


_warm_up()
