"""TLS with sslmode=verify-full through the pool.

The server is Debian's PostgreSQL (the pip-shipped build has no TLS) with a
certificate for 127.0.0.1 and localhost signed by a test CA, and SCRAM
authentication; its dsn carries sslmode=verify-full and sslrootcert. Through
the pool, under a few threads, every connection is encrypted, as the server
itself reports (pg_stat_ssl). When the client cannot verify the server (a
CA that did not sign its certificate, a host name the certificate does not
name, a missing root certificate) no connection is made and the waiting
request gets a PoolTimeout saying why, without the password.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool import ConnectionPool, PoolTimeout
from ferropool.embedded import EmbeddedPostgres
from tests.fixtures.helpers import DEADLINE
from tests.fixtures.load import Load
from tests.fixtures.reliability import SecretWatch, report


def tls_query(pool: ConnectionPool[Any]) -> None:
    with pool.connection(timeout=DEADLINE) as conn:
        row = conn.execute(
            "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
        assert row is not None and row[0] is True, f"not encrypted: {row}"
        assert conn.pgconn.ssl_in_use


def test_verify_full_through_the_pool(
    tls_server: EmbeddedPostgres, app_name: str, secret_watch: SecretWatch
) -> None:
    secret_watch.protect(tls_server.password)
    params = conninfo_to_dict(tls_server.dsn)
    assert params["sslmode"] == "verify-full" and params["sslrootcert"]
    with ConnectionPool(
        tls_server.dsn, min_size=3, open=True, kwargs={"application_name": app_name}
    ) as pool:
        pool.wait(timeout=DEADLINE)
        load = Load(pool, 4, tls_query).start()
        try:
            time.sleep(1.0)
        finally:
            load.stop(bound=DEADLINE)
        # The server's view of every connection of the pool.
        with psycopg.connect(tls_server.dsn) as admin:
            rows = admin.execute(
                "select s.ssl, s.version from pg_stat_activity a"
                " join pg_stat_ssl s using (pid) where a.application_name = %s",
                (app_name,),
            ).fetchall()
        stats = pool.get_stats()
    requests = load.snapshot()
    secret_watch.add_requests(requests)
    failed = [r.describe() for r in requests if r.error is not None]
    report(
        "tls_verify_full",
        "ferropool",
        requests=len(requests),
        failed=len(failed),
        server_connections=len(rows),
        encrypted=sum(1 for ssl, _ in rows if ssl),
        protocol=sorted({v for _, v in rows}),
    )
    assert failed == [], failed[:3]
    assert len(requests) >= 20
    assert len(rows) == stats["pool_size"] == 3
    assert all(ssl for ssl, _ in rows), rows
    secret_watch.assert_clean()


def other_ca(directory: Path) -> Path:
    """A CA certificate that did not sign the server's."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed (apt-get install openssl)"
    key, crt = directory / "other-ca.key", directory / "other-ca.crt"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command = [openssl, "req", "-x509", *new_key, "-keyout", str(key), "-out", str(crt)]
    command += ["-days", "2", "-subj", "/CN=not the ferropool test CA"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return crt


CASES = {
    "wrong_ca": ("certificate verify failed", lambda d: {"sslrootcert": str(other_ca(d))}),
    "wrong_host_name": (
        'does not match host name "db.example.invalid"',
        lambda d: {"host": "db.example.invalid", "hostaddr": "127.0.0.1"},
    ),
    "missing_root_certificate": (
        "root certificate file",
        lambda d: {"sslrootcert": str(d / "missing.crt")},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unverifiable_server_gives_a_clear_pool_timeout(
    case: str, tls_server: EmbeddedPostgres, tmp_path: Path, secret_watch: SecretWatch
) -> None:
    secret_watch.protect(tls_server.password)
    expected, change = CASES[case]
    conninfo = make_conninfo(tls_server.dsn, **change(tmp_path))
    with ConnectionPool(conninfo, min_size=1, timeout=1.0, open=True) as pool:
        with pytest.raises(PoolTimeout) as info:
            pool.getconn()
        stats = pool.get_stats()
    secret_watch.add(info.value)
    message = str(info.value)
    report("tls_refused", "ferropool", case=case, message=message[:160])
    assert "last connection error" in message, message
    assert expected in message, message
    assert stats["connections_errors"] >= 1
    assert stats["connections_num"] == stats["connections_errors"], "nothing connected"
    secret_watch.assert_clean()


def test_the_right_ca_and_host_name_connect(tls_server: EmbeddedPostgres) -> None:
    """A control for the cases above: they fail because of verification,
    not the server. With localhost (also in the certificate) instead of
    127.0.0.1, verify-full still connects."""
    conninfo = make_conninfo(tls_server.dsn, host="localhost", hostaddr="127.0.0.1")
    with ConnectionPool(conninfo, min_size=1, open=True) as pool:
        tls_query(pool)
