"""Settings of the test project: Django's PostgreSQL settings, with
``ENGINE = "ferropool.contrib.django"`` and Django's own pool option.

The fixture sets FERROPOOL_DJANGO_DSN (the test server) and
FERROPOOL_DJANGO_DB (a database created for the session) before
django.setup().
"""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

_server = conninfo_to_dict(os.environ["FERROPOOL_DJANGO_DSN"])
_database = {
    "ENGINE": "ferropool.contrib.django",
    "NAME": os.environ["FERROPOOL_DJANGO_DB"],
    "USER": _server.get("user", ""),
    "PASSWORD": _server.get("password", ""),
    "HOST": _server.get("host", ""),
    "PORT": _server.get("port", ""),
    "CONN_MAX_AGE": 0,  # required by Django's pooling
    "CONN_HEALTH_CHECKS": True,
}

DATABASES = {
    # ferropool's defaults: terminated backends are found by the core's
    # hang-up watch and socket polls, plus Django's check at checkout.
    "default": {
        **_database,
        "OPTIONS": {
            "pool": {"min_size": 2, "max_size": 4, "timeout": 10},
            "application_name": os.environ.get("FERROPOOL_DJANGO_APP", "ferropool-django"),
        },
    },
    # Only Django's health check (CONN_HEALTH_CHECKS) can find a dead
    # connection here: ferropool's liveness checks are off.
    "checked": {
        **_database,
        "OPTIONS": {
            "pool": {"min_size": 1, "max_size": 1, "timeout": 10, "liveness_bypass": None},
            "application_name": os.environ.get("FERROPOOL_DJANGO_APP", "ferropool-django")
            + "-checked",
        },
    },
}

SECRET_KEY = "ferropool-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
INSTALLED_APPS = ["tests.contrib.django_project.notes"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.contrib.django_project.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
