"""Shared pytest fixtures."""

from __future__ import annotations

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
