"""How long ``ferropool bench`` measures: rounds per contender and their length.

Rounds last a fixed time rather than a fixed number of operations, so that
a run takes the same time whichever contender is slow: psycopg_pool under
contention and a new connection per request are thousands of times slower
than ferropool's checkout, and a fixed count sized for one would make the
other last minutes or finish in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FULL", "QUICK", "Plan"]


@dataclass(frozen=True)
class Plan:
    """Rounds per contender and measurement, and how long each lasts."""

    rounds: int
    # One round of one contender, in-process (threads or tasks borrowing).
    round_seconds: float
    # Untimed round run once per contender before its measured rounds.
    warmup_seconds: float
    # One round of HTTP load; wrk only takes whole seconds.
    http_round_seconds: int


# About three and a half minutes on a 2-core machine, end to end over HTTP
# the longest part. Many short rounds rather than a few long ones: the
# median then shrugs off a burst of other work on the machine.
FULL: Final = Plan(
    rounds=7,
    round_seconds=0.2,
    warmup_seconds=0.1,
    http_round_seconds=2,
)
# About a minute, server start included: every scenario, rougher medians.
# Rounds shorter than 0.1 s mislead under contention: psycopg_pool's lock
# queue builds up over a round, so 0.05 s rounds showed it at twice its
# steady rate (8.7x for ferropool with 32 threads on 16 connections, where
# rounds of 0.1 s and more gave 16-19x on the same machine).
QUICK: Final = Plan(
    rounds=2,
    round_seconds=0.1,
    warmup_seconds=0.05,
    http_round_seconds=1,
)
