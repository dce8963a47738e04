"""Django app config for render jobs."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
