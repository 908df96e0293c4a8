"""The documentation says what the code does.

docs/configuration.md lists every constructor parameter of every pool class
with its real default; docs/metrics.md names every stats key, histogram and
exported metric; every relative link in docs/ (and README's link to it)
leads to a file that exists.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)
from ferropool.metrics import COUNTERS, GAUGES, HISTOGRAMS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
POOLS = [ConnectionPool, NullConnectionPool, AsyncConnectionPool, AsyncNullConnectionPool]


def parameters(cls: type[Any]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in params.items() if name != "self"}


def documented_defaults() -> dict[str, str]:
    """The parameter table of configuration.md: name -> default as written."""
    text = (DOCS / "configuration.md").read_text()
    table = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", table, re.MULTILINE)
    return dict(rows)


def written(default: Any) -> str:
    if default == "":
        return '""'
    if isinstance(default, type):
        return f"{default.__module__.split('.')[0]}.{default.__name__}"
    return repr(default)


def test_configuration_lists_every_parameter_with_its_default() -> None:
    documented = documented_defaults()
    actual = parameters(ConnectionPool)
    assert list(documented) == list(actual)
    for name, default in actual.items():
        assert documented[name] == written(default), name


@pytest.mark.parametrize("cls", POOLS[1:], ids=lambda c: c.__name__)
def test_other_pools_differ_only_where_documented(cls: type[Any]) -> None:
    base, other = parameters(ConnectionPool), parameters(cls)
    assert list(other) == list(base)
    differing = {name for name in base if written(base[name]) != written(other[name])}
    allowed = set()
    if "Null" in cls.__name__:
        allowed.add("min_size")
    if "Async" in cls.__name__:
        allowed.add("connection_class")
    assert differing == allowed
    text = (DOCS / "configuration.md").read_text()
    assert cls.__name__ in text


def test_metrics_doc_names_every_figure() -> None:
    text = (DOCS / "metrics.md").read_text()
    for key in [*GAUGES, *COUNTERS, *HISTOGRAMS]:
        assert f"`{key}`" in text, key
    for key in GAUGES:
        assert f"`ferropool_{key}`" in text, key
    for counter in COUNTERS.values():
        assert f"`ferropool_{counter.name}_total`" in text, counter.name
    for name in HISTOGRAMS:
        assert f"`ferropool_{name}_seconds`" in text, name


def markdown_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def test_relative_links_lead_to_files() -> None:
    files = [*markdown_files(), ROOT / "README.md"]
    checked = 0
    for md in files:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            assert (md.parent / path).exists(), f"{md.relative_to(ROOT)}: broken link {target}"
            checked += 1
    assert checked > 20


def test_every_guide_and_example_is_linked_from_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for md in markdown_files():
        if md.name != "README.md":
            assert str(md.relative_to(DOCS)) in index, md.name
    examples = {p.name for p in (DOCS / "examples").glob("*.py")}
    linked = set()
    for md in markdown_files():
        linked |= set(re.findall(r"examples/([a-z0-9_]+\.py)", md.read_text()))
    assert examples <= linked, examples - linked
