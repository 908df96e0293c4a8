"""The connection budget: how big each pool of a fleet may be.

A PostgreSQL server accepts ``max_connections`` client connections, of which
``superuser_reserved_connections`` (and, from PostgreSQL 16,
``reserved_connections``) are kept for administrators. What is left, minus
what other clients hold, is shared by every instance of the application:

    instances x max_size <= max_connections - reserved - others   (fleet rule)

Two more rules size a pool for its work: about (cores x 2 + spindles)
queries at once keep a server busy (PostgreSQL wiki, HikariCP's "About Pool
Sizing"), and by Little's Law a load of R requests/s each holding a
connection T seconds keeps R x T connections busy on average.

`recommend` answers one question, "what max_size should each instance
have?", with one number and the rule that set it: the load's need (Little's
Law, with headroom) when the load is known, capped by the cores rule only
when the fleet's load would keep more queries running than the server's
cores serve at once, and always by the fleet rule, which is a hard limit.
Without load figures, the cores rule's share (or, without cores, the fleet
rule) is the answer. A recommendation of 1 serialises a threaded app's
requests, and the report says so.

`read_budget` / `fetch_budget` read the server's figures, `recommend` applies
the rules (pure, no I/O), `size_fleet` does both; ``python -m ferropool
sizing`` prints the result. A pool's ``budget_share=`` option sizes it, when
it opens, as a share of the server's budget (like RDS Proxy's
MaxConnectionsPercent): `share_size` says how much, the pool applies it.
Nothing here may put a password in a message or leave a connection open.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = [
    "RULE_CORES",
    "RULE_FLEET",
    "RULE_LITTLE",
    "VERDICT_FITS",
    "VERDICT_NO_ROOM",
    "VERDICT_OVER_COMMITTED",
    "VERDICT_TOO_SMALL",
    "ServerBudget",
    "SizingReport",
    "aread_budget",
    "fetch_budget",
    "read_budget",
    "recommend",
    "share_size",
    "size_fleet",
]

logger = logging.getLogger("ferropool")

# One round trip. reserved_connections is PostgreSQL 16+: current_setting's
# missing_ok gives NULL before. Other clients are client backends other than
# this one (walsenders and background workers have budgets of their own),
# optionally not counting the fleet's own connections by application_name.
_BUDGET_QUERY = """\
select current_setting('server_version_num')::int,
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       current_setting('reserved_connections', true),
       (select count(*) from pg_stat_activity
         where backend_type = 'client backend'
           and pid <> pg_backend_pid()
           and (%(app)s::text is null or application_name is distinct from %(app)s::text))
