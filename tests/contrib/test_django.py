"""The Django backend ``ferropool.contrib.django`` in a real Django project.

tests/contrib/django_project is a minimal project (one app, ``notes``) whose
settings use ENGINE "ferropool.contrib.django" with Django's own pool
option. The session fixture creates a fresh database on the test server,
runs the project's migrations on it, and drops it at the end. Requests go
through Django's test client (and, for concurrency, a real threaded WSGI
server); transactions and health checks are checked from outside, on
separate connections, as a DBA would see them.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
import pytest
from psycopg import sql

import ferropool
from tests.fixtures.helpers import DEADLINE, Threads, count_backends, terminate_backend, wait_until

APP_NAME = "ferropool-django-tests"


@pytest.fixture(scope="session")
def django_db(dsn: str) -> Iterator[str]:
    """A database of its own, the project set up and migrated on it."""
    name = f"ferropool_django_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    os.environ["FERROPOOL_DJANGO_DSN"] = dsn
    os.environ["FERROPOOL_DJANGO_DB"] = name
    os.environ["FERROPOOL_DJANGO_APP"] = APP_NAME
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.contrib.django_project.settings"
    import django
    from django.core.management import call_command
    from django.db import connections

    try:
        django.setup()
        call_command("migrate", verbosity=0)
        connections.close_all()
        yield name
    finally:
        connections.close_all()
        for alias in connections:
            connections[alias].close_pool()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_dsn(dsn: str, django_db: str) -> Iterator[str]:
    """The project's database, emptied for each test."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = django_db
    db = psycopg.conninfo.make_conninfo(**params)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("truncate notes_note")
    yield db
    from django.db import connections

    connections.close_all()


@pytest.fixture
def client(db_dsn: str) -> Any:
    from django.test import Client

    return Client()


def end_request() -> None:
    """What a WSGI server's request_finished signal does after a response
    (Django's test client leaves it out, to keep test transactions open):
    the request's connection goes back to the pool."""
    from django.db import close_old_connections

    close_old_connections()


def stored(db_dsn: str) -> list[str]:
    """The notes in the database, read on a connection of our own."""
    with psycopg.connect(db_dsn) as conn:
        return [r[0] for r in conn.execute("select text from notes_note order by id")]


def pool_of(alias: str = "default") -> Any:
    from django.db import connections

    return connections[alias].pool


def test_the_pool_is_ferropools(client: Any) -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"
    response = client.get("/notes/")
    end_request()
    assert response.status_code == 200
    pool = pool_of()
    assert isinstance(pool, ferropool.ConnectionPool)
    assert pool.name == "django-default"
    assert (pool.min_size, pool.max_size, pool.timeout) == (2, 4, 10)
    before = pool.get_stats()
    for _ in range(5):
        assert client.get("/notes/").status_code == 200
        end_request()
    after = pool.get_stats()
    assert after["requests_num"] - before["requests_num"] == 5
    assert after["pool_available"] == after["pool_size"]  # all returned
    assert after["connections_num"] <= 4


def test_views_read_and_write(client: Any, db_dsn: str) -> None:
    for text in ("first", "second", "third"):
        response = client.post("/notes/", {"text": text})
        end_request()
        assert response.status_code == 201
    response = client.get("/notes/")
    end_request()
    assert response.json() == {"notes": ["first", "second", "third"]}
    assert stored(db_dsn) == ["first", "second", "third"]


def test_transactions(client: Any, db_dsn: str) -> None:
    from django.db import transaction

    from tests.contrib.django_project.notes.models import Note

    with transaction.atomic():
        Note.objects.create(text="committed")
        assert stored(db_dsn) == []  # not visible before the commit
    assert stored(db_dsn) == ["committed"]

    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="rolled back")
        raise RuntimeError("abort")
    with transaction.atomic():
        Note.objects.create(text="outer")
        try:
            with transaction.atomic():  # a savepoint
                Note.objects.create(text="inner, rolled back")
                raise RuntimeError("abort the savepoint")
        except RuntimeError:
            pass
    end_request()
    assert stored(db_dsn) == ["committed", "outer"]

    response = client.post("/notes/fail/", {"text": "from a failed view"})
    end_request()
    assert response.status_code == 409
    assert stored(db_dsn) == ["committed", "outer"]
    # Every connection went back to the pool out of any transaction.
    stats = pool_of().get_stats()
    assert stats["returns_bad"] == 0
    assert stats["pool_available"] == stats["pool_size"]


def backend_pid(client: Any, alias: str) -> int:
    response = client.get(f"/backend/{alias}/")
    end_request()
    assert response.status_code == 200
    return int(response.json()["pid"])


def test_health_check_replaces_a_terminated_backend(client: Any, dsn: str) -> None:
    # The "checked" alias has ferropool's liveness checks off: only the
    # check Django asks for with CONN_HEALTH_CHECKS=True can find it.
    pool = pool_of("checked")
    old = backend_pid(client, "checked")
    lost = pool.get_stats()["connections_lost"]
    terminate_backend(dsn, old)
    new = backend_pid(client, "checked")
    assert new != old
    assert pool.get_stats()["connections_lost"] == lost + 1


def test_terminated_backends_are_never_lent(client: Any, dsn: str) -> None:
    pool = pool_of("default")
    pool.wait(timeout=DEADLINE)
    with psycopg.connect(dsn, autocommit=True) as admin:
        old = {
            r[0]
            for r in admin.execute(
                "select pg_terminate_backend(pid, 5000), pid from pg_stat_activity"
                " where application_name = %s",
                (APP_NAME,),
            )
        }
    assert old
    for _ in range(5):
        response = client.get("/notes/")
        end_request()
        assert response.status_code == 200
    assert backend_pid(client, "default") not in old
    assert pool.get_stats()["requests_errors"] == 0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_threaded_wsgi_server_shares_the_pool(db_dsn: str, dsn: str) -> None:
    """A real WSGI server: Django returns each request's connection itself
    (request_finished), 8 client threads share at most 4 connections."""
    from django.core.handlers.wsgi import WSGIHandler

    server = make_server(
        "127.0.0.1",
        0,
        WSGIHandler(),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_port}"
    pool = pool_of()
    before = pool.get_stats()["requests_num"]

    def post(n: int) -> None:
        for i in range(5):
            data = urllib.parse.urlencode({"text": f"{n}-{i}"}).encode()
            with urllib.request.urlopen(f"{base}/notes/", data, timeout=DEADLINE) as resp:
                assert resp.status == 201
            with urllib.request.urlopen(f"{base}/notes/", timeout=DEADLINE) as resp:
                assert f"{n}-{i}" in json.load(resp)["notes"]

    try:
        threads = Threads()
        for n in range(8):
            threads.start(post, n)
        threads.join()
    finally:
        server.shutdown()
        server.server_close()
        serving.join(DEADLINE)
    assert sorted(stored(db_dsn)) == sorted(f"{n}-{i}" for n in range(8) for i in range(5))
    stats = pool.get_stats()
    assert stats["requests_num"] - before >= 80
    assert stats["pool_size"] <= 4
    assert count_backends(dsn, APP_NAME) <= 4
    wait_until(
        lambda: pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"],
        what="every request's connection returned",
    )
