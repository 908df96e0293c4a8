"""The fleet's real parts for the tests: PgBouncer and a streaming standby.

``PgBouncer`` runs Debian's pgbouncer in front of a server, on 127.0.0.1 and
a free port, with databases in transaction and session mode. ``Standby`` is a
hot standby of an EmbeddedPostgres, cloned with the bundled pg_basebackup -R
and streaming from it. Both refuse root as PostgreSQL does, so when the tests
run as root they run as EmbeddedPostgres's unprivileged user; both can be
stopped and started again on the same port (outage tests) and delete their
directory on close. Like EmbeddedPostgres they listen on 127.0.0.1 only:
PgBouncer trusts its clients, as the test server does.

The fixtures at the end are imported by conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool.embedded import (
    HOST,
    SERVER_OS_USER,
    EmbeddedPostgres,
    child_env,
    conf_quote,
    free_port,
)

_STOP_GRACE = 10.0
_START_TIMEOUT = 60.0
_LOG_TAIL = 30


def _as_server_user() -> dict[str, Any]:
    """subprocess arguments running a program as EmbeddedPostgres's user
    when we are root (that user exists once an EmbeddedPostgres started)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(SERVER_OS_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_OS_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    """Send *sig*, then escalate to SIGKILL of the group if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_STOP_GRACE)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class PgBouncer:
    """Debian's PgBouncer in front of the server at *server_dsn*.

    *databases* maps each PgBouncer database name to its settings, e.g.
    ``{"tx": {"pool_mode": "transaction"}, "sess": {"pool_mode": "session",
    "pool_size": 10}}``; each reaches the server's database as its user.
    ``dsn(name)`` is what clients connect to.
    """

    def __init__(
        self,
        server_dsn: str,
        databases: Mapping[str, Mapping[str, str | int]],
        *,
        default_pool_size: int = 4,
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).is_file():
            raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer")
        self._binary = binary
        server = conninfo_to_dict(server_dsn)
        self.user = str(server.get("user") or "postgres")
        self._base = Path(tempfile.mkdtemp(prefix="ferropool-pgbouncer-"))
        _give_to_server_user(self._base)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

        target = {
            "host": str(server.get("host") or HOST),
            "port": str(server.get("port") or 5432),
            "dbname": str(server.get("dbname") or "postgres"),
            "user": self.user,
        }
        if server.get("password"):
            target["password"] = str(server["password"])
        lines = ["[databases]"]
        for name, options in databases.items():
            items = {**target, **{k: str(v) for k, v in options.items()}}
            lines.append(name + " = " + " ".join(f"{k}={conf_quote(v)}" for k, v in items.items()))
        config: dict[str, str | int] = {
            "listen_addr": HOST,
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self._base / "users.txt"),
            "logfile": str(self.log_file),
            "default_pool_size": default_pool_size,
            "max_client_conn": 1000,
            # Fail a stuck test in seconds, not PgBouncer's default 2 minutes.
            "query_wait_timeout": 30,
            # Reconnect to a restarted server at once (default: 15 s later).
            "server_login_retry": 1,
            "log_connections": 0,
            "log_disconnections": 0,
            **(settings or {}),
        }
        lines.append("[pgbouncer]")
        lines += [f"{k} = {v}" for k, v in config.items()]
        self._ini = self._base / "pgbouncer.ini"
        self._ini.write_text("\n".join(lines) + "\n")
        (self._base / "users.txt").write_text(f'"{self.user}" ""\n')
        for path in (self._ini, self._base / "users.txt"):
            path.chmod(0o600)
            _give_to_server_user(path)

    @property
    def log_file(self) -> Path:
        return self._base / "pgbouncer.log"

    def dsn(self, database: str) -> str:
        return make_conninfo(host=HOST, port=self.port, dbname=database, user=self.user)

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [self._binary, str(self._ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self._base,
            env=child_env(),
            start_new_session=True,
            **_as_server_user(),
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{_tail(self.log_file)}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer not listening:\n{_tail(self.log_file)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop at once (SIGTERM: PgBouncer's immediate shutdown), keeping the port."""
        proc, self._proc = self._proc, None
        _stop(proc, signal.SIGTERM)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._base, ignore_errors=True)


