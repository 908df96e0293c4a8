"""Shared pytest fixtures."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ferropool.embedded import EmbeddedPostgres


@dataclass(frozen=True)
class PgServer:
    """The PostgreSQL server the test session talks to.

    With FERROPOOL_TEST_DSN set it is that external server, which tests must
    not stop; otherwise an EmbeddedPostgres that outage tests may stop and
    start through ``embedded``.
    """

    dsn: str
    embedded: EmbeddedPostgres | None = None

    @property
    def managed(self) -> bool:
        return self.embedded is not None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("FERROPOOL_TEST_DSN")
    if external:
        yield PgServer(dsn=external)
        return
    with EmbeddedPostgres() as server:
        yield PgServer(dsn=server.dsn, embedded=server)


@pytest.fixture(scope="session")
def dsn(pg_server: PgServer) -> str:
    return pg_server.dsn


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """An application_name unique to the test, to count its server connections.

    Pools built with ``kwargs={"application_name": app_name}`` can then be
    observed from pg_stat_activity, as a DBA would.
    """
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    return f"ferropool-test-{digest}"


@pytest.fixture
def stoppable_server(pg_server: PgServer) -> Iterator[EmbeddedPostgres]:
    """A server the test may stop and start: the session's own, or a private one.

    An external server (FERROPOOL_TEST_DSN) must not be stopped, so outage
    tests get a throwaway server of their own there. Either way the server
    is running again when the test ends.
    """
    if pg_server.embedded is not None:
        try:
            yield pg_server.embedded
        finally:
            pg_server.embedded.start()
        return
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio: the async pools are asyncio pools."""
    return "asyncio"


# PgBouncer and streaming-standby fixtures (fleet tests, issue 7).
from fleet_fixtures import pgbouncer, replica_set, restartable_pgbouncer  # noqa: E402, F401

# The throwaway MariaDB server of the DB-API adapter tests (PyMySQL).
from mariadb_fixtures import mariadb  # noqa: E402, F401

# The reliability, fault and security suite (issue 6): servers, secret watch, figures.
from reliability_fixtures import pytest_terminal_summary, scram_server, secret_watch, tls_server  # noqa: E402, F401
