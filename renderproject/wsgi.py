"""WSGI entry point (gunicorn renderproject.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")

application = get_wsgi_application()