"""

# Little's Law gives the mean; bursts need more. 1.5x is a common margin.
DEFAULT_HEADROOM = 1.5
# An SSD-backed server counts as one "spindle" in the cores rule.
DEFAULT_SPINDLES = 1
# Seconds the one-off connection of budget_share / fetch_budget may take.
CONNECT_TIMEOUT = 10

# The rules, by the names the report gives them.
RULE_FLEET = "fleet rule"
RULE_CORES = "cores rule"
RULE_LITTLE = "Little's Law"

# The answer to "does the fleet fit?", one per report.
VERDICT_FITS = "fits"
VERDICT_OVER_COMMITTED = "over-committed"
"""instances x current max_size is more than the server has available."""
VERDICT_NO_ROOM = "no room"
"""Not one connection per instance is left."""
VERDICT_TOO_SMALL = "too small"
"""The load keeps more connections busy on average than the binding rule
allows (the budget, or the server's cores): requests would queue without bound."""


@dataclass(frozen=True)
class ServerBudget:
    """A server's connection limits, and what other clients hold now."""

    server_version: int
    """``server_version_num``, e.g. 180004."""
    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int | None
    """PostgreSQL 16+; None on older servers, which do not have it."""
    other_connections: int
    """Client connections open now, other than the one that read this."""

    @property
    def reserved(self) -> int:
        """Slots ordinary roles cannot use."""
        return self.superuser_reserved_connections + (self.reserved_connections or 0)

    @property
    def usable(self) -> int:
        """Connections ordinary roles may open in total."""
        return max(0, self.max_connections - self.reserved)

    @property
    def available(self) -> int:
        """What is left for a fleet now: usable minus other clients."""
        return max(0, self.usable - self.other_connections)


@dataclass(frozen=True)
class SizingReport:
    """The recommended max_size per instance, rule by rule, and why."""

    budget: ServerBudget
    instances: int
    fleet_max_size: int
    """available // instances: the most each instance may hold."""
    server_cores: int | None
    spindles: int
    cores_connections: int | None
    """cores x 2 + spindles, for the whole fleet; None with cores unknown."""
    cores_max_size: int | None
    rate: float | None
    """Requests per second per instance."""
    query_ms: float | None
    """Milliseconds each request holds a connection."""
    headroom: float
    busy_connections: float | None
    """Little's Law: rate x query time, the mean connections in use per instance."""
    littles_max_size: int | None
    recommended_max_size: int
    """The one answer: 0 only when there is no room at all."""
    binding_rule: str | None
    """The rule that set recommended_max_size (RULE_*); None with no room."""
    current_max_size: int | None
    current_connections: int | None
    """instances x current_max_size."""
    over_committed: bool | None
    """instances x current_max_size > available; None without a current size."""
    verdict: str
    """VERDICT_*: fits, or what is wrong (``ferropool sizing`` exits 1 unless it fits)."""
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.verdict == VERDICT_FITS

    @property
    def fleet_busy(self) -> float | None:
        """Connections the whole fleet keeps busy on average (Little's Law)."""
        return None if self.busy_connections is None else self.busy_connections * self.instances


def read_budget(
    conn: psycopg.Connection[Any], *, exclude_application_name: str | None = None
) -> ServerBudget:
    """Read the budget on an open connection (one query, rolled back if
    it opened a transaction). Connections carrying
    *exclude_application_name* (the fleet's own) are not counted as others."""
    cur = conn.cursor(row_factory=psycopg.rows.tuple_row)
    row = cur.execute(_BUDGET_QUERY, {"app": exclude_application_name}).fetchone()
    if not conn.autocommit:
        conn.rollback()
    return _budget(row)


async def aread_budget(
    conn: psycopg.AsyncConnection[Any], *, exclude_application_name: str | None = None
) -> ServerBudget:
    """`read_budget` on an async connection."""
    cur = conn.cursor(row_factory=psycopg.rows.tuple_row)
    await cur.execute(_BUDGET_QUERY, {"app": exclude_application_name})
    row = await cur.fetchone()
    if not conn.autocommit:
        await conn.rollback()
    return _budget(row)


def fetch_budget(
    conninfo: str = "",
    *,
    exclude_application_name: str | None = None,
    connect_timeout: int = CONNECT_TIMEOUT,
    **kwargs: Any,
) -> ServerBudget:
    """Open one connection, read the budget, close it."""
    kwargs["connect_timeout"] = connect_timeout
    kwargs["autocommit"] = True
    with psycopg.Connection.connect(conninfo, **kwargs) as conn:
        return read_budget(conn, exclude_application_name=exclude_application_name)


def _budget(row: Any) -> ServerBudget:
    if row is None:  # pragma: no cover - the query always returns a row
        raise psycopg.ProgrammingError("the budget query returned no row")
    version, max_conn, su_reserved, reserved, others = row
    return ServerBudget(
        server_version=int(version),
        max_connections=int(max_conn),
        superuser_reserved_connections=int(su_reserved),
        reserved_connections=None if reserved is None else int(reserved),
        other_connections=int(others),
    )


def recommend(
    budget: ServerBudget,
    *,
    instances: int,
    server_cores: int | None = None,
    spindles: int = DEFAULT_SPINDLES,
    rate: float | None = None,
    query_ms: float | None = None,
    current_max_size: int | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> SizingReport:
    """One max_size per instance for *budget* (no I/O), and the rule that set it.

    The fleet rule always caps it. With *rate* (requests/s per instance)
    and *query_ms*, Little's Law sizes it for the load, unless the whole
    fleet's load exceeds what *server_cores* can run at once, where the
    cores rule's share is all that helps. With cores but no load, the cores
    rule's share; with neither, the fleet rule's maximum. Raises ValueError
    naming the argument for values that make no sense.
    """
    _check_arguments(instances, server_cores, spindles, rate, query_ms, current_max_size, headroom)
    fleet = budget.available // instances

    cores_total = cores_each = None
    if server_cores is not None:
        cores_total = server_cores * 2 + spindles
        cores_each = max(1, cores_total // instances)

    busy = littles = None
    if rate is not None and query_ms is not None:
        busy = rate * query_ms / 1000.0
        littles = max(1, math.ceil(busy * headroom))

    # What the pool should hold, before the budget's hard limit.
    cores_bind = cores_total is not None and (busy is None or busy * instances > cores_total)
    if cores_bind and cores_each is not None:
        target, rule = cores_each, RULE_CORES
    elif littles is not None:
        target, rule = littles, RULE_LITTLE
    else:
        target, rule = fleet, RULE_FLEET
    if fleet < target:
        target, rule = fleet, RULE_FLEET

    notes: list[str] = []
    verdict = VERDICT_FITS
    if fleet == 0:
        verdict = VERDICT_NO_ROOM
        notes.append(
            f"no room: {budget.available} connections are available for {instances}"
            " instances; put PgBouncer in front of the server, run fewer instances,"
            " or raise max_connections"
        )
    elif busy is not None and littles is not None and littles > target:
        # The binding rule leaves less than the load needs.
        need = (
            f"the load needs about {littles} connections per instance ({busy:.2f} busy on"
            f" average, x{headroom:g} headroom) but the {rule} allows {target}"
        )
        if busy <= target:
            notes.append(f"{need}: requests will queue at peaks")
        elif rule == RULE_CORES:
            verdict = VERDICT_TOO_SMALL
            notes.append(
                f"TOO SMALL: {need}: the fleet keeps {busy * instances:.1f} connections busy on"
                f" average, more than the {cores_total} queries the server's cores run at once."
                " The server is the bottleneck (larger pools would add contention, not"
                " throughput) and requests would queue without bound: shorten the queries,"
                " spread the load over replicas, or give the server more cores"
            )
        else:
            verdict = VERDICT_TOO_SMALL
            notes.append(
                f"TOO SMALL: {need}: requests would queue without bound. Put PgBouncer in"
                " front of the server, run fewer instances, shorten the queries, or raise"
                " max_connections"
            )
    if target == 1:
        notes.append(_serialises(rule, instances, cores_total))

    current_total = over = None
    if current_max_size is not None:
        current_total = instances * current_max_size
        over = current_total > budget.available
        if over:
            if verdict == VERDICT_FITS:
                verdict = VERDICT_OVER_COMMITTED
            notes.append(
                f"OVER-COMMITTED: {instances} instances x max_size {current_max_size} ="
                f" {current_total} connections > {budget.available} available; at peak, new"
                " connections will fail with 'sorry, too many clients already'. Lower"
                f" max_size to {target}, or put PgBouncer in front of the server"
            )

    return SizingReport(
        budget=budget,
        instances=instances,
        fleet_max_size=fleet,
        server_cores=server_cores,
        spindles=spindles,
        cores_connections=cores_total,
        cores_max_size=cores_each,
        rate=rate,
        query_ms=query_ms,
        headroom=headroom,
        busy_connections=busy,
        littles_max_size=littles,
        recommended_max_size=target,
        binding_rule=rule if fleet > 0 else None,
        current_max_size=current_max_size,
        current_connections=current_total,
        over_committed=over,
        verdict=verdict,
        notes=notes,
    )


def _serialises(rule: str, instances: int, cores_total: int | None) -> str:
    """The note for a recommendation of 1: what it does to a threaded app, and the ways out."""
    why = {
        RULE_FLEET: f"the budget leaves one connection for each of {instances} instances",
        RULE_CORES: (
            f"{instances} instances share the {cores_total} queries the server's cores run at once"
        ),
        RULE_LITTLE: "the load keeps less than one connection busy",
    }[rule]
    fix = (
        "if a request must never wait for another, give the pool the app's thread count"
        " instead, within the fleet rule"
        if rule == RULE_LITTLE
        else "run fewer instances, or put PgBouncer (transaction mode) in front of the"
        " server so that each instance can keep a pool of its thread count"
    )
    return (
        f"max_size 1 serialises each instance: {why}, so a threaded app (gunicorn gthread,"
        f" waitress, Django or Flask threads) runs one query at a time and its other threads"
        f" wait; {fix}"
    )


def size_fleet(
    conninfo: str = "",
    *,
    instances: int,
    server_cores: int | None = None,
    spindles: int = DEFAULT_SPINDLES,
    rate: float | None = None,
    query_ms: float | None = None,
    current_max_size: int | None = None,
    headroom: float = DEFAULT_HEADROOM,
    exclude_application_name: str | None = None,
    **kwargs: Any,
) -> SizingReport:
    """`fetch_budget` then `recommend`: the report for a fleet of *instances*."""
    # Arguments first: a typo must not cost a connection attempt.
    _check_arguments(instances, server_cores, spindles, rate, query_ms, current_max_size, headroom)
    budget = fetch_budget(conninfo, exclude_application_name=exclude_application_name, **kwargs)
    return recommend(
        budget,
        instances=instances,
        server_cores=server_cores,
        spindles=spindles,
        rate=rate,
        query_ms=query_ms,
        current_max_size=current_max_size,
        headroom=headroom,
    )


def _check_arguments(
    instances: int,
    server_cores: int | None,
    spindles: int,
    rate: float | None,
    query_ms: float | None,
    current_max_size: int | None,
    headroom: float,
) -> None:
    """`recommend`'s arguments: ValueError naming the first that makes no sense."""
    _positive_int("instances", instances)
    if server_cores is not None:
        _positive_int("server_cores", server_cores)
    if isinstance(spindles, bool) or not isinstance(spindles, int) or spindles < 0:
        raise ValueError(f"spindles must be an int >= 0, got {spindles!r}")
    if (rate is None) != (query_ms is None):
        raise ValueError("rate and query_ms go together: Little's Law needs both")
    for name, value in (("rate", rate), ("query_ms", query_ms), ("headroom", headroom)):
        if value is not None and not (_finite(value) and value > 0):
            raise ValueError(f"{name} must be a number greater than 0, got {value!r}")
    if current_max_size is not None:
        _positive_int("current_max_size", current_max_size, minimum=0)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


# ---- budget_share: a pool sized as a share of the server -----------------


def share_size(budget: ServerBudget, share: float) -> int:
    """max_size for a pool given *share* of the server's usable connections
    (max_connections minus the reserved slots; other clients are not
    subtracted, as with RDS Proxy's MaxConnectionsPercent). At least 1."""
    return max(1, math.floor(share * budget.usable))


def budget_share_option(value: object, *, server: str) -> float | None:
    """Validate the ``budget_share`` pool option."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"budget_share must be a number in (0, 1] or None, got {value!r}"
            f" ({type(value).__name__})"
        )
    share = float(value) if isinstance(value, float) or abs(value) < 2**53 else math.inf
    if not (math.isfinite(share) and 0 < share <= 1):
        raise ValueError(f"budget_share must be in (0, 1], got {value!r}")
    if server != "postgresql":
        raise ValueError(
            f"budget_share={value!r} cannot work with server={server!r}: it reads"
            " PostgreSQL's max_connections, but behind PgBouncer the pool's budget is"
            " PgBouncer's (max_client_conn, and pool_size in session mode); give max_size"
        )
    return share
