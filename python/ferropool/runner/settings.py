"""Every pool setting's default, written once, and the validated settings a
runner is built from.

The pool classes' signatures read their defaults from the constants here;
the core gets every value explicitly (it keeps no defaults of its own).
Building a `Settings` checks each argument (see `checks`) and changes
nothing anywhere: a refused value leaves every pool as it was.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from . import checks

# psycopg_pool's defaults.
MIN_SIZE = 4
NULL_MIN_SIZE = 0
TIMEOUT = 30.0
MAX_WAITING = 0
MAX_LIFETIME = 60 * 60.0
MAX_IDLE = 10 * 60.0
RECONNECT_TIMEOUT = 5 * 60.0
NUM_WORKERS = 3
OPEN_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
# ferropool's own.
LIVENESS_BYPASS = 0.5
KEEPALIVE_INTERVAL = 60.0
MAX_USES = 0
# Up to this fraction of max_lifetime is removed at random from each
# connection's, so connections opened together do not expire together.
LIFETIME_JITTER = 0.05

F = TypeVar("F", bound=Callable[..., None])

HOOKS = ("on_connect", "on_checkout", "on_checkin", "on_close", "on_error")

_numbers: dict[str, itertools.count[int]] = {}


def pool_name(name: object, prefix: str = "pool") -> str:
    """*name* checked, or the next ``{prefix}-N`` for an unnamed pool."""
    checked = checks.name(name)
    if checked:
        return checked
    return f"{prefix}-{next(_numbers.setdefault(prefix, itertools.count(1)))}"


def null_pool_init(init: F) -> F:
    """A pool's __init__ with min_size defaulting to 0, for its null variant.

    psycopg_pool's null pools take the same parameters as the full ones but
    default min_size to 0; this keeps one signature to maintain per pool
    family while ``inspect.signature`` (and so help() and the docs) shows the
    null pool's own default.
    """
    signature = inspect.signature(init)
    params = [
        p.replace(default=NULL_MIN_SIZE) if p.name == "min_size" else p
        for p in signature.parameters.values()
    ]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_size", NULL_MIN_SIZE)
        init(self, *args, **kwargs)

    __init__.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return cast(F, __init__)


@dataclass(frozen=True)
class Hooks:
    """ferropool's observation hooks; each is optional and may not fail the pool."""

    on_connect: Callable[..., Any] | None = None
    on_checkout: Callable[..., Any] | None = None
    on_checkin: Callable[..., Any] | None = None
    on_close: Callable[..., Any] | None = None
    on_error: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Settings:
    """One pool's settings, validated. The core holds the live values of those
    that can change (sizes, lifetimes): read them there."""

    name: str
    min_size: int
    max_size: int
    timeout: float
    max_waiting: int
    max_lifetime: float
    max_idle: float
    reconnect_timeout: float
    num_workers: int
    max_connecting: int
    max_uses: int
    liveness_bypass: float | None
    keepalive_interval: float | None
    leak_timeout: float | None
    null: bool = False
    configure: Callable[..., Any] | None = None
    check: Callable[..., Any] | None = None
    reset: Callable[..., Any] | str | None = None
    reconnect_failed: Callable[..., Any] | None = None
    expect_primary: bool = False
    lifo: bool = False
    hooks: Hooks = field(default_factory=Hooks)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        min_size: object,
        max_size: object,
        timeout: object,
        max_waiting: object = MAX_WAITING,
        max_lifetime: object = MAX_LIFETIME,
        max_idle: object = MAX_IDLE,
        reconnect_timeout: object = RECONNECT_TIMEOUT,
        num_workers: object = NUM_WORKERS,
        max_connecting: object = None,
        max_uses: object = MAX_USES,
        liveness_bypass: object = LIVENESS_BYPASS,
        keepalive_interval: object = KEEPALIVE_INTERVAL,
        leak_timeout: object = None,
        null: bool = False,
        configure: object = None,
        check: object = None,
        reset: object = None,
        reconnect_failed: object = None,
        expect_primary: object = False,
        lifo: object = False,
        hooks: dict[str, object] | None = None,
    ) -> Settings:
        """Check every argument, naming the parameter and the value of the
        first one refused."""
        low, high = checks.sizes(min_size, max_size)
        workers = checks.integer("num_workers", num_workers, minimum=1, maximum=checks.MAX_WORKERS)
        # num_workers bounds the connections opened at once, as psycopg_pool's
        # workers do, unless max_connecting says otherwise.
        connecting = (
            workers
            if max_connecting is None
            else checks.integer(
                "max_connecting", max_connecting, minimum=1, maximum=checks.MAX_WORKERS
            )
        )
        return cls(
            name=name,
            min_size=low,
            max_size=high,
            timeout=checks.seconds("timeout", timeout),
            max_waiting=checks.integer("max_waiting", max_waiting, maximum=checks.MAX_WAITING),
            max_lifetime=checks.seconds("max_lifetime", max_lifetime, positive=True),
            max_idle=checks.seconds("max_idle", max_idle, positive=True),
            reconnect_timeout=checks.seconds("reconnect_timeout", reconnect_timeout),
            num_workers=workers,
            max_connecting=connecting,
            max_uses=checks.integer("max_uses", max_uses),
            liveness_bypass=checks.optional_seconds("liveness_bypass", liveness_bypass),
            keepalive_interval=checks.optional_positive_seconds(
                "keepalive_interval", keepalive_interval
            ),
            leak_timeout=checks.optional_positive_seconds("leak_timeout", leak_timeout),
            null=null,
            configure=checks.callback("configure", configure),
            check=checks.callback("check", check),
            reset=checks.reset(reset),
            reconnect_failed=checks.callback("reconnect_failed", reconnect_failed),
            expect_primary=checks.flag("expect_primary", expect_primary),
            lifo=checks.flag("lifo", lifo),
            hooks=Hooks(**{h: checks.callback(h, (hooks or {}).get(h)) for h in HOOKS}),
        )

    @classmethod
    def of(cls, params: Mapping[str, Any], **given: Any) -> Settings:
        """Settings from a pool constructor's arguments, by name (its
        ``locals()``): those of `build`'s options it has, its hooks, and
        *given* over them."""
        options: dict[str, Any] = {k: params[k] for k in _OPTIONS if k in params}
        options["hooks"] = {h: params.get(h) for h in HOOKS}
        options.update(given)
        return cls.build(**options)

    @property
    def workers(self) -> int:
        """Maintenance workers to run: enough for max_connecting connects at
        once and num_workers in all. A null pool keeps no connection to
        open, sweep, ping or close in the background, and runs none."""
        return 0 if self.null else max(self.num_workers, self.max_connecting)

    def core_args(self) -> dict[str, Any]:
        """The arguments of `_core.Core` for these settings."""
        return {
            "name": self.name,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_waiting": self.max_waiting,
            "max_lifetime": self.max_lifetime,
            "lifetime_jitter": LIFETIME_JITTER,
            "max_idle": self.max_idle,
            "reconnect_timeout": self.reconnect_timeout,
            "null": self.null,
            "max_uses": self.max_uses,
            "max_connecting": self.max_connecting,
            "lifo": self.lifo,
            "liveness_bypass": self.liveness_bypass,
            "keepalive_interval": self.keepalive_interval,
            "leak_timeout": self.leak_timeout,
        }


# The options `Settings.of` looks for in a constructor's arguments.
_OPTIONS = frozenset(inspect.signature(Settings.build).parameters) - {"hooks"}
