"""Instructions per hot-path operation, counted by valgrind's callgrind.

Times on a shared 2-core machine are noise; instruction counts nearly are
not. This script runs each workload (getconn+putconn, a ``with
pool.connection()`` block, an ``async with pool.connection()`` block) under
callgrind twice, with N1 and N2 operations, and reports (I(N2) - I(N1)) /
(N2 - N1): the instructions one operation costs. ferropool and psycopg_pool
run the same workload against the same server.

Only the thread that runs the loop is counted (``--separate-threads``):
the pools' background threads wake up by the wall clock, so on a busy
machine they used to add hundreds of instructions per operation. On that
thread callgrind collects only inside ``exec()`` (``--toggle-collect``):
the measured loop, and the module imports, which are the same in both runs
and cancel out with the set-up. Neither pool hands work to a background
thread on these paths: both lend and take back on the caller's thread.

    python benches/callgrind.py [--dsn DSN] [--ops 1000,3000] [--lifo] [--build DIR]

``--lifo`` counts ferropool with ``lifo=True`` (the connection returned last
lent first) instead of its default order, which spreads use over the idle
connections: the two runs show what the default order costs. ``--build DIR``
counts the ferropool found in DIR (a ``python/`` folder holding another
build, for before/after figures) instead of the installed one.

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
from pathlib import Path

WORKLOADS = ("getconn_putconn", "connection_block", "async_connection_block")
POOLS = ("ferropool", "psycopg_pool")

# Run inside valgrind: open a pool of 4, warm up, then OPS operations inside
# exec(), the one call whose instructions are collected.
_CHILD = r"""
import asyncio, sys
pool_kind, workload, dsn, ops, order = sys.argv[1:6]
ops = int(ops)
extra = {}
if pool_kind == "ferropool":
    import ferropool as lib
    extra = {"lifo": True} if order == "lifo" else {}
else:
    import psycopg_pool as lib

def getconn_putconn(pool, n):
    for _ in range(n):
        pool.putconn(pool.getconn())

def connection_block(pool, n):
    for _ in range(n):
        with pool.connection():
            pass

async def async_connection_block(pool, n):
    for _ in range(n):
        async with pool.connection():
            pass

run = globals()[workload]
if workload == "async_connection_block":
    loop = asyncio.new_event_loop()
    pool = lib.AsyncConnectionPool(dsn, min_size=4, open=False, **extra)
    loop.run_until_complete(pool.open(wait=True, timeout=60))
    loop.run_until_complete(run(pool, 100))
    exec("loop.run_until_complete(run(pool, ops))")
    loop.run_until_complete(pool.close())
    loop.close()
else:
    pool = lib.ConnectionPool(dsn, min_size=4, open=False, **extra)
    pool.open(wait=True, timeout=60)
    run(pool, 100)
    exec("run(pool, ops)")
    pool.close()
"""

_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions(
    pool: str, workload: str, dsn: str, ops: int, order: str, build: Path | None
) -> int:
    """Instructions the main thread runs inside the measured exec() call."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if build is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        # fmt: off
        command = [
            "valgrind", "--tool=callgrind", "--collect-atstart=no",
            "--toggle-collect=builtin_exec", "--separate-threads=yes",
            f"--callgrind-out-file={tmp}/out",
            sys.executable, "-c", _CHILD, pool, workload, dsn, str(ops), order,
        ]
        # fmt: on
        subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        # One file per thread, suffixed -01, -02...; the main thread is 01.
        main_thread = Path(f"{tmp}/out-01")
        found = _TOTALS.findall(main_thread.read_text()) if main_thread.exists() else []
    if not found:
        raise RuntimeError(f"callgrind wrote no count for the main thread ({pool}, {workload})")
    return int(found[-1])


def per_operation(
    pool: str, workload: str, dsn: str, ops: tuple[int, int], order: str, build: Path | None
) -> float:
    low, high = ops
    high_count = instructions(pool, workload, dsn, high, order, build)
    return (high_count - instructions(pool, workload, dsn, low, order, build)) / (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing server (default: a throwaway one)")
    parser.add_argument("--ops", default="1000,3000", help="the two operation counts N1,N2")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--lifo", action="store_true", help="ferropool with lifo=True (default: spread order)"
    )
    parser.add_argument("--build", type=Path, help="a python/ folder with another ferropool build")
    opts = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    low, high = (int(n) for n in opts.ops.split(","))
    order = "lifo" if opts.lifo else "spread"
    with ExitStack() as stack:
        dsn = opts.dsn
        if dsn is None:
            from ferropool.cli.embedded import EmbeddedPostgres

            dsn = stack.enter_context(EmbeddedPostgres()).dsn
        print(f"{'workload':<24} {'ferropool':>12} {'psycopg_pool':>14} {'ratio':>7}")
        for workload in opts.workloads.split(","):
            counts = {
                pool: per_operation(pool, workload, dsn, (low, high), order, opts.build)
                for pool in POOLS
            }
            ratio = counts["psycopg_pool"] / counts["ferropool"]
            print(
                f"{workload:<24} {counts['ferropool']:>12,.0f} {counts['psycopg_pool']:>14,.0f}"
                f" {ratio:>6.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
