"""Keepalive: idle connections are pinged in the background, and libpq TCP
keepalives are on by default, so a connection that died while idle (even
half-open: network cut, no FIN) is replaced before a borrower gets it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool
from tests.fixtures.fault_proxy import FaultProxy, fault_proxy
from tests.fixtures.helpers import (
    DEADLINE,
    backend_pid,
    count_backends,
    terminate_backend,
    wait_until,
)
from tests.fixtures.safety import backend_pids, with_params

KEEPALIVE = 0.3
KEEPALIVE_PARAMS = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")


def test_idle_connections_are_pinged_at_every_interval(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, keepalive_interval=KEEPALIVE) as pool:
        pool.wait(timeout=DEADLINE)
        assert pool.keepalive_interval == KEEPALIVE
        # Three rounds: about 1 s.
        wait_until(
            lambda: pool.get_stats()["keepalive_pings"] >= 3,
            timeout=5,
            what=f"the idle connection pinged every {KEEPALIVE} s",
        )
        stats = pool.get_stats()
        assert stats["requests_num"] == 0
        assert stats["connections_num"] == 1, "a healthy connection answers its pings: kept"


def test_keepalive_replaces_a_connection_terminated_while_idle(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn,
        min_size=2,
        open=True,
        keepalive_interval=KEEPALIVE,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        old = backend_pids(dsn, app_name)
        victim = min(old)
        terminate_backend(dsn, victim)

        wait_until(
            lambda: pool.get_stats()["connections_lost"] == 1,
            what="the keepalive ping finds the dead connection",
        )
        wait_until(lambda: count_backends(dsn, app_name) == 2, what="replaced")
        stats = pool.get_stats()
        assert stats["requests_num"] == 0, "found without any borrower"
        assert stats["keepalive_pings"] >= 1
        # pg_terminate_backend's 57P01 reads as the server going away: the
        # other connection, opened before, is retired with it.
        assert stats["failovers"] == 1
        assert backend_pids(dsn, app_name).isdisjoint(old)


def test_keepalive_setting_can_be_turned_off(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, keepalive_interval=KEEPALIVE) as pool:
        pool.wait(timeout=DEADLINE)
        pool.keepalive_interval = None
        assert pool.keepalive_interval is None
        pings = pool.get_stats()["keepalive_pings"]
        time.sleep(4 * KEEPALIVE)
        assert pool.get_stats()["keepalive_pings"] == pings


# ---- half-open connections ----------------------------------------------------


@pytest.fixture
def proxy(dsn: str) -> Iterator[FaultProxy]:
    with fault_proxy(dsn) as p:
        yield p


def test_half_open_connection_is_found_by_keepalive(
    dsn: str, app_name: str, proxy: FaultProxy
) -> None:
    """No FIN, no RST, a quiet socket: only a ping with a deadline finds it."""
    through_proxy = proxy.dsn(dsn)
    with ConnectionPool(
        through_proxy,
        min_size=1,
        open=True,
        keepalive_interval=KEEPALIVE,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        with pool.connection() as conn:
            before = backend_pid(conn)
        proxy.black_hole()
        proxy.restore()  # only the open connection goes silent

        # The ping's own deadline is 5 s.
        wait_until(
            lambda: pool.get_stats()["connections_lost"] == 1,
            timeout=DEADLINE + 5,
            what="the keepalive ping times out on the half-open connection",
        )
        assert pool.get_stats()["requests_num"] == 1, "found without any borrower"
        with pool.connection(timeout=DEADLINE) as conn:
            assert backend_pid(conn) != before


# ---- TCP keepalives -----------------------------------------------------------


def client_keepalives(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """The keepalive parameters libpq used for *conn*."""
    options = {o.keyword.decode(): o.val for o in conn.pgconn.info}
    return {k: None if options[k] is None else options[k].decode() for k in KEEPALIVE_PARAMS}


def socket_keepalives(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT of *conn*'s socket."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
        return (
            s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        )


def test_tcp_keepalives_are_set_by_default(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool, pool.connection() as conn:
        assert client_keepalives(conn) == {
            "keepalives": "1",
            "keepalives_idle": "30",
            "keepalives_interval": "10",
            "keepalives_count": "3",
        }
        assert socket_keepalives(conn) == (1, 30, 10, 3)


@pytest.mark.parametrize("where", ["conninfo", "kwargs"])
def test_user_keepalive_settings_are_kept_and_ours_not_added(dsn: str, where: str) -> None:
    conninfo, kwargs = (
        (with_params(dsn, keepalives_idle=7), None)
        if where == "conninfo"
        else (dsn, {"keepalives_idle": 7})
    )
    with ConnectionPool(conninfo, kwargs=kwargs, min_size=1, open=True) as pool:
        with pool.connection() as conn:
            assert client_keepalives(conn) == {
                "keepalives": None,
                "keepalives_idle": "7",
                "keepalives_interval": None,
                "keepalives_count": None,
            }
            assert socket_keepalives(conn)[1] == 7
        # The user's kwargs are not modified in place.
        assert kwargs is None or kwargs == {"keepalives_idle": 7}


def test_user_can_disable_keepalives_with_keepalives_zero(dsn: str) -> None:
    pool = ConnectionPool(dsn, kwargs={"keepalives": 0}, min_size=1, open=True)
    with pool, pool.connection() as conn:
        assert client_keepalives(conn)["keepalives"] == "0"
        assert client_keepalives(conn)["keepalives_idle"] is None
        assert socket_keepalives(conn)[0] == 0


def test_tcp_keepalives_false_adds_none(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True, tcp_keepalives=False)
    with pool, pool.connection() as conn:
        assert client_keepalives(conn) == dict.fromkeys(KEEPALIVE_PARAMS)
