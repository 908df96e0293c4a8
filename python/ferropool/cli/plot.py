"""``--plot FILE.png``: the bench's charts (matplotlib).

Five panels, one quantity each, each saying whether higher or lower is
better: the time of one borrow on one thread (µs), throughput of an empty
block and of ``select 1`` as threads outnumber connections (blocks/s,
requests/s), requests per second in the request scenarios, and request
latency end to end (ms). The sixth cell holds the legend and the notes, so
that nothing covers the data. Every axis that spans a new connection per
request and a pool is logarithmic: they differ by thousands of times.
matplotlib is optional and imported only here, without pyplot, so no window
or global state is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .contenders import CONTENDERS, FERROPOOL, NEW_CONNECTION, PSYCOPG_POOL, SQLALCHEMY
from .errors import CliError
from .results import MeasurementResult, ScenarioResult
from .server import ServerInfo

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["write_plot"]

_COLORS: Final = {
    NEW_CONNECTION: "#8c8c8c",
    PSYCOPG_POOL: "#3b75af",
    SQLALCHEMY: "#8e6bb8",
    FERROPOOL: "#d2691e",
}
_MARKERS: Final = {NEW_CONNECTION: "s", PSYCOPG_POOL: "o", SQLALCHEMY: "^", FERROPOOL: "D"}
_HIGHER: Final = "higher is better"
_LOWER: Final = "lower is better"
# A bar's height from (measurement, contender, group label); None: no bar.
_Value = Callable[[MeasurementResult, str, str], "float | None"]
_REQUEST_BARS: Final = (
    ("safe_checkout", "safe checkout,\n16 threads"),
    ("end_to_end.no_http", "end to end,\nno HTTP"),
    ("end_to_end.http", "end to end,\nover HTTP"),
    ("async.1000", "async,\n1,000 tasks"),
)
_NO_ASYNC_SQLALCHEMY: Final = (
    "SQLAlchemy's QueuePool is thread-based (its asyncio pooling works only inside an"
    " AsyncEngine), so the async group compares psycopg_pool's AsyncConnectionPool with"
    " ferropool's."
)


def write_plot(
    path: Path, server: ServerInfo, client: dict[str, Any], results: list[ScenarioResult]
) -> None:
    """Draw the charts of *results* into the PNG file *path*."""
    from matplotlib.figure import Figure

    found = {m.key: m for r in results for m in r.measurements}
    figure = Figure(figsize=(13, 13), layout="constrained")
    (micro, blocks), (selects, requests), (latency, key) = figure.subplots(3, 2)
    _micro(micro, found)
    _contention(blocks, found, "empty_block", "Empty connection() block", "blocks per second")
    _contention(selects, found, "select_1", "select 1", "requests per second")
    _requests(requests, found)
    _latency(latency, found)
    _key(key, found)
    tls = f"TLS ({server.tls_version})" if server.tls and server.tls_version else "TLS"
    protections = f"{server.auth} + {tls}" if server.tls else f"{server.auth}, no TLS"
    figure.suptitle(
        f"ferropool bench: PostgreSQL {server.version.split()[0]} with {protections}\n"
        f"ferropool {client['ferropool']}, psycopg {client['psycopg']}, "
        f"psycopg_pool {client['psycopg_pool']}, SQLAlchemy {client['sqlalchemy']}, "
        f"Python {client['python']}, {client['cpus']} CPUs",
        fontsize=11,
    )
    try:
        figure.savefig(path, dpi=100)
    except OSError as ex:
        raise CliError(f"--plot {path}: {ex.strerror or ex}") from None


def _title(ax: Axes, title: str, better: str) -> None:
    ax.set_title(f"{title}\n({better})", fontsize=11)


def _micro(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    keys = [("micro.getconn_putconn", "getconn() + putconn()"),
            ("micro.connection_block", "empty connection() block")]  # fmt: skip
    groups = [(label, found[key]) for key, label in keys if key in found]
    _grouped_bars(
        ax, groups, lambda m, name, _: m.result(name).seconds_per_op * 1e6, text=_microseconds
    )
    _title(ax, "One borrow from an idle pool, one thread", _LOWER)
    ax.set_ylabel("time per borrow (µs, log scale)")


def _contention(
    ax: Axes, found: dict[str, MeasurementResult], workload: str, title: str, unit: str
) -> None:
    _title(ax, f"{title}: threads sharing 16 connections", _HIGHER)
    series = sorted(
        (m.threads, m) for key, m in found.items() if key.startswith(f"contention.{workload}.")
    )
    drawn = False
    for name in CONTENDERS:
        points = [(t, m.result(name).ops_per_second) for t, m in series if m.has(name)]
        if points:
            drawn = True
            ax.plot(*zip(*points, strict=True), "-", marker=_MARKERS[name], markersize=5,
                    color=_COLORS[name])  # fmt: skip
    if not drawn:
        _empty(ax)
        return
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = [t for t, _ in series]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("threads")
    ax.set_ylabel(f"{unit}, all threads (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(y=0.15)


def _requests(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    groups = [(label, found[key]) for key, label in _REQUEST_BARS if key in found]
    _grouped_bars(ax, groups, lambda m, name, _: m.result(name).ops_per_second)
    _title(ax, "Requests of one select 1", _HIGHER)
    ax.set_ylabel("requests per second (log scale)")
    # Where SQLAlchemy's bar would be in the async group: why there is none.
    for g, (_, measurement) in enumerate(groups):
        if measurement.tasks is not None and not measurement.has(SQLALCHEMY):
            x = g + _offset(CONTENDERS.index(SQLALCHEMY))
            ax.annotate("no asyncio\nQueuePool", (x, 0.02), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7, color=_COLORS[SQLALCHEMY],
                        rotation=90)  # fmt: skip


def _latency(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    groups = []
    for key, label in (("end_to_end.http", "over HTTP"), ("end_to_end.no_http", "no HTTP")):
        if key in found:
            groups += [(f"{label}\np50", found[key]), (f"{label}\np99", found[key])]

    def value(m: MeasurementResult, name: str, label: str) -> float | None:
        result = m.result(name)
        seconds = result.latency_p50 if label.endswith("p50") else result.latency_p99
        return None if seconds is None else seconds * 1e3

    _grouped_bars(ax, groups, value)
    _title(ax, "Request latency end to end, 16 threads", _LOWER)
    ax.set_ylabel("milliseconds (log scale)")


def _key(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    """The legend and the notes, in a cell of their own."""
    from matplotlib.lines import Line2D

    ax.axis("off")
    present = [name for name in CONTENDERS if any(m.has(name) for m in found.values())]
    handles = [
        Line2D([], [], color=_COLORS[name], marker=_MARKERS[name], markersize=7, linewidth=6,
               label=name)
        for name in present
    ]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", frameon=False, fontsize=11,
              title="contenders (bars and lines)", title_fontsize=11)  # fmt: skip
    notes = [
        "Log scales: a new connection per request and a pool differ by thousands of times.",
        "Each figure is the median of the rounds, contenders alternating round by round.",
        "safe checkout: psycopg_pool with check_connection, SQLAlchemy with pre_ping,"
        " ferropool as configured by default.",
    ]
    if any(m.tasks is not None for m in found.values()):
        notes.append(_NO_ASYNC_SQLALCHEMY)
    ax.text(0.0, 0.45, "\n\n".join(_wrapped(note, 62) for note in notes), va="top",
            ha="left", fontsize=9.5, transform=ax.transAxes, color="#333333")  # fmt: skip


def _offset(index: int) -> float:
    width = 0.8 / len(CONTENDERS)
    return (index - (len(CONTENDERS) - 1) / 2) * width


def _grouped_bars(
    ax: Axes,
    groups: list[tuple[str, MeasurementResult]],
    value: _Value,
    *,
    text: Callable[[float], str] | None = None,
) -> None:
    """One group of bars per measurement, one bar per contender, log scale, values written."""
    if not groups:
        _empty(ax)
        return
    width = 0.8 / len(CONTENDERS)
    written = text or _short
    for g, (label, measurement) in enumerate(groups):
        for c, name in enumerate(CONTENDERS):
            if not measurement.has(name):
                continue
            height = value(measurement, name, label)
            if height is None or height <= 0:
                continue
            x = g + _offset(c)
            ax.bar(x, height, width * 0.95, color=_COLORS[name])
            ax.annotate(written(height), (x, height), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 1), textcoords="offset points")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.margins(y=0.15)


def _microseconds(value: float) -> str:
    if value >= 1000:
        return f"{_digits(value / 1000)} ms"
    return f"{_digits(value)} µs" if value >= 1 else f"{_digits(value * 1000)} ns"


def _short(value: float) -> str:
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{_digits(value / scale)}{suffix}"
    return _digits(value)


def _digits(value: float) -> str:
    """Three significant digits, trailing zeros kept (20.0, 1.50), for values below 1000."""
    return f"{value:#.3g}".rstrip(".") if value < 999.5 else f"{value:,.0f}"


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width)


def _empty(ax: Axes) -> None:
    ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
            transform=ax.transAxes, color="gray")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
