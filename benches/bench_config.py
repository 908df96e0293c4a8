"""Sizes, groups and targets shared by the benchmark modules and conftest.py."""

from __future__ import annotations

# Borrows per benchmarked call in the micro benchmarks: one call per borrow
# would add pytest-benchmark's own call overhead, a sizeable share of
# ferropool's time, to every figure.
OPS_PER_CALL = 100
MICRO_POOL_SIZE = 4
CONTENTION_THREADS = 32
CONTENTION_CONNECTIONS = 16

GROUP_GETCONN = "getconn+putconn"
GROUP_BLOCK = "connection() block"
GROUP_CONTENTION = f"contention: {CONTENTION_THREADS} threads, {CONTENTION_CONNECTIONS} connections"

# What ferropool should reach on a 2-core machine (psycopg_pool time over
# ferropool's); shown next to the measured ratios, never asserted.
TARGETS = {GROUP_GETCONN: 10.0, GROUP_BLOCK: 6.0, GROUP_CONTENTION: 3.0}
# ferropool's throughput with 32 threads on 16 connections over 1 thread's.
SCALING_TARGET = 0.5
