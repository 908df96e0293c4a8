"""A one-file Django project on ferropool's Django backend.

Run it:  FERROPOOL_DSN="dbname=app" python django_app.py runserver --noreload

The only ferropool-specific line is ENGINE: Django's own pool setting,
OPTIONS["pool"], then builds a ferropool ConnectionPool instead of a
psycopg_pool one. Docs: docs/guides/django.md. Tested by
tests/docs/test_examples.py, which runs this file's runserver.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict

params: dict[str, Any] = conninfo_to_dict(os.environ["FERROPOOL_DSN"])

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={
        "default": {
            "ENGINE": "ferropool.contrib.django",
            "NAME": params.get("dbname", "postgres"),
            "USER": params.get("user", ""),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", ""),
            "PORT": params.get("port", ""),
            # Pooling needs CONN_MAX_AGE = 0, as with Django's own pool.
            "CONN_MAX_AGE": 0,
            # A check at each checkout (ConnectionPool.check_connection).
            "CONN_HEALTH_CHECKS": False,
            # ferropool.ConnectionPool arguments.
            "OPTIONS": {"pool": {"min_size": 2, "max_size": 8, "timeout": 10}},
        }
    },
)
django.setup()

from django.db import connection, transaction  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def ensure_table() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "create table if not exists django_counters (name text primary key, n int not null)"
        )


def double(request: HttpRequest, n: int) -> JsonResponse:
    with connection.cursor() as cur:
        cur.execute("select %s * 2", [n])
        (result,) = cur.fetchone()
    return JsonResponse({"n": n, "double": result})


def bump(request: HttpRequest, name: str) -> JsonResponse:
    # One transaction: both statements or neither.
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "insert into django_counters values (%s, 0) on conflict (name) do nothing", [name]
        )
        cur.execute("update django_counters set n = n + 1 where name = %s returning n", [name])
        (n,) = cur.fetchone()
    return JsonResponse({"name": name, "n": n})


def stats(request: HttpRequest) -> JsonResponse:
    # connection.pool is the ferropool ConnectionPool Django uses.
    return JsonResponse(connection.pool.get_stats())


urlpatterns = [
    path("double/<int:n>", double),
    path("bump/<str:name>", bump),
    path("stats", stats),
]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    ensure_table()
    execute_from_command_line(sys.argv)
