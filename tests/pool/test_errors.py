"""psycopg_pool's exception handlers catch ferropool's errors.

Code written for psycopg_pool (Django's pool tests among it) catches
``psycopg_pool.PoolTimeout``, ``PoolClosed`` and ``TooManyRequests``. With
psycopg_pool installed, ferropool's exceptions are subclasses of those, so
the same ``except`` clauses catch what every ferropool pool raises, sync and
async; they stay ``psycopg.OperationalError``s. Without psycopg_pool (made
unimportable in a subprocess) ferropool imports and behaves as before.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import psycopg
import psycopg_pool
import pytest

import ferropool
from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)
from ferropool.adapters.dbapi import Pool as DbapiPool
from tests.fixtures.helpers import DEADLINE, wait_until
from tests.fixtures.helpers_async import queued

NAMES = ["PoolTimeout", "PoolClosed", "TooManyRequests"]


@pytest.mark.parametrize("name", NAMES)
def test_each_error_is_psycopg_pools_and_psycopgs(name: str) -> None:
    ours, theirs = getattr(ferropool, name), getattr(psycopg_pool, name)
    assert issubclass(ours, theirs)
    assert issubclass(ours, psycopg.OperationalError)
    assert ours.__module__ == "ferropool"
    assert ours.__name__ == theirs.__name__
    # psycopg_pool's own errors are not ferropool's.
    assert not issubclass(theirs, ours)


def _caught(fn: Any) -> str:
    """Call *fn*; name the psycopg_pool handler that caught what it raised."""
    try:
        fn()
    except psycopg_pool.PoolTimeout:
        return "PoolTimeout"
    except psycopg_pool.TooManyRequests:
        return "TooManyRequests"
    except psycopg_pool.PoolClosed:
        return "PoolClosed"
    return "nothing raised"


class Request:
    """Run *fn* on a thread; ``caught`` names the psycopg_pool handler that caught it."""

    def __init__(self, fn: Any) -> None:
        self.caught = ""
        self._thread = threading.Thread(target=self._run, args=(fn,))
        self._thread.start()

    def _run(self, fn: Any) -> None:
        self.caught = _caught(fn)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@pytest.mark.parametrize("cls", [ConnectionPool, NullConnectionPool])
def test_psycopg_pool_handlers_catch_a_sync_pools_errors(dsn: str, cls: Any) -> None:
    sizes = {} if cls is NullConnectionPool else {"min_size": 1}
    pool = cls(dsn, max_size=1, max_waiting=1, open=True, **sizes)
    held = pool.getconn(timeout=DEADLINE)
    assert _caught(lambda: pool.getconn(timeout=0.05)) == "PoolTimeout"

    # One request waits; the next one is one too many.
    waiter = Request(lambda: pool.getconn(timeout=DEADLINE))
    wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="one request queued")
    assert _caught(lambda: pool.getconn(timeout=DEADLINE)) == "TooManyRequests"
    pool.close()
    waiter.join(DEADLINE)
    assert waiter.caught == "PoolClosed"
    assert _caught(lambda: pool.getconn()) == "PoolClosed"
    pool.putconn(held)


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [AsyncConnectionPool, AsyncNullConnectionPool])
async def test_psycopg_pool_handlers_catch_an_async_pools_errors(dsn: str, cls: Any) -> None:
    sizes = {} if cls is AsyncNullConnectionPool else {"min_size": 1}
    pool = cls(dsn, max_size=1, max_waiting=1, open=False, **sizes)
    await pool.open()
    held = await pool.getconn(timeout=DEADLINE)
    with pytest.raises(psycopg_pool.PoolTimeout):
        await pool.getconn(timeout=0.05)

    waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
    await queued(pool, 1)
    with pytest.raises(psycopg_pool.TooManyRequests):
        await pool.getconn(timeout=DEADLINE)
    await pool.close()
    with pytest.raises(psycopg_pool.PoolClosed):
        await asyncio.wait_for(waiter, DEADLINE)
    with pytest.raises(psycopg_pool.PoolClosed):
        await pool.getconn()
    await pool.putconn(held)


def test_psycopg_pool_handlers_catch_the_dbapi_pools_errors(dsn: str) -> None:
    with DbapiPool(lambda: psycopg.connect(dsn), min_size=1, max_size=1) as pool:
        held = pool.getconn(timeout=DEADLINE)
        assert _caught(lambda: pool.getconn(timeout=0.05)) == "PoolTimeout"
        pool.putconn(held)
    assert _caught(lambda: pool.getconn()) == "PoolClosed"


# ---- without psycopg_pool -------------------------------------------------------

WITHOUT = textwrap.dedent(
    """
    import os, sys
    {block}
    import psycopg
    import ferropool
    from ferropool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

    for exc in (PoolClosed, PoolTimeout, TooManyRequests):
        assert exc.__bases__ == (psycopg.errors.OperationalError,), exc.__mro__
    assert sys.modules.get("psycopg_pool") is None, "psycopg_pool was imported"

    with ConnectionPool(os.environ["DSN"], min_size=1, max_size=1, open=True) as pool:
        held = pool.getconn(timeout=10)
        try:
            pool.getconn(timeout=0.05)
        except psycopg.OperationalError as ex:
            assert type(ex) is PoolTimeout, type(ex)
        else:
            raise AssertionError("no PoolTimeout")
        pool.putconn(held)
        with pool.connection(timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    print("ok")
    """
)

BLOCKS = {
    # Not installed: the import fails as for a missing package.
    "not_installed": 'sys.modules["psycopg_pool"] = None',
    # Installed but broken: importing it raises something else.
    "broken": textwrap.dedent(
        """
        import importlib.abc

        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "psycopg_pool":
                    raise RuntimeError("psycopg_pool is broken here")
                return None

        sys.meta_path.insert(0, Broken())
        """
    ),
}


@pytest.mark.parametrize("case", list(BLOCKS))
def test_without_psycopg_pool_the_errors_are_psycopgs_alone(dsn: str, case: str) -> None:
    code = WITHOUT.format(block=BLOCKS[case].strip())
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DSN": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
