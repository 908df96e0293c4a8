"""Fuzzed configuration and arguments (Hypothesis): invalid input is refused cleanly.

For every constructor parameter of ConnectionPool, and every argument of
its methods and settable attributes, Hypothesis draws invalid values
(wrong types, negative numbers, NaN and -infinity, ints too large for a
float or for the pool, unknown strings) on top of an otherwise valid,
random configuration. Each must:

* raise ValueError or TypeError whose message names the parameter;
* leave a live pool exactly as it was: its settings and every statistic
  are the same before and after the refused call, and it still serves.

One test per parameter, so that a parameter that fails does not hide the
others. CI draws a few dozen values per parameter; FERROPOOL_LONG=1 many
more.

Infinity is not invalid: ``math.inf`` seconds mean "never" (no limit), as
psycopg_pool takes them. Valid configurations draw it for every duration,
and the last tests check that each duration parameter and argument accepts
it, reads it back, and that pools configured with it serve requests.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, ClassVar

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ferropool import ConnectionPool
from tests.fixtures.helpers import DEADLINE
from tests.fixtures.reliability import LONG, by_mode, report

Strategy = st.SearchStrategy[Any]

EXAMPLES = by_mode(40, 600)
# CI draws the same values every run (a failure is reproducible); the long
# mode explores.
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SERVERS = ("postgresql", "pgbouncer-transaction", "pgbouncer-session")
TOO_BIG_FOR_A_POOL = 2**63


class Inputs:
    """How many invalid values were tried, for the report."""

    constructor = 0
    methods = 0


# ---- invalid values by kind ----------------------------------------------------------

# Neither a number, a bool, None, a str, a callable nor a dict.
OBJECTS: Strategy = st.one_of(
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.builds(object),
    st.complex_numbers(max_magnitude=1e6).filter(lambda c: c.imag != 0),
    st.decimals(allow_nan=True),
    st.fractions().map(lambda f: f + Fraction(1, 3)),
)
TEXT: Strategy = st.text(max_size=6)
DICTS: Strategy = st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
NON_INT_NUMBERS: Strategy = st.floats(allow_nan=True, allow_infinity=True)
# Not +inf: it means "never" for every duration (see the last tests).
BAD_FLOATS: Strategy = st.one_of(
    st.just(math.nan),
    st.just(-math.inf),
    st.floats(max_value=-1e-300, allow_infinity=False),
    st.integers(max_value=-1),
)


def not_an_int(*, none_ok: bool) -> Strategy:
    kinds = [OBJECTS, TEXT, DICTS, st.booleans(), NON_INT_NUMBERS]
    return st.one_of(*kinds, *([] if none_ok else [st.none()]))


def size(*, none_ok: bool = False) -> Strategy:
    """Invalid pool sizes: in [0, MAX_POOL_SIZE] only."""
    return st.one_of(
        not_an_int(none_ok=none_ok),
        st.integers(max_value=-1),
        st.integers(min_value=TOO_BIG_FOR_A_POOL),
    )


def count(minimum: int, maximum: int, *, none_ok: bool = False) -> Strategy:
    return st.one_of(
        not_an_int(none_ok=none_ok),
        st.integers(max_value=minimum - 1),
        st.integers(min_value=maximum + 1, max_value=maximum * 2**70),
    )


def seconds(*, none_ok: bool = False, zero_ok: bool = True) -> Strategy:
    kinds = [OBJECTS, TEXT, DICTS, st.booleans(), BAD_FLOATS]
    if not none_ok:
        kinds.append(st.none())
    if not zero_ok:
        kinds.append(st.sampled_from([0, 0.0, -0.0]))
    return st.one_of(*kinds)


def flag(*, none_ok: bool = False) -> Strategy:
    kinds = [OBJECTS, TEXT, DICTS, st.integers(), NON_INT_NUMBERS]
    return st.one_of(*kinds, *([] if none_ok else [st.none()]))


NOT_CALLABLE: Strategy = st.one_of(OBJECTS, TEXT, DICTS, st.integers(), st.booleans())


# ---- the constructor -----------------------------------------------------------------

# Each entry: the parameter, and the invalid values to draw given the
# (valid) base configuration. Several ids may test one parameter.
ParamCase = tuple[str, Callable[[dict[str, Any]], Strategy]]
CONSTRUCTOR: dict[str, ParamCase] = {
    "conninfo": (
        "conninfo",
        lambda _: st.one_of(OBJECTS, DICTS, st.integers(), st.floats(), st.none()),
    ),
    "connection_class": (
        "connection_class",
        lambda _: st.one_of(
            OBJECTS, TEXT, st.integers(), st.none(), st.sampled_from([int, str, object, dict])
        ),
    ),
    "kwargs": ("kwargs", lambda _: st.one_of(OBJECTS, TEXT, st.integers(), st.floats())),
    "min_size": ("min_size", lambda _: size()),
    "max_size": ("max_size", lambda _: size(none_ok=True)),
    "max_size_below_min_size": (
        "max_size",
        lambda base: st.integers(0, base["min_size"] - 1) if base["min_size"] else st.just(0),
    ),
    "open": ("open", lambda _: flag(none_ok=True)),
    "configure": ("configure", lambda _: NOT_CALLABLE),
    "check": ("check", lambda _: NOT_CALLABLE),
    "reset": (
        "reset",
        lambda _: st.one_of(
            OBJECTS, DICTS, st.integers(), st.booleans(), TEXT.filter(lambda s: s != "discard")
        ),
    ),
    "name": ("name", lambda _: st.one_of(OBJECTS, DICTS, st.integers(), st.floats())),
    "close_returns": ("close_returns", lambda _: flag()),
    "timeout": ("timeout", lambda _: seconds()),
    "max_waiting": ("max_waiting", lambda _: count(0, 2**30)),
    "max_lifetime": ("max_lifetime", lambda _: seconds(zero_ok=False)),
    "max_idle": ("max_idle", lambda _: seconds(zero_ok=False)),
    "reconnect_timeout": ("reconnect_timeout", lambda _: seconds()),
    "reconnect_failed": ("reconnect_failed", lambda _: NOT_CALLABLE),
    "num_workers": ("num_workers", lambda _: count(1, 1024)),
    "liveness_bypass": ("liveness_bypass", lambda _: seconds(none_ok=True)),
    "keepalive_interval": ("keepalive_interval", lambda _: seconds(none_ok=True, zero_ok=False)),
    "tcp_keepalives": ("tcp_keepalives", lambda _: flag()),
    "leak_timeout": ("leak_timeout", lambda _: seconds(none_ok=True, zero_ok=False)),
    "max_uses": ("max_uses", lambda _: count(0, 2**62)),
    # None: as many connects at once as num_workers.
    "max_connecting": ("max_connecting", lambda _: count(1, 1024, none_ok=True)),
    "expect_primary": ("expect_primary", lambda _: flag()),
    "on_connect": ("on_connect", lambda _: NOT_CALLABLE),
    "on_checkout": ("on_checkout", lambda _: NOT_CALLABLE),
    "on_checkin": ("on_checkin", lambda _: NOT_CALLABLE),
    "on_close": ("on_close", lambda _: NOT_CALLABLE),
    "on_error": ("on_error", lambda _: NOT_CALLABLE),
    "server": (
        "server",
        lambda _: st.one_of(
            OBJECTS, st.integers(), st.none(), TEXT.filter(lambda s: s not in SERVERS)
        ),
    ),
    "budget_share": (
        "budget_share",
        lambda _: st.one_of(
            OBJECTS,
            TEXT,
            st.booleans(),
            st.sampled_from([math.nan, math.inf, -math.inf, 0, 0.0, 1.0000001, 2]),
            st.floats(max_value=0.0),
            st.floats(min_value=1.0, exclude_min=True),
        ),
    ),
}


def duration(low: float, high: float) -> Strategy:
    """Valid seconds: a float in [low, high], or infinity ("never")."""
    return st.floats(low, high) | st.just(math.inf)


@st.composite
def valid_config(draw: st.DrawFn, *, min_lifetime: float = 0.001) -> dict[str, Any]:
    """A random valid configuration of a pool that is not opened."""
    min_size = draw(st.integers(0, 6))
    return {
        "conninfo": draw(st.sampled_from(["", "dbname=never_opened", "host=127.0.0.1 port=1"])),
        "min_size": min_size,
        "max_size": draw(st.integers(max(min_size, 1), 12)),
        "open": False,
        "timeout": draw(duration(0, 120)),
        "max_lifetime": draw(duration(min_lifetime, 7200)),
        "max_idle": draw(duration(0.001, 7200)),
        "reconnect_timeout": draw(duration(0, 600)),
        "num_workers": draw(st.integers(1, 8)),
        "max_waiting": draw(st.integers(0, 100)),
        "name": draw(st.none() | st.text(max_size=8)),
        "reset": draw(st.sampled_from([None, "discard"])),
        "liveness_bypass": draw(st.none() | duration(0, 10)),
        "keepalive_interval": draw(st.none() | duration(0.1, 600)),
        "leak_timeout": draw(st.none() | duration(0.1, 600)),
        "kwargs": draw(st.sampled_from([None, {"application_name": "fuzz"}])),
    }


def names(message: str, param: str) -> bool:
    return param in message


@pytest.mark.parametrize("case", list(CONSTRUCTOR))
def test_invalid_constructor_value_is_refused_naming_it(case: str) -> None:
    param, invalid = CONSTRUCTOR[case]

    @FUZZ
    @given(base=valid_config(), data=st.data())
    def check(base: dict[str, Any], data: st.DataObject) -> None:
        value = data.draw(invalid(base), label=param)
        args = {**base, param: value}
        conninfo = args.pop("conninfo")
        Inputs.constructor += 1
        with pytest.raises((ValueError, TypeError)) as info:
            ConnectionPool(conninfo, **args)
        assert names(str(info.value), param), f"{param}={value!r}: {info.value}"

    check()


# ---- methods and attributes of a live pool -----------------------------------------

SETTINGS = (
    "name",
    "min_size",
    "max_size",
    "closed",
    "paused",
    "timeout",
    "max_waiting",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "num_workers",
    "liveness_bypass",
    "keepalive_interval",
    "leak_timeout",
    "max_uses",
    "max_connecting",
    "expect_primary",
    "tcp_keepalives",
    "close_returns",
    "conninfo",
    "kwargs",
)


def snapshot(pool: ConnectionPool[Any]) -> tuple[dict[str, Any], dict[str, int]]:
    return {a: getattr(pool, a) for a in SETTINGS}, pool.get_stats()


def enter(pool: ConnectionPool[Any], timeout: Any) -> None:
    with pool.connection(timeout=timeout):
        pass


def setter(attr: str) -> Callable[[ConnectionPool[Any], Any], None]:
    def set_it(pool: ConnectionPool[Any], value: Any) -> None:
        setattr(pool, attr, value)

    return set_it


class Foreign:
    """Connections that this pool did not lend: a plain psycopg connection
    and one lent by another pool (set up by the live_pool fixture)."""

    conns: ClassVar[list[Any]] = []


NOT_LENT: Strategy = st.one_of(
    OBJECTS, TEXT, st.integers(), st.none(), st.deferred(lambda: st.sampled_from(Foreign.conns))
)

# id: (the call, the parameter its message must name, invalid values)
MethodCase = tuple[Callable[[ConnectionPool[Any], Any], object], str, Strategy]
METHODS: dict[str, MethodCase] = {
    "getconn(timeout)": (lambda p, v: p.getconn(timeout=v), "timeout", seconds(none_ok=True)),
    "connection(timeout)": (enter, "timeout", seconds(none_ok=True)),
    "putconn(conn)": (lambda p, v: p.putconn(v), "connection", NOT_LENT),
    "resize(min_size)": (lambda p, v: p.resize(v), "min_size", size()),
    "resize(max_size)": (
        lambda p, v: p.resize(2, v),
        "max_size",
        st.one_of(size(none_ok=True), st.integers(0, 1)),
    ),
    "open(wait)": (lambda p, v: p.open(wait=v), "wait", flag()),
    "open(timeout)": (lambda p, v: p.open(timeout=v), "timeout", seconds()),
    "wait(timeout)": (lambda p, v: p.wait(timeout=v), "timeout", seconds()),
    "close(timeout)": (lambda p, v: p.close(timeout=v), "timeout", seconds()),
    "max_waiting =": (setter("max_waiting"), "max_waiting", count(0, 2**30)),
    "max_lifetime =": (setter("max_lifetime"), "max_lifetime", seconds(zero_ok=False)),
    "max_idle =": (setter("max_idle"), "max_idle", seconds(zero_ok=False)),
    "reconnect_timeout =": (setter("reconnect_timeout"), "reconnect_timeout", seconds()),
    "max_uses =": (setter("max_uses"), "max_uses", count(0, 2**62)),
    "liveness_bypass =": (setter("liveness_bypass"), "liveness_bypass", seconds(none_ok=True)),
    "keepalive_interval =": (
        setter("keepalive_interval"),
        "keepalive_interval",
        seconds(none_ok=True, zero_ok=False),
    ),
}


@pytest.fixture(scope="module")
def live_pool(dsn: str) -> Iterator[ConnectionPool[Any]]:
    """An open pool, idle between calls (no keepalive pings to change its
    stats), with one connection lent (so putconn has something to refuse
    around) and foreign connections to offer it."""
    with (
        ConnectionPool(
            dsn, min_size=3, max_size=3, open=True, keepalive_interval=None, name="fuzzed"
        ) as pool,
        ConnectionPool(dsn, min_size=1, open=True, name="other") as other,
        psycopg.connect(dsn) as plain,
    ):
        pool.wait(timeout=DEADLINE)
        lent = pool.getconn()
        foreign = other.getconn()
        Foreign.conns = [plain, foreign]
        try:
            yield pool
        finally:
            pool.putconn(lent)
            other.putconn(foreign)
            Foreign.conns = []


@pytest.mark.parametrize("case", list(METHODS))
def test_invalid_argument_is_refused_and_changes_nothing(
    case: str, live_pool: ConnectionPool[Any]
) -> None:
    call, param, invalid = METHODS[case]

    @FUZZ
    @given(value=invalid)
    def check(value: Any) -> None:
        before = snapshot(live_pool)
        Inputs.methods += 1
        with pytest.raises((ValueError, TypeError)) as info:
            call(live_pool, value)
        assert names(str(info.value), param), f"{case} with {value!r}: {info.value}"
        assert snapshot(live_pool) == before, f"{case} with {value!r} changed the pool"

    check()
    # Still serving, with the counters of a pool that was only looked at.
    with live_pool.connection(timeout=DEADLINE) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ---- seconds no float can hold, and timeouts no thread can wait --------------------

TOO_BIG_FOR_A_FLOAT = 2**1100
SECONDS_PARAMS = (
    "timeout",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "liveness_bypass",
    "keepalive_interval",
    "leak_timeout",
)
SECONDS_METHODS = [case for case, (_, param, _) in METHODS.items() if param in SECONDS_PARAMS]


def test_seconds_too_large_for_a_float_are_refused_naming_the_parameter(
    live_pool: ConnectionPool[Any],
) -> None:
    """2**1100 seconds: an int no float can hold, given where seconds are
    expected. Refused like any other invalid value: ValueError naming the
    parameter, and no change to the pool."""
    wrong = []
    for param in SECONDS_PARAMS:
        try:
            ConnectionPool("", open=False, **{param: TOO_BIG_FOR_A_FLOAT})
            wrong.append(f"ConnectionPool({param}=2**1100): accepted")
        except (ValueError, TypeError) as ex:
            if param not in str(ex):
                wrong.append(f"ConnectionPool({param}=2**1100): {ex}")
        except Exception as ex:
            wrong.append(f"ConnectionPool({param}=2**1100): {type(ex).__name__}: {ex}")
    for case in SECONDS_METHODS:
        call, param, _ = METHODS[case]
        before = snapshot(live_pool)
        try:
            call(live_pool, TOO_BIG_FOR_A_FLOAT)
            wrong.append(f"{case} with 2**1100: accepted")
        except (ValueError, TypeError) as ex:
            if param not in str(ex):
                wrong.append(f"{case} with 2**1100: {ex}")
        except Exception as ex:
            wrong.append(f"{case} with 2**1100: {type(ex).__name__}: {ex}")
        if snapshot(live_pool) != before:
            wrong.append(f"{case} with 2**1100 changed the pool")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("timeout", [1e10, 1e300, sys.float_info.max])
def test_close_with_a_huge_timeout_closes_cleanly(dsn: str, timeout: float) -> None:
    """A finite timeout longer than any thread can wait (threading.TIMEOUT_MAX,
    about 292 years): close() either refuses it before doing anything
    (ValueError naming timeout), or closes the pool and returns."""
    pool = ConnectionPool(dsn, min_size=1, open=True)
    try:
        pool.wait(timeout=DEADLINE)
        try:
            pool.close(timeout=timeout)
        except ValueError as ex:
            assert "timeout" in str(ex), str(ex)
            assert not pool.closed, "refused, yet the pool was closed"
        else:
            assert pool.closed
    finally:
        pool.close()


# ---- infinity: "never" ---------------------------------------------------------------

DURATION_SETTINGS = (
    "timeout",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "liveness_bypass",
    "keepalive_interval",
    "leak_timeout",
)


def test_infinity_is_accepted_for_every_duration_parameter() -> None:
    for param in SECONDS_PARAMS:
        pool = ConnectionPool("", open=False, **{param: math.inf})
        assert getattr(pool, param) == math.inf, param


@pytest.mark.parametrize("case", SECONDS_METHODS)
def test_infinity_is_accepted_by_every_duration_argument(dsn: str, case: str) -> None:
    """Each method and setter taking seconds takes inf, and the pool still
    serves: a wait with no limit returns as soon as it is satisfied."""
    call, param, _ = METHODS[case]
    with ConnectionPool(dsn, min_size=2, open=True, name="never") as pool:
        pool.wait(timeout=DEADLINE)
        result = call(pool, math.inf)
        if isinstance(result, psycopg.Connection):
            pool.putconn(result)
        if case.endswith(" ="):
            assert getattr(pool, param) == math.inf
        if case == "close(timeout)":
            assert pool.closed
            return
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert pool.get_stats()["requests_errors"] == 0


NEVER: dict[str, Any] = {
    "conninfo": "",
    "min_size": 2,
    "max_size": 4,
    "open": False,
    **dict.fromkeys(DURATION_SETTINGS, math.inf),
}


def test_pools_configured_with_infinities_serve(dsn: str) -> None:
    """Random valid configurations, infinity among the durations (and one
    with every duration infinite), on a real server: the pool opens, reads
    its settings back as given, serves, and retires nothing early."""

    @settings(FUZZ, max_examples=by_mode(8, 120))
    @example(config=NEVER)
    @given(config=valid_config(min_lifetime=5.0))
    def check(config: dict[str, Any]) -> None:
        args = {**config, "open": True}
        del args["conninfo"]
        with ConnectionPool(dsn, **args) as pool:
            for key in DURATION_SETTINGS:
                if key not in config:
                    continue
                value, given = getattr(pool, key), config[key]
                assert value == given or math.isclose(value, given, abs_tol=1e-9), (key, value)
            for _ in range(3):
                with pool.connection(timeout=DEADLINE) as conn:
                    assert conn.execute("select 1").fetchone() == (1,)
            if config["max_lifetime"] == math.inf:
                assert pool.get_stats()["connections_retired"] == 0

    check()


@pytest.fixture(scope="module", autouse=True)
def inputs_report() -> Iterator[None]:
    yield
    report(
        "fuzzed_input",
        "ferropool",
        constructor_params=len({p for p, _ in CONSTRUCTOR.values()}),
        constructor_inputs=Inputs.constructor,
        method_arguments=len(METHODS),
        method_inputs=Inputs.methods,
    )
