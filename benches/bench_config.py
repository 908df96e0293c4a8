"""Sizes, groups and targets shared by the benchmark modules and conftest.py."""

from __future__ import annotations

# Borrows per benchmarked call in the micro benchmarks: one call per borrow
# would add pytest-benchmark's own call overhead, a sizeable share of
# ferropool's time, to every figure.
OPS_PER_CALL = 100
MICRO_POOL_SIZE = 4
CONTENTION_THREADS = (1, 4, 16, 32, 64)
CONTENTION_CONNECTIONS = 16
# Empty blocks per benchmarked call, shared out between the threads: the
# same total at every thread count, so that times compare directly.
CONTENTION_BLOCKS = 32_000

GROUP_GETCONN = "getconn+putconn"
GROUP_BLOCK = "connection() block"
GROUP_ASYNC_BLOCK = "async connection() block"
# Empty `async with` blocks per benchmarked call: driving the event loop for
# a call costs far more than one block, so it is spread over many.
ASYNC_OPS_PER_CALL = 1_000


def contention_group(threads: int) -> str:
    return f"contention: {threads} threads, {CONTENTION_CONNECTIONS} connections"


# What ferropool should reach on a 2-core machine (psycopg_pool time over
# ferropool's); shown next to the measured ratios, never asserted. The
# hot-path targets are issue 16's.
TARGETS = {
    GROUP_GETCONN: 20.0,
    GROUP_BLOCK: 15.0,
    GROUP_ASYNC_BLOCK: 15.0,
    contention_group(32): 3.0,
}
# ferropool's throughput with 32 threads on 16 connections over 1 thread's.
SCALING_THREADS = 32
SCALING_TARGET = 0.5
