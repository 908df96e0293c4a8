"""A bounded ping: one empty query, with a deadline.

psycopg's own calls wait for the server without a time limit, so a ping on
a half-open connection (network cut, no FIN or RST) would hold a worker
until TCP keepalives give up. These pings drive libpq directly with a
deadline; on timeout the connection is closed (its state is unknown) and
the caller replaces it. Only used on connections the pool owns at that
moment (lent to itself for validation), so nothing else touches them.
Written once for the sync and the async pools (tools/async_to_sync.py).
"""

from __future__ import annotations

import asyncio
import select
from time import monotonic
from typing import Any

from psycopg import errors as e
from psycopg.pq import ExecStatus, TransactionStatus

# The default time a keepalive or liveness ping may take.
PING_TIMEOUT = 5.0


async def aping(conn: Any, timeout: float = PING_TIMEOUT) -> None:
    """Send an empty query and wait for its answer; raise if the server
    does not answer correctly within *timeout* seconds.

    On libpq directly, not psycopg's `execute`: that has no deadline, and
    cancelled at one (async) it sends a CancelRequest and waits for it, over
    what may be a dead network."""
    pgconn = conn.pgconn
    if pgconn.transaction_status != TransactionStatus.IDLE:
        raise e.OperationalError("connection not idle: cannot ping")
    deadline = monotonic() + timeout
    fd = pgconn.socket
    pgconn.send_query(b"")
    while pgconn.flush():
        await _wait(fd, deadline, write=True, conn=conn)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        await _wait(fd, deadline, write=False, conn=conn)
    _check_results(pgconn)


async def _wait(fd: int, deadline: float, *, write: bool, conn: Any) -> None:
    """Wait for *fd* to be writable (or readable) until *deadline*; past it,
    close the connection (its state is unknown) and raise."""
    left = deadline - monotonic()
    if left > 0:
        if True:  # ASYNC
            # On the running loop, watching the socket.
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            watch, unwatch = (
                (loop.add_writer, loop.remove_writer)
                if write
                else (loop.add_reader, loop.remove_reader)
            )
            watch(fd, lambda: None if ready.done() else ready.set_result(None))
            try:
                await asyncio.wait_for(ready, left)
                return
            except asyncio.TimeoutError:
                pass
            finally:
                unwatch(fd)
        else:
            r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
            if r or w:
                return
    conn.pgconn.finish()
    raise e.OperationalError("ping: no answer from the server in time")


def _check_results(pgconn: Any) -> None:
    ok = False
    while (res := pgconn.get_result()) is not None:
        if res.status == ExecStatus.EMPTY_QUERY:
            ok = True
        elif res.status == ExecStatus.FATAL_ERROR:
            raise e.error_from_result(res, encoding="utf-8")
    if not ok:
        raise e.OperationalError("ping: unexpected answer from the server")
