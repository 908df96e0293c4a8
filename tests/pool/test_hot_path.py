"""The hot path in Rust (issue 16): what it does, and when it steps aside.

getconn, putconn and the ``connection()`` blocks of ConnectionPool and
AsyncConnectionPool run in the native bases (``_core.Lender``,
``_core.AsyncLender``): one call each way for an idle connection, with
psycopg's ``_pool`` marker set and cleared there. These tests pin down the
outcomes a user can see: the marker, a subclass's own getconn/putconn still
called by its blocks, an ``async with`` block that never yields to the event
loop when a connection is idle, the flags that send a borrow to the Python
slow path, and hooks still called when configured.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import psycopg
import pytest

from ferropool import AsyncConnectionPool, ConnectionPool


def run_without_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run *coro* to its end with no event loop: it must never suspend."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine waited for the event loop")


def test_fast_path_marks_and_unmarks(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.wait()
        conn = pool.getconn()
        assert conn._pool is pool
        pool.putconn(conn)
        assert conn._pool is None
        with pytest.raises(ValueError, match="already returned"):
            pool.putconn(conn)
        with pool.connection() as conn:
            assert conn._pool is pool
        assert conn._pool is None
        assert pool.get_stats()["pool_available"] == 1


@pytest.mark.anyio
async def test_async_blocks_need_no_event_loop_on_the_fast_path(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()

        async def block() -> Any:
            async with pool.connection() as conn:
                assert conn._pool is pool
                return conn

        conn = run_without_loop(block())
        assert conn._pool is None
        # getconn() and putconn() stay coroutine functions, and need no
        # loop either when a connection is idle.
        conn = run_without_loop(pool.getconn())
        assert conn._pool is pool
        run_without_loop(pool.putconn(conn))
        assert pool.get_stats()["pool_available"] == 1


@pytest.mark.anyio
async def test_a_fast_block_returns_an_awaitable_that_works_however_it_is_awaited(
    dsn: str,
) -> None:
    """The fast path's done awaitable (``_core.Ready``, with ``am_send``)
    gives its value to ``await``, to iteration (``yield from``, asyncio
    wrapping it in a task) and to a coroutine stepped by hand alike."""
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()
        block = pool.connection()
        entering = block.__aenter__()
        assert inspect.isawaitable(entering)
        with pytest.raises(StopIteration) as stop:
            next(entering.__await__())
        conn = stop.value.value
        assert isinstance(conn, psycopg.AsyncConnection) and conn._pool is pool
        # Awaited again (as `await` does), or in a task, it gives the same.
        assert await entering is conn
        assert await asyncio.ensure_future(entering) is conn
        leaving = block.__aexit__(None, None, None)
        assert await leaving is None
        with pytest.raises(StopIteration) as stop:
            next(leaving.__await__())
        assert stop.value.value is None
        assert conn._pool is None
        assert pool.get_stats()["pool_available"] == 1
        with pytest.raises(TypeError):
            type(leaving)()


def test_a_subclass_getconn_and_putconn_are_called_by_blocks(dsn: str) -> None:
    calls: list[str] = []

    class Counting(ConnectionPool[Any]):
        def getconn(self, timeout: float | None = None) -> Any:
            calls.append("getconn")
            return super().getconn(timeout)

        def putconn(self, conn: Any) -> None:
            calls.append("putconn")
            super().putconn(conn)

    with Counting(dsn, min_size=1, open=True) as pool:
        with pool.connection() as conn:
            conn.execute("select 1")
        with pool.connection():
            pass
        assert calls == ["getconn", "putconn"] * 2
        assert pool.get_stats()["pool_available"] == 1


@pytest.mark.anyio
async def test_an_async_subclass_getconn_and_putconn_are_called_by_blocks(dsn: str) -> None:
    calls: list[str] = []

    class Counting(AsyncConnectionPool[Any]):
        async def getconn(self, timeout: float | None = None) -> Any:
            calls.append("getconn")
            return await super().getconn(timeout)

        async def putconn(self, conn: Any) -> None:
            calls.append("putconn")
            await super().putconn(conn)

    async with Counting(dsn, min_size=1) as pool:
        async with pool.connection() as conn:
            await conn.execute("select 1")
        async with pool.connection():
            pass
        assert calls == ["getconn", "putconn"] * 2
        assert pool.get_stats()["pool_available"] == 1


def test_the_fast_path_flags_follow_the_settings(dsn: str) -> None:
    def check(conn: psycopg.Connection[Any]) -> None:
        pass

    def reset(conn: psycopg.Connection[Any]) -> None:
        pass

    cases: list[tuple[dict[str, Any], tuple[bool, bool]]] = [
        ({}, (False, False)),
        ({"check": check}, (True, False)),
        ({"on_checkout": check}, (True, False)),
        ({"reset": reset}, (False, True)),
        ({"on_checkin": reset}, (False, True)),
        ({"leak_timeout": 60.0}, (True, True)),
    ]
    for options, flags in cases:
        with ConnectionPool(dsn, min_size=1, open=False, **options) as pool:
            assert pool._runner.core.fast_path == flags, options
    # psycopg_pool's open=None: opened with a warning at first use, which
    # the slow path gives; then the fast path is back.
    pool = ConnectionPool(dsn, min_size=1)
    try:
        assert pool._runner.core.fast_path == (True, False)
        with pytest.warns(DeprecationWarning, match="'open' parameter"):
            pool.wait()
            pool.putconn(pool.getconn())
        assert pool._runner.core.fast_path == (False, False)
    finally:
        pool.close()


def test_hooks_run_around_the_fast_path(dsn: str) -> None:
    seen: list[tuple[str, int]] = []
    with ConnectionPool(
        dsn,
        min_size=1,
        open=True,
        on_checkout=lambda c: seen.append(("out", id(c))),
        on_checkin=lambda c: seen.append(("in", id(c))),
    ) as pool:
        with pool.connection() as conn:
            assert conn._pool is pool
        conn = pool.getconn()
        pool.putconn(conn)
        assert [kind for kind, _ in seen] == ["out", "in", "out", "in"]


def test_close_returns_blocks_leave_a_connection_given_back_alone(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True, close_returns=True) as pool:
        assert pool.close_returns
        with pool.connection() as conn:
            conn.close()  # gives it back
            assert not conn.closed
            again = pool.getconn()  # lent again, to someone else
        # The block's exit left it alone: still lent, still marked.
        assert again is conn and conn._pool is pool
        pool.putconn(conn)
        assert pool.get_stats()["pool_available"] == 1


def test_the_native_methods_take_arguments_as_python_methods_do(dsn: str) -> None:
    # getconn, putconn and connection() are C methods parsing their own
    # arguments: by position or by name, and a misuse is a TypeError naming
    # the method and the argument, with the pool left as it was.
    assert str(inspect.signature(ConnectionPool.getconn)) == "(self, timeout=None)"
    assert str(inspect.signature(ConnectionPool.putconn)) == "(self, conn)"
    assert str(inspect.signature(ConnectionPool.connection)) == "(self, timeout=None)"
    assert ConnectionPool.getconn.__doc__
    assert ConnectionPool.getconn.__doc__.startswith("Borrow a connection")
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        for borrow in (pool.getconn, lambda: pool.getconn(1.0), lambda: pool.getconn(timeout=1.0)):
            conn = borrow()
            assert conn._pool is pool
            pool.putconn(conn=conn)
        with pool.connection(1.0) as conn, pool.connection(timeout=None) as other:
            assert conn is not other
        loose: Any = pool  # misused on purpose below
        misuses = {
            "getconn() takes at most 1 positional argument (2 given)": lambda: loose.getconn(1, 2),
            "getconn() got an unexpected keyword argument 'timeout_s'": lambda: loose.getconn(
                timeout_s=1
            ),
            "getconn() got multiple values for argument 'timeout'": lambda: loose.getconn(
                1, timeout=1
            ),
            "putconn() missing 1 required argument: 'conn'": lambda: loose.putconn(),
            "connection() got an unexpected keyword argument 'conn'": lambda: loose.connection(
                conn=None
            ),
            "__exit__() takes 3 arguments (0 given)": lambda: loose.connection().__exit__(),
        }
        for message, misuse in misuses.items():
            with pytest.raises(TypeError) as raised:
                misuse()
            assert str(raised.value) == message
        unbound: Any = ConnectionPool.getconn
        with pytest.raises(TypeError, match="doesn't apply to a 'object' object"):
            unbound(object())
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 2)


@pytest.mark.anyio
async def test_the_native_async_methods_take_arguments_as_python_methods_do(dsn: str) -> None:
    assert str(inspect.signature(AsyncConnectionPool.connection)) == "(self, timeout=None)"
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()
        async with pool.connection(timeout=1.0) as conn:
            assert conn._pool is pool
        block: Any = pool.connection()
        with pytest.raises(TypeError, match=r"^__aexit__\(\) takes 3 arguments \(1 given\)$"):
            block.__aexit__(None)
        assert pool.get_stats()["pool_available"] == 1
