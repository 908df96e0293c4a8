"""What the server pays per contender: connections opened, backends, TIME_WAIT.

The cost pooling exists to avoid, measured from outside the contenders:

* connections opened: ``pg_stat_database.sessions`` (PostgreSQL 14+), read
  before and after each stretch of one contender's work (opening, each
  round, closing) and charged to it. A backend counts its session before
  its first ReadyForQuery, except that from PostgreSQL 15 a backend that
  finds the shared stats entry locked by another's flush counts itself
  later: when it next goes idle, or at the latest when it exits, before it
  leaves pg_stat_activity. So a stretch that ends with the contender's
  connections closed (``charge(..., closes=True)``) waits until
  pg_stat_activity shows none of them: a client's close() returns before
  the server process has exited, and without the wait its count would land
  on the next contender's stretch;
* peak backends: a monitor thread samples pg_stat_activity, grouped by the
  application_name every contender tags its connections with;
* sockets left in TIME_WAIT: entries of /proc/net/tcp{,6} in state 06 with
  the server's port at either end, new since the stretch began. Whichever
  side closes first keeps its socket in TIME_WAIT for a minute: the client
  usually, the server's side too when the server runs on this machine. A
  connection that ends with a reset (a TLS connection closed with its peer's
  close_notify unread) leaves none.

The monitor has a connection of its own, opened before any contender and
excluded from every count. It must never slow the contenders down: one
small query every 25 ms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import psycopg

from .contenders import application_name
from .results import ServerCost

__all__ = ["CostMeter", "time_wait_sockets"]

_SAMPLE_INTERVAL: Final = 0.025
_TIME_WAIT: Final = "06"
_PROC_TCP: Final = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_BACKENDS: Final = (
    "select application_name, count(*) from pg_stat_activity"
    " where backend_type = 'client backend' and pid <> pg_backend_pid()"
    " group by application_name"
)
_SESSIONS: Final = "select sessions from pg_stat_database where datname = current_database()"
_STILL_THERE: Final = (
    "select count(*) from pg_stat_activity"
    " where backend_type = 'client backend' and application_name = %s"
)
# How long a stretch that closed its connections waits for their server
# processes to exit: far more than an exit takes, even on a loaded machine.
_EXIT_TIMEOUT: Final = 30.0
_EXIT_POLL: Final = 0.005

# (local address:port, remote address:port) -> timer of the TIME_WAIT entry
_Sockets = dict[tuple[str, str], int]


class CostMeter:
    """Charges the server's work to the contender doing it, over one scenario."""

    def __init__(self, conninfo: str, port: int, contenders: Iterable[str]) -> None:
        self._port = port
        self._names = {name: application_name(name) for name in contenders}
        self._conn = psycopg.connect(
            conninfo, autocommit=True, application_name=application_name("monitor")
        )
        self._has_sessions = self._conn.info.server_version >= 140000
        self._opened = dict.fromkeys(self._names, 0)
        self._time_wait = dict.fromkeys(self._names, 0)
        self._peaks = dict.fromkeys(self._names.values(), 0)
        self._peak_total = 0
        self._sessions_at_start = self._sessions()
        self._sockets_at_start = time_wait_sockets(port)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)
        self._sampler.start()

    @contextmanager
    def charge(self, contender: str, *, closes: bool = False) -> Iterator[None]:
        """Charge what the server does inside the block to *contender*.

        *closes*: the block ends with all of the contender's connections
        closed; the stretch lasts until their server processes have exited.
        """
        sessions, sockets = self._sessions(), time_wait_sockets(self._port)
        try:
            yield
        finally:
            if closes:
                self._wait_for_exits(self._names[contender])
            after = self._sessions()
            if sessions is not None and after is not None:
                self._opened[contender] += after - sessions
            self._time_wait[contender] += _new(sockets, time_wait_sockets(self._port))

    def costs(self) -> dict[str, ServerCost]:
        """Each contender's cost so far."""
        readable = _PROC_TCP[0].exists()
        return {
            name: ServerCost(
                connections_opened=self._opened[name] if self._has_sessions else None,
                peak_backends=self._peaks[app],
                time_wait_sockets=self._time_wait[name] if readable else None,
            )
            for name, app in self._names.items()
        }

    def total(self) -> ServerCost:
        """Everything the server saw since the meter started, whoever caused it."""
        sessions = self._sessions()
        start = self._sessions_at_start
        return ServerCost(
            connections_opened=sessions - start
            if sessions is not None and start is not None
            else None,
            peak_backends=self._peak_total,
            time_wait_sockets=_new(self._sockets_at_start, time_wait_sockets(self._port))
            if _PROC_TCP[0].exists()
            else None,
        )

    def close(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> CostMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sessions(self) -> int | None:
        if not self._has_sessions:
            return None
        row = self._conn.execute(_SESSIONS).fetchone()
        return int(row[0]) if row else None

    def _wait_for_exits(self, app: str) -> None:
        deadline = time.monotonic() + _EXIT_TIMEOUT
        while time.monotonic() < deadline:
            row = self._conn.execute(_STILL_THERE, (app,)).fetchone()
            if not row or not row[0]:
                return
            time.sleep(_EXIT_POLL)
        raise RuntimeError(
            f"the server still has connections tagged {app!r} {_EXIT_TIMEOUT:.0f} s after"
            " their contender closed them all"
        )

    def _sample(self) -> None:
        # psycopg serialises the connection between this thread and charge().
        while not self._stop.wait(_SAMPLE_INTERVAL):
            try:
                rows: list[Any] = self._conn.execute(_BACKENDS).fetchall()
            except psycopg.Error:
                return  # the scenario fails on its own connections, and says why
            counts = {name: int(count) for name, count in rows}
            self._peak_total = max(self._peak_total, sum(counts.values()))
            for app in self._peaks:
                self._peaks[app] = max(self._peaks[app], counts.get(app, 0))


def time_wait_sockets(port: int) -> _Sockets:
    """This machine's sockets in TIME_WAIT with *port* at either end (Linux; else none)."""
    found: _Sockets = {}
    for path in _PROC_TCP:
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when ...
            fields = line.split()
            if len(fields) < 6 or fields[3] != _TIME_WAIT:
                continue
            if port in (_port(fields[1]), _port(fields[2])):
                found[(fields[1], fields[2])] = int(fields[5].split(":")[1], 16)
    return found


def _port(address: str) -> int:
    # "0100007F:1F90": address and port in hexadecimal.
    return int(address.rsplit(":", 1)[1], 16)


def _new(before: _Sockets, after: _Sockets) -> int:
    # On loopback Linux reuses a port still in TIME_WAIT for a new
    # connection (tcp_tw_reuse), so the same address pair can reappear: its
    # timer, counting down from 60 s, then starts over.
    return sum(1 for key, timer in after.items() if key not in before or timer > before[key])
