"""Which objects are ferropool pools, and their runners.

Every pool class registers here when it is built, so the package's other
parts (metrics exporters, routing, the SQLAlchemy and Django integrations)
find a pool's runner through one public door instead of reading a pool's
private attributes. Held weakly: a registered pool is still collected.
"""

from __future__ import annotations

import weakref
from typing import Any

from .base import RunnerBase

_runners: weakref.WeakKeyDictionary[object, RunnerBase[Any]] = weakref.WeakKeyDictionary()


def register(pool: object, runner: RunnerBase[Any]) -> None:
    _runners[pool] = runner


def runner_of(pool: object) -> RunnerBase[Any]:
    """*pool*'s runner; TypeError if *pool* is not a ferropool pool."""
    try:
        return _runners[pool]
    except (KeyError, TypeError):
        raise TypeError(f"pool must be a ferropool pool, got {type(pool).__name__}") from None
