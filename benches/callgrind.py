"""Instructions per hot-path operation, counted by valgrind's callgrind.

Times on a shared 2-core machine are noise; instruction counts are not: the
same binary and inputs give the same count whatever else the machine does.
This script runs each workload (getconn+putconn, a ``with pool.connection()``
block, an ``async with pool.connection()`` block) under callgrind twice,
with N1 and N2 operations, and reports (I(N2) - I(N1)) / (N2 - N1): the
instructions one operation costs, start-up and pool set-up cancelled out.
ferropool and psycopg_pool run the same workload against the same server.

    python benches/callgrind.py [--dsn DSN] [--ops 2000,6000] [--lifo]

``--lifo`` counts ferropool with ``lifo=True`` (the connection returned last
lent first) instead of its default order, which spreads use over the idle
connections: the two runs show what the default order costs.

Without --dsn a throwaway server is started (ferropool.cli.embedded). Needs
valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack

WORKLOADS = ("getconn_putconn", "connection_block", "async_connection_block")
POOLS = ("ferropool", "psycopg_pool")

# Run inside valgrind: open a pool of 4, warm up, then OPS operations.
_CHILD = r"""
import asyncio, sys
pool_kind, workload, dsn, ops = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
extra = {}
if pool_kind == "ferropool":
    import ferropool as lib
    extra = {"lifo": sys.argv[5] == "lifo"}
else:
    import psycopg_pool as lib

def sync_pool():
    pool = lib.ConnectionPool(dsn, min_size=4, open=False, **extra)
    pool.open(wait=True, timeout=60)
    return pool

def getconn_putconn(pool, n):
    for _ in range(n):
        pool.putconn(pool.getconn())

def connection_block(pool, n):
    for _ in range(n):
        with pool.connection():
            pass

async def async_connection_block(n):
    async with lib.AsyncConnectionPool(dsn, min_size=4, open=False, **extra) as pool:
        await pool.wait(timeout=60)
        for _ in range(100):
            async with pool.connection():
                pass
        for _ in range(n):
            async with pool.connection():
                pass

if workload == "async_connection_block":
    asyncio.run(async_connection_block(ops))
else:
    pool = sync_pool()
    run = globals()[workload]
    run(pool, 100)
    run(pool, ops)
    pool.close()
"""

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(pool: str, workload: str, dsn: str, ops: int, order: str) -> int:
    """Instructions callgrind counts for one run of the child with *ops*."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                "-c",
                _CHILD,
                pool,
                workload,
                dsn,
                str(ops),
                order,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = _COLLECTED.findall(out.stderr)
    if not found:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found[-1])


def per_operation(pool: str, workload: str, dsn: str, low: int, high: int, order: str) -> float:
    high_count = instructions(pool, workload, dsn, high, order)
    return (high_count - instructions(pool, workload, dsn, low, order)) / (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing server (default: a throwaway one)")
    parser.add_argument("--ops", default="2000,6000", help="the two operation counts N1,N2")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--lifo", action="store_true", help="ferropool with lifo=True (default: spread order)"
    )
    opts = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    low, high = (int(n) for n in opts.ops.split(","))
    with ExitStack() as stack:
        dsn = opts.dsn
        if dsn is None:
            from ferropool.cli.embedded import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres()).dsn
        print(f"{'workload':<24} {'ferropool':>12} {'psycopg_pool':>14} {'ratio':>7}")
        for workload in opts.workloads.split(","):
            order = "lifo" if opts.lifo else "spread"
            counts = {pool: per_operation(pool, workload, dsn, low, high, order) for pool in POOLS}
            ratio = counts["psycopg_pool"] / counts["ferropool"]
            print(
                f"{workload:<24} {counts['ferropool']:>12,.0f} {counts['psycopg_pool']:>14,.0f}"
                f" {ratio:>6.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
