"""Loading an HTTP server: wrk when it is installed, a bundled generator otherwise.

Both keep one connection alive per client (16, as the app has threads)
and send ``GET /`` as fast as answers come back, for a given time, and
report requests per second and the median and 99th percentile latency.
wrk (C, event-driven) costs the machine much less per request than the
bundled generator (Python threads, http.client), so figures taken with one
do not compare with figures taken with the other; within a run, every
contender is loaded by the same one. Short runs (warm-ups) always use the
bundled generator: wrk only takes whole seconds.

A request that fails, or answers anything but 200, makes the round fail:
the figures of an app that errors would be meaningless.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
from time import perf_counter
from typing import Final, Literal

from .errors import CliError
from .measure import summarize
from .results import RoundResult
from .workloads import Tally, ThreadGang

__all__ = ["HttpLoad", "LoadGeneratorChoice"]

LoadGeneratorChoice = Literal["auto", "wrk", "bundled"]

BUNDLED: Final = "the bundled load generator (Python threads, http.client)"
_HOST: Final = "127.0.0.1"
_WRK_THREADS: Final = 2
_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class HttpLoad:
    """Load for one app at a time, from *clients* keep-alive connections."""

    def __init__(self, choice: LoadGeneratorChoice, clients: int) -> None:
        self._wrk = shutil.which("wrk") if choice != "bundled" else None
        if choice == "wrk" and self._wrk is None:
            raise CliError(
                "--load-generator wrk: wrk is not installed (apt-get install wrk), "
                "or use --load-generator bundled"
            )
        self.clients = clients
        self.name = f"wrk {_wrk_version(self._wrk)}" if self._wrk else BUNDLED
        self._port = 0
        self._gang: ThreadGang[float, Tally] = ThreadGang(clients, self._client, name="bench-http")

    def round(self, port: int, seconds: float) -> RoundResult:
        """Load the app on *port* for about *seconds*."""
        if self._wrk is not None and seconds >= 1:
            return self._run_wrk(port, round(seconds))
        self._port = port
        done = self._gang.run(perf_counter() + seconds)
        return summarize(done.results, done.seconds)

    def close(self) -> None:
        self._gang.close()

    def __enter__(self) -> HttpLoad:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _client(self, deadline: float) -> Tally:
        """One keep-alive connection sending requests until *deadline*."""
        conn = http.client.HTTPConnection(_HOST, self._port, timeout=30)
        clock = perf_counter
        latencies: list[float] = []
        record = latencies.append
        try:
            while True:
                started = clock()
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                finished = clock()
                if response.status != 200:
                    raise CliError(f"the app on port {self._port} answered HTTP {response.status}")
                record(finished - started)
                if finished >= deadline:
                    return Tally(len(latencies), latencies)
        except OSError as ex:
            raise CliError(f"the app on port {self._port} failed: {ex}") from None
        finally:
            conn.close()

    def _run_wrk(self, port: int, seconds: int) -> RoundResult:
        assert self._wrk is not None
        command = [self._wrk, "-t", str(min(_WRK_THREADS, self.clients)),
                   "-c", str(self.clients), "-d", f"{seconds}s", "--timeout", "10s",
                   "--latency", f"http://{_HOST}:{port}/"]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        except subprocess.TimeoutExpired:
            raise CliError(f"wrk did not finish loading the app on port {port}") from None
        if done.returncode != 0:
            raise CliError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()}")
        return parse_wrk(done.stdout, port)


def parse_wrk(output: str, port: int) -> RoundResult:
    """Requests, duration and latency percentiles from wrk --latency's report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", output)
    if total is None:
        raise CliError(f"cannot read wrk's report: {output.strip()[:200]!r}")
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    problem = failed or socket_errors
    if problem is not None:
        what = problem.group(0)
        raise CliError(f"the app on port {port} failed under load: wrk reports {what.strip()}")
    return RoundResult(
        ops=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)],
        p50=_latency(output, "50"),
        p99=_latency(output, "99"),
    )


def _latency(output: str, percent: str) -> float | None:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else None


def _wrk_version(wrk: str) -> str:
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." (exit status 1: no URL given)
    try:
        output = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "version unknown"
    found = re.search(r"wrk (\S+)", output)
    return found.group(1) if found else "version unknown"
