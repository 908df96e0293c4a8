"""A throwaway MariaDB server for the DB-API adapter tests.

Debian's ``mariadb-server`` package provides the programs; the fixture
makes a fresh data directory in a temporary folder, starts ``mariadbd`` on
127.0.0.1 and a free port as the package's unprivileged ``mysql`` user
(when the suite runs as root; as the current user otherwise), creates a
database and a password-protected user for the tests, and at session end
stops the server and deletes everything. Startup is bounded: a server that
is not answering within ``_START_TIMEOUT`` seconds fails the session with
its error log.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from ferropool.embedded import free_port

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_INSTALL_TIMEOUT = 120.0
_OS_USER = "mysql"  # created by Debian's mariadb-server package


@dataclass(frozen=True)
class MariaDB:
    """How to reach the test server: a database and a user of its own, and
    root for administration (KILL, processlist)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "connect_timeout": 10,
        }
        params.update(kwargs)
        return pymysql.connect(**params)

    def admin(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            database=self.database,
            autocommit=True,
            connect_timeout=10,
        )

    def kill(self, connection_id: int) -> None:
        """End one client connection, as a DBA (or wait_timeout) would."""
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(f"KILL CONNECTION {int(connection_id)}")
            # KILL returns at once: wait until the session is gone.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM information_schema.processlist WHERE id = %s",
                    (connection_id,),
                )
                row = cur.fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.01)
        raise AssertionError(f"connection {connection_id} still alive after KILL")

    def sessions(self, user: str | None = None) -> int:
        """How many client sessions *user* (default: the tests' user) has."""
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE user = %s",
                (user or self.user,),
            )
            row = cur.fetchone()
        assert row is not None
        return int(row[0])


def _program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(
            f"{name} not found: install Debian's MariaDB server"
            " (apt-get install -y mariadb-server) to run the MariaDB tests"
        )
    return path


def _as_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(_OS_USER)
    except KeyError:
        pytest.fail(f"system user {_OS_USER!r} missing: reinstall mariadb-server")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl


def _stop_with_parent() -> None:
    """In the server's process, before exec: a SIGTERM (a clean shutdown)
    when the test run dies without its teardown (killed, crashed)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no error log)"


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    mariadbd = _program("mariadbd")
    install_db = _program("mariadb-install-db")
    as_user = _as_user()
    base = Path(tempfile.mkdtemp(prefix="ferropool-mariadb-"))
    base.chmod(0o755)
    if as_user:
        os.chown(base, as_user["user"], as_user["group"])
    datadir = base / "data"
    error_log = base / "error.log"
    # A small redo log: the default 96 MiB file is written at every start.
    server_options = ["--no-defaults", f"--datadir={datadir}", "--innodb-log-file-size=8M"]
    env = {**os.environ, "LC_ALL": "C"}
    proc: subprocess.Popen[bytes] | None = None
    try:
        install = subprocess.run(
            [
                install_db,
                *server_options,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT,
            check=False,
            env=env,
            cwd=base,
            **as_user,
        )
        if install.returncode != 0:
            pytest.fail(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
        port = free_port()
        proc = subprocess.Popen(
            [
                mariadbd,
                *server_options,
                f"--socket={base / 'mysqld.sock'}",
                f"--pid-file={base / 'mysqld.pid'}",
                f"--log-error={error_log}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=base,
            # Its own session: a Ctrl-C meant for pytest must not kill it
            # under the cleanup code; but it must not outlive the run.
            start_new_session=True,
            preexec_fn=_stop_with_parent,  # runs after the switch to the server user
            **as_user,
        )
        server = MariaDB(
            host="127.0.0.1",
            port=port,
            user="ferropool",
            password="ferropool-secret",
            database="ferropool_test",
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                root = pymysql.connect(
                    host=server.host, port=port, user="root", password="", connect_timeout=2
                )
                break
            except pymysql.err.OperationalError:
                if proc.poll() is not None:
                    pytest.fail(f"mariadbd exited with {proc.returncode}:\n{_log_tail(error_log)}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"mariadbd not ready after {_START_TIMEOUT} s:\n{_log_tail(error_log)}"
                    )
                time.sleep(0.05)
        with contextlib.closing(root), root.cursor() as cur:
            cur.execute(f"CREATE DATABASE {server.database}")
            cur.execute(f"CREATE USER '{server.user}'@'%' IDENTIFIED BY '{server.password}'")
            cur.execute(f"GRANT ALL ON {server.database}.* TO '{server.user}'@'%'")
        yield server
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_TIMEOUT)
        shutil.rmtree(base, ignore_errors=True)
