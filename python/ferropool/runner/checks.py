"""Constructor and method argument checks shared by every pool class.

Type errors are caught here (TypeError), value errors on sizes and lifetimes
by the core (ValueError), and both name the parameter and the value, so a
wrong argument is found from the message alone. Nothing here touches a
pool: a refused call changes nothing.
"""

from __future__ import annotations

import math
import os
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .. import _core

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside this package, so
    a warning points at the user's line whatever the call depth inside."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _type_name(value: object) -> str:
    return type(value).__name__


# The core's bounds: sizes fit its slot table, counts fit 64 bits.
MAX_SIZE = _core.MAX_POOL_SIZE
MAX_WAITING = MAX_SIZE * 64
MAX_WORKERS = 1024
MAX_COUNT = 2**62

# Each connection's max_lifetime is shortened by up to this fraction, at
# random, so connections opened together do not all expire together
# (psycopg_pool: 5 %).
LIFETIME_JITTER = 0.05


def integer(name: str, value: object, *, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({_type_name(value)})")
    if value < minimum:
        if minimum == 0:
            raise ValueError(f"{name} cannot be negative, got {value}")
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def size(name: str, value: object) -> int:
    """A pool size: an int in [0, MAX_SIZE]."""
    return integer(name, value, maximum=MAX_SIZE)


def optional_size(name: str, value: object) -> int | None:
    return None if value is None else size(name, value)


def sizes(min_size: object, max_size: object) -> tuple[int, int]:
    """min_size and max_size checked, max_size defaulting to min_size."""
    low = size("min_size", min_size)
    high = optional_size("max_size", max_size)
    return low, low if high is None else high


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """A duration in seconds; ``math.inf`` means "never" (no limit), as
    psycopg_pool takes it. NaN and negative values are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r} ({_type_name(value)})")
    try:
        value = float(value)
    except OverflowError:
        bits = value.bit_length() if isinstance(value, int) else "?"
        raise ValueError(
            f"{name} is too large for a float, got an int of {bits} bits (math.inf means no limit)"
        ) from None
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds (math.inf for no limit), got nan")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "at least 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def optional_seconds(name: str, value: object) -> float | None:
    return None if value is None else seconds(name, value)


def callback(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r} ({_type_name(value)})")
    return value


def conninfo(value: object) -> str | Callable[..., Any]:
    if not isinstance(value, str) and not callable(value):
        raise TypeError(
            f"conninfo must be a str or a callable returning one, got {_type_name(value)}"
        )
    return value


def kwargs(value: object) -> Mapping[str, Any] | Callable[..., Any] | None:
    if value is not None and not isinstance(value, Mapping) and not callable(value):
        raise TypeError(
            f"kwargs must be a dict, a callable returning one, or None, got {_type_name(value)}"
        )
    return value


def connection_class(value: object) -> Any:
    """A class with a connect() method, or a generic alias of one
    (``psycopg.Connection[DictRow]``, as psycopg's docs show): kept as
    given, as psycopg_pool does; an alias's connect() is its class's."""
    origin = typing.get_origin(value)
    cls = value if origin is None else origin
    if not isinstance(cls, type) or not callable(getattr(cls, "connect", None)):
        raise TypeError(
            f"connection_class must be a connection class with a connect() method, got {value!r}"
        )
    return value


def name(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"name must be a str or None, got {value!r} ({_type_name(value)})")
    if value is not None:
        # It reaches the core and thread names as UTF-8: a lone surrogate
        # ("\ud800", e.g. from a bytes name decoded with surrogateescape)
        # cannot be encoded.
        try:
            value.encode()
        except UnicodeEncodeError as ex:
            raise ValueError(
                f"name must be text that can be encoded as UTF-8, got {value!r}"
                f" ({ex.reason} at position {ex.start})"
            ) from None
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r} ({_type_name(value)})")
    return value


def optional_positive_seconds(name: str, value: object) -> float | None:
    """Seconds > 0, or None for "off"."""
    return None if value is None else seconds(name, value, positive=True)


RESET_MODES = ("discard",)


def reset(value: object) -> Any:
    """psycopg_pool's reset callback, or the name of a built-in reset."""
    if isinstance(value, str):
        if value not in RESET_MODES:
            raise ValueError(
                f"reset must be a callable, None, or one of {RESET_MODES}, got {value!r}"
            )
        return value
    return callback("reset", value)