class Standby:
    """A hot standby of *primary* (started with ``replication=True``),
    cloned with pg_basebackup -R from the same binaries."""

    def __init__(self, primary: EmbeddedPostgres) -> None:
        self._primary = primary
        self._bindir = primary.bindir
        self.port = free_port()
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return make_conninfo(
            host=HOST, port=self.port, dbname=self._primary.dbname, user=self._primary.user
        )

    @property
    def _data(self) -> Path:
        assert self._base is not None
        return self._base / "data"

    @property
    def _log(self) -> Path:
        assert self._base is not None
        return self._base / "standby.log"

    def _clone(self) -> None:
        self._base = Path(tempfile.mkdtemp(prefix="ferropool-standby-"))
        _give_to_server_user(self._base)
        socket_dir = self._base / "socket"
        socket_dir.mkdir(mode=0o700)
        _give_to_server_user(socket_dir)
        command = [str(self._bindir / "pg_basebackup"), "-h", HOST,
                   "-p", str(self._primary.port), "-U", self._primary.user, "-D", str(self._data),
                   "-R", "-X", "stream", "-c", "fast", "--no-sync"]  # fmt: skip
        result = subprocess.run(
            command,
            cwd=self._base,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **_as_server_user(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {result.stderr.strip()}")
        # The copied postgresql.conf points at the primary's socket directory.
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# standby\nunix_socket_directories = '{socket_dir}'\nhot_standby = on\n")

    def start(self) -> None:
        """Start (cloning on first use) and wait until it serves reads."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._base is None:
            self._clone()
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self._bindir / "postgres"), "-D", str(self._data), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._base,
                env=child_env(),
                start_new_session=True,
                **_as_server_user(),
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"standby exited:\n{_tail(self._log)}")
            with contextlib.suppress(psycopg.OperationalError):
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    row = conn.execute("select pg_is_in_recovery()").fetchone()
                if row == (True,):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby not ready:\n{_tail(self._log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (clients are told, then disconnected), keeping data and port."""
        proc, self._proc = self._proc, None
        _stop(proc, signal.SIGINT)

    def close(self) -> None:
        self.stop()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


class ReplicaSet:
    """A primary with streaming replication, and one hot standby of it."""

    def __init__(self, primary: EmbeddedPostgres, standby: Standby) -> None:
        self.primary = primary
        self.standby = standby


# ---- fixtures (imported by conftest.py) --------------------------------------

TX_DB = "ferropool_tx"
SESSION_DB = "ferropool_session"


@pytest.fixture(scope="module")
def pgbouncer(pg_server: Any) -> Iterator[PgBouncer]:
    """PgBouncer in front of the test server: database ``ferropool_tx`` in
    transaction mode (default_pool_size 4), ``ferropool_session`` in session
    mode (pool_size 10: a session-mode client holds its server connection)."""
    bouncer = PgBouncer(
        pg_server.dsn,
        {
            TX_DB: {"pool_mode": "transaction"},
            SESSION_DB: {"pool_mode": "session", "pool_size": 10},
        },
        default_pool_size=4,
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
def restartable_pgbouncer(pg_server: Any) -> Iterator[PgBouncer]:
    """A transaction-mode PgBouncer of the test's own, to stop and start."""
    bouncer = PgBouncer(pg_server.dsn, {TX_DB: {"pool_mode": "transaction"}}, default_pool_size=4)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture(scope="module")
def replica_set() -> Iterator[ReplicaSet]:
    """A primary (wal_level=replica, replication allowed from 127.0.0.1) and
    a streaming hot standby made with pg_basebackup -R."""
    with EmbeddedPostgres(
        replication=True, settings={"wal_level": "replica", "max_wal_senders": 4}
    ) as primary:
        standby = Standby(primary)
        try:
            standby.start()
            yield ReplicaSet(primary, standby)
        finally:
            standby.close()
