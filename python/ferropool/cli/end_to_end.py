"""The end-to-end scenario: the same web application, once per contender.

Over HTTP, each contender serves one copy of the WSGI app in wsgi_app
(waitress, 16 threads, one ``select 1`` per request) in a process of its
own, loaded in turn by the same load generator: requests per second and
p50/p99 latency as a client sees them. Then the same comparison without
HTTP, 16 threads in this process doing the request's database part, so
that the gain from pooling can be told apart from the HTTP stack sharing
the machine's cores with the server.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from functools import partial
from time import monotonic
from typing import IO, Final

from .contenders import CONTENDERS, ContenderKind, configuration
from .errors import CliError
from .http_load import HttpLoad
from .measure import (
    Entry,
    ScenarioContext,
    alternate,
    alternate_steps,
    charged,
    measure_threads,
    open_all,
)
from .plan import Plan
from .progress import Steps
from .results import MeasurementResult, RoundResult
from .workloads import select_one_until
from .wsgi_app import CONNINFO_ENV, CONTENDER_ENV, THREADS_ENV

__all__ = ["DESCRIPTION", "PEAK_CONNECTIONS", "AppProcess", "run", "steps"]

THREADS: Final = 16
DESCRIPTION: Final = (
    f"the same WSGI app (waitress, {THREADS} threads, select 1 per request), one "
    f"process per contender, loaded over HTTP with {THREADS} keep-alive connections by "
    f"wrk, or the bundled load generator without it; then {THREADS} threads doing the "
    "same without HTTP"
)
# Three apps' pools full, and the fourth app's connections open at once.
PEAK_CONNECTIONS: Final = len(CONTENDERS) * THREADS
# Starting Python and importing psycopg and waitress; then filling a pool.
_LOAD_TIMEOUT: Final = 60.0
_OPEN_TIMEOUT: Final = 90.0
_EXIT_TIMEOUT: Final = 15.0
# Not "-m ferropool.cli.wsgi_app": importing the package imports the module
# first, and runpy warns about running a module already imported.
_APP_MAIN: Final = "import sys; from ferropool.cli.wsgi_app import main; sys.exit(main())"


def steps(plan: Plan) -> Steps:
    over_http = alternate_steps(1, len(CONTENDERS), plan, round_seconds=plan.http_round_seconds)
    return over_http + alternate_steps(1, len(CONTENDERS), plan)


def run(ctx: ScenarioContext) -> tuple[MeasurementResult, ...]:
    return _over_http(ctx), _without_http(ctx)


def _over_http(ctx: ScenarioContext) -> MeasurementResult:
    title = f"end to end: over HTTP, {THREADS} threads, select 1"
    with ExitStack() as stack:
        # Start every app first, so that their imports overlap; each opens
        # its pool on its own account afterwards.
        apps = {
            kind: stack.enter_context(charged(ctx.meter, kind, AppProcess(kind, ctx.conninfo)))
            for kind in CONTENDERS
        }
        ports = {}
        for kind, app in apps.items():
            with ctx.meter.charge(kind):
                ports[kind] = app.open()
        load = stack.enter_context(HttpLoad(ctx.load_generator, THREADS))
        entries = [
            Entry(kind, configuration(kind), partial(_http_round, load, apps[kind], ports[kind]))
            for kind in CONTENDERS
        ]
        results = alternate(title, entries, ctx, round_seconds=ctx.plan.http_round_seconds)
        transport = f"HTTP: {THREADS} keep-alive connections from {load.name}"
    return MeasurementResult(
        "end_to_end.http", title, "request", THREADS, THREADS, results, transport=transport
    )


def _http_round(load: HttpLoad, app: AppProcess, port: int, seconds: float) -> RoundResult:
    """One round of load on *app*, over once the app serves no request: the
    requests still running when the load generator stops are the round's
    (and open connections on its contender's account)."""
    result = load.round(port, seconds)
    app.wait_quiet()
    return result


def _without_http(ctx: ScenarioContext) -> MeasurementResult:
    with ExitStack() as stack:
        pools = open_all(stack, ctx, THREADS)
        return measure_threads(
            ctx,
            pools,
            lambda pool: partial(select_one_until, pool),
            key="end_to_end.no_http",
            title=f"end to end: no HTTP, {THREADS} threads, select 1",
            unit="request",
            threads=THREADS,
            connections=THREADS,
        )


class AppProcess:
    """One contender's copy of the WSGI app, in a child process (see wsgi_app)."""

    def __init__(self, kind: ContenderKind, conninfo: str, threads: int = THREADS) -> None:
        self.kind = kind
        env = {**os.environ, CONNINFO_ENV: conninfo, CONTENDER_ENV: kind}
        env[THREADS_ENV] = str(threads)
        # A file, not a pipe: nobody reads the app's log while it runs, and
        # a full pipe would block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _APP_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            # Unbuffered, so that select() on the pipe sees every line.
            bufsize=0,
        )

    def open(self) -> int:
        """Have the app open its pool and listen; return its port."""
        self._expect("loaded", _LOAD_TIMEOUT)
        self._pipe(self._proc.stdin).write(b"open\n")
        return int(self._expect("ready", _OPEN_TIMEOUT).split()[1])

    def wait_quiet(self) -> None:
        """Wait until the app serves no request."""
        self._pipe(self._proc.stdin).write(b"quiet\n")
        self._expect("quiet", _OPEN_TIMEOUT)

    def close(self) -> None:
        """Ask the app to finish (end of its input), and wait for it to close its pool."""
        with contextlib.suppress(OSError):
            self._pipe(self._proc.stdin).close()
        try:
            self._proc.wait(_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        finally:
            self._pipe(self._proc.stdout).close()
            self._log.close()

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _expect(self, word: str, timeout: float) -> str:
        stdout = self._pipe(self._proc.stdout)
        deadline = monotonic() + timeout
        while True:
            left = deadline - monotonic()
            if left <= 0:
                raise CliError(
                    f"the {self.kind} WSGI app did not say {word!r} within {timeout:g} s"
                )
            ready, _, _ = select.select([stdout], [], [], left)
            if not ready:
                continue
            line = stdout.readline().decode(errors="replace").strip()
            if not line:
                self._proc.wait(_EXIT_TIMEOUT)
                raise CliError(f"the {self.kind} WSGI app exited: {self._last_words()}")
            if line.split()[0] == word:
                return line

    def _last_words(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self._proc.returncode}"

    @staticmethod
    def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
        assert stream is not None, "opened with PIPE"
        return stream
