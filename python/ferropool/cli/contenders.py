"""The pools a benchmark compares, opened the same way for each.

Both pools get the same conninfo, sizes and defaults, are opened
explicitly and filled before any timing starts, and are closed afterwards.
psycopg_pool is an optional dependency: it is imported only when asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal

from .errors import CliError
from .workloads import Pool

__all__ = [
    "FERROPOOL",
    "NEW_CONNECTION",
    "POOL_KINDS",
    "PSYCOPG_POOL",
    "PoolKind",
    "open_pool",
    "require_psycopg_pool",
]

PoolKind = Literal["ferropool", "psycopg_pool"]

FERROPOOL: Final = "ferropool"
PSYCOPG_POOL: Final = "psycopg_pool"
# No pool at all: what each request pays without one.
NEW_CONNECTION: Final = "new connection per request"
POOL_KINDS: Final[tuple[PoolKind, ...]] = (FERROPOOL, PSYCOPG_POOL)

# Filling a pool of 16 over SCRAM and TLS takes well under a second; a pool
# not ready after this long means the server is in trouble.
_FILL_TIMEOUT = 60.0


def require_psycopg_pool() -> None:
    """Raise CliError, naming the pip command, if psycopg_pool is not installed."""
    if importlib.util.find_spec("psycopg_pool") is None:
        raise CliError(
            "psycopg_pool is needed to compare against and is not installed: "
            "pip install psycopg-pool (or pip install 'ferropool[bench]')"
        )


@contextmanager
def open_pool(kind: PoolKind, conninfo: str, size: int) -> Iterator[Pool]:
    """An open pool of *kind* holding *size* ready connections (min_size = max_size)."""
    pool: Pool
    if kind == FERROPOOL:
        import ferropool

        fp = ferropool.ConnectionPool(
            conninfo, min_size=size, max_size=size, open=False, name=f"bench-{kind}"
        )
        fp.open(wait=True, timeout=_FILL_TIMEOUT)
        pool, close = fp, fp.close
    elif kind == PSYCOPG_POOL:
        import psycopg_pool

        pp = psycopg_pool.ConnectionPool(
            conninfo, min_size=size, max_size=size, open=False, name=f"bench-{kind}"
        )
        pp.open(wait=True, timeout=_FILL_TIMEOUT)
        pool, close = pp, pp.close
    else:
        raise ValueError(f"unknown pool kind {kind!r}")
    try:
        yield pool
    finally:
        close()
