"""A TCP proxy on loopback that puts network faults between a pool and its server.

``FaultProxy`` relays 127.0.0.1:<port> to the server and, on demand:

* adds latency: every chunk is held ``latency`` seconds before it is passed
  on, in both directions, so a round trip costs two latencies more;
* becomes a black hole: the bytes of every open connection are read and
  dropped, and nothing is closed (no FIN, no RST), as after a network cut;
  connections accepted meanwhile are swallowed the same way, so a connect
  attempt hangs until the client's connect_timeout. ``restore()`` makes new
  connections work again; the black-holed ones stay dead (their bytes are
  lost);
* resets connections: every open connection is closed with SO_LINGER 0, so
  both the client and the server get an RST.

The relay runs on an asyncio loop in a thread of its own, so that a reset
closes sockets on the thread that polls them (closing a socket another
thread is blocked on does not send anything on Linux). It must never listen
on anything but 127.0.0.1, nor block the test's threads for longer than a
call into its loop.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from psycopg.conninfo import conninfo_to_dict, make_conninfo

T = TypeVar("T")

_LINGER_RST = struct.pack("ii", 1, 0)
_CALL_TIMEOUT = 10.0
_UPSTREAM_CONNECT_TIMEOUT = 5.0


class _Link:
    """One relayed connection: the client's side and the server's."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter | None) -> None:
        self.client = client
        self.server = server
        # Dead: black-holed; bytes are dropped and nothing is ever closed.
        self.dead = server is None
        self.closed = False

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]

    def close(self) -> None:
        """An orderly close (FIN to both ends), as a relay does on EOF."""
        if not self.closed:
            self.closed = True
            for w in self.writers():
                w.close()

    def reset(self) -> None:
        """Close both ends with an RST."""
        if not self.closed:
            self.closed = True
            for w in self.writers():
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                w.transport.abort()


class FaultProxy:
    """A relay to *host*:*port* whose traffic can be delayed, dropped or reset."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.latency = 0.0
        self.accepted = 0
        self._black_hole = False
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        self._server: asyncio.Server = self._call(self._listen())
        self.port: int = self._server.sockets[0].getsockname()[1]

    # ---- faults, called from the test's threads ---------------------------

    def set_latency(self, seconds: float) -> None:
        """Hold every chunk *seconds* before passing it on (0: no delay)."""
        self.latency = seconds

    def black_hole(self) -> int:
        """Drop all traffic, open and new connections alike, closing nothing.
        Returns how many open connections were cut."""
        return self._call(self._cut())

    def restore(self) -> None:
        """Relay new connections again (black-holed ones stay dead)."""
        self._black_hole = False

    def reset_all(self) -> int:
        """Send an RST to both ends of every open connection; return their count."""
        return self._call(self._reset())

    @property
    def open_links(self) -> int:
        return self._call(self._count())

    def dsn(self, dsn: str) -> str:
        """*dsn* pointed at this proxy instead of the server."""
        params = conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        params.pop("hostaddr", None)
        return make_conninfo(**params)

    def close(self) -> None:
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CALL_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    # ---- the relay, on the proxy's loop -------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=256)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._black_hole:
            link = _Link(writer, None)
            self._links.append(link)
            await self._pump(reader, None, link)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._target), _UPSTREAM_CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            _Link(writer, None).reset()  # the server is unreachable: so is the proxy
            return
        link = _Link(writer, up_writer)
        self._links.append(link)
        task = asyncio.ensure_future(self._pump(up_reader, writer, link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._pump(reader, up_writer, link)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None, link: _Link
    ) -> None:
        try:
            while data := await src.read(65536):
                if link.dead or dst is None:
                    continue
                if self.latency:
                    await asyncio.sleep(self.latency)
                    if link.dead:
                        continue
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        # A black-holed link never passes a close on: the other end must
        # see nothing at all.
        if not link.dead:
            link.close()

    async def _cut(self) -> int:
        self._black_hole = True
        cut = 0
        for link in self._links:
            if not link.closed and not link.dead:
                link.dead = True
                cut += 1
        return cut

    async def _reset(self) -> int:
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.reset()
        self._links = []
        return len(links)

    async def _count(self) -> int:
        self._links = [link for link in self._links if not link.closed]
        return sum(1 for link in self._links if not link.dead)

    async def _shutdown(self) -> None:
        self._server.close()
        for link in self._links:
            link.reset()
        self._links = []
        await asyncio.sleep(0)


@contextmanager
def fault_proxy(dsn: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of *dsn*'s server, closed on exit."""
    params = conninfo_to_dict(dsn)
    proxy = FaultProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)))
    try:
        yield proxy
    finally:
        proxy.close()
