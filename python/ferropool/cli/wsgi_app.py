"""The threaded WSGI application the end-to-end bench loads over HTTP.

One ``select 1`` per request on a connection borrowed from one contender,
served by waitress with 16 threads: the shape of a small Flask or Django
view behind a threaded WSGI server. The bench runs one such process per
contender (``main()``, see end_to_end.AppProcess), so each app owns its
process, its GIL and its pool, as in production. It must never take the
connection string on its command line, where ``ps`` would show the
password: it comes in the environment, and is removed from it at once.

Talking with the bench, one line at a time: the app prints ``loaded`` once
its imports are done, opens its pool when it reads ``open``, prints
``ready PORT`` once it listens, answers ``quiet`` with ``quiet`` once no
request is being served (the load generator stops at a round's end, but
requests it sent may still be running, opening connections), and exits
when its stdin closes (the parent died or is done). An error is one line on stderr, password masked,
and exit status 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from .contenders import CONTENDERS, ContenderKind, open_contender
from .errors import safe_message
from .workloads import Pool

__all__ = ["CONNINFO_ENV", "CONTENDER_ENV", "THREADS_ENV", "InFlight", "main", "make_app"]

CONNINFO_ENV: Final = "FERROPOOL_BENCH_APP_CONNINFO"
CONTENDER_ENV: Final = "FERROPOOL_BENCH_APP_CONTENDER"
THREADS_ENV: Final = "FERROPOOL_BENCH_APP_THREADS"
HOST: Final = "127.0.0.1"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class InFlight:
    """How many requests are being served; wait_none() waits for none."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._changed:
            self._count -= 1
            if not self._count:
                self._changed.notify_all()

    def wait_none(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._count)


def make_app(pool: Pool, in_flight: InFlight) -> WSGIApp:
    """A WSGI application answering each request with one query on *pool*."""
    connection = pool.connection

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with in_flight, connection() as conn:
            row = conn.execute("select 1").fetchone()
        body = b"%d\n" % row[0]
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def main() -> int:
    conninfo = os.environ.pop(CONNINFO_ENV, "")
    kinds = {str(kind): kind for kind in CONTENDERS}
    kind = kinds.get(os.environ.get(CONTENDER_ENV, ""))
    if kind is None:
        print(f"error: {CONTENDER_ENV} must be one of {', '.join(kinds)}", file=sys.stderr)
        return 1
    threads = int(os.environ.get(THREADS_ENV, "16"))
    try:
        return _serve(conninfo, kind, threads)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group
        return 0
    except Exception as ex:
        print(f"error: {safe_message(ex)}", file=sys.stderr)
        return 1


def _serve(conninfo: str, kind: ContenderKind, threads: int) -> int:
    from waitress.server import TcpWSGIServer, create_server

    # With 16 keep-alive clients on 16 threads, requests queue briefly all
    # the time, and waitress says so on every one ("Task queue depth is 2").
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    _say("loaded")
    if sys.stdin.readline().strip() != "open":
        return 0
    in_flight = InFlight()
    with open_contender(kind, conninfo, threads) as pool:
        server = create_server(
            make_app(pool, in_flight), host=HOST, port=0, threads=threads, asyncore_use_poll=True
        )
        assert isinstance(server, TcpWSGIServer), "one TCP address to listen on"
        _say(f"ready {server.getsockname()[1]}")
        threading.Thread(target=_follow_input, args=(in_flight,), daemon=True).start()
        # Returns on KeyboardInterrupt, after waiting for requests in progress.
        server.run()
    return 0


def _follow_input(in_flight: InFlight) -> None:
    for line in sys.stdin:
        if line.strip() == "quiet":
            in_flight.wait_none()
            _say("quiet")
    # End of input: waitress's loop stops cleanly on KeyboardInterrupt, then
    # the pool closes.
    os.kill(os.getpid(), signal.SIGINT)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
