"""``--plot FILE.png``: the bench's throughput and latency charts (matplotlib).

Four panels: the cost of a borrow on one thread, throughput as threads
outnumber connections, requests per second in the request scenarios, and
request latency end to end. Every axis that spans a new connection per
request and a pool is logarithmic: they differ by thousands of times.
matplotlib is optional and imported only here, without pyplot, so no
window or global state is involved.
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
# A bar's height from (measurement, contender, group label); None: no bar.
_Value = Callable[[MeasurementResult, str, str], "float | None"]
_REQUEST_BARS: Final = (
    ("safe_checkout", "safe checkout\n16 threads"),
    ("end_to_end.no_http", "end to end,\nno HTTP"),
    ("end_to_end.http", "end to end,\nover HTTP"),
    ("async.1000", "async,\n1,000 tasks"),
)


def write_plot(
    path: Path, server: ServerInfo, client: dict[str, Any], results: list[ScenarioResult]
) -> None:
    """Draw the charts of *results* into the PNG file *path*."""
    from matplotlib.figure import Figure

    found = {m.key: m for r in results for m in r.measurements}
    figure = Figure(figsize=(13, 9), layout="constrained")
    (micro, contention), (requests, latency) = figure.subplots(2, 2)
    _micro(micro, found)
    _contention(contention, found)
    _requests(requests, found)
    _latency(latency, found)
    present = [name for name in CONTENDERS if any(m.has(name) for m in found.values())]
    handles = [_patch(_COLORS[name], name) for name in present]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
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


def _micro(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    keys = [("micro.getconn_putconn", "getconn + putconn"),
            ("micro.connection_block", "connection() block")]  # fmt: skip
    groups = [(label, found[key]) for key, label in keys if key in found]
    _grouped_bars(
        ax, groups, lambda m, name, _: m.result(name).seconds_per_op * 1e6, text=_microseconds
    )
    ax.set_title("One borrow on an idle pool, one thread")
    ax.set_ylabel("time per borrow (us, log)")


def _contention(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    ax.set_title("Threads sharing 16 connections")
    drawn = False
    for workload, style in (("empty_block", "-"), ("select_1", "--")):
        series = sorted(
            (m.threads, m) for key, m in found.items() if key.startswith(f"contention.{workload}.")
        )
        for name in CONTENDERS:
            points = [(t, m.result(name).ops_per_second) for t, m in series if m.has(name)]
            if points:
                drawn = True
                ax.plot(*zip(*points, strict=True), style, marker="o", markersize=4,
                        color=_COLORS[name])  # fmt: skip
    if not drawn:
        _empty(ax)
        return
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted({m.threads for key, m in found.items() if key.startswith("contention.")})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("threads")
    ax.set_ylabel("per second, all threads (log)")
    ax.plot([], [], "-", color="black", label="empty block")
    ax.plot([], [], "--", color="black", label="select 1")
    ax.legend(loc="best", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)


def _requests(ax: Axes, found: dict[str, MeasurementResult]) -> None:
    groups = [(label, found[key]) for key, label in _REQUEST_BARS if key in found]
    _grouped_bars(ax, groups, lambda m, name, _: m.result(name).ops_per_second)
    ax.set_title("Requests of one select 1")
    ax.set_ylabel("requests per second (log)")


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
    ax.set_title("Request latency end to end, 16 clients")
    ax.set_ylabel("milliseconds (log)")


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
            x = g + (c - (len(CONTENDERS) - 1) / 2) * width
            ax.bar(x, height, width * 0.95, color=_COLORS[name])
            ax.annotate(written(height), (x, height), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 1), textcoords="offset points")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.margins(y=0.15)


def _microseconds(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g} ms"
    return f"{value:.3g} us" if value >= 1 else f"{value * 1000:.3g} ns"


def _short(value: float) -> str:
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _patch(color: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def _empty(ax: Axes) -> None:
    ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
            transform=ax.transAxes, color="gray")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
