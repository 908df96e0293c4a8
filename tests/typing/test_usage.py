"""The typed-usage file passes ``mypy --strict``, and its examples run.

tests/typing/usage.py uses the four pools the way psycopg's docs do, with
``Connection[DictRow]`` and ``assert_type`` on pools, connections and rows.
mypy runs on it once per session; its errors are sorted by the function
they fall in; the null pools' functions are checked apart (the null pools
were once ``Any`` to mypy).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.typing import usage

ROOT = Path(__file__).resolve().parents[2]
USAGE = Path(usage.__file__).resolve()
NULL_POOL_FUNCTIONS = ("null_pool_usage", "async_null_pool_usage")


def _functions(path: Path) -> dict[str, range]:
    """Top-level function names of *path* and the lines each spans."""
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name: range(node.lineno, (node.end_lineno or node.lineno) + 1)
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict's errors on usage.py, by enclosing function ("" outside any)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(cache),
            str(USAGE.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), f"mypy did not run:\n{result.stdout}{result.stderr}"
    functions = _functions(USAGE)
    errors: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): error: ", line)
        if m is None:
            continue
        assert Path(ROOT, m.group(1)).resolve() == USAGE, line
        lineno = int(m.group(2))
        owner = next((name for name, lines in functions.items() if lineno in lines), "")
        errors.setdefault(owner, []).append(line)
    assert result.returncode == 0 or errors, f"mypy failed without errors:\n{result.stdout}"
    return errors


def test_typed_usage_passes_mypy_strict(mypy_errors: dict[str, list[str]]) -> None:
    wrong = [
        e for name, lines in mypy_errors.items() if name not in NULL_POOL_FUNCTIONS for e in lines
    ]
    assert wrong == [], "\n".join(wrong)


def test_null_pools_are_generic_to_mypy(mypy_errors: dict[str, list[str]]) -> None:
    wrong = [e for name in NULL_POOL_FUNCTIONS for e in mypy_errors.get(name, [])]
    assert wrong == [], "\n".join(wrong)


def test_typed_usage_runs(dsn: str) -> None:
    assert usage.pool_usage(dsn) == [{"x": 1}]
    assert usage.null_pool_usage(dsn) == [{"x": 1}]


@pytest.mark.anyio
async def test_typed_async_usage_runs(dsn: str) -> None:
    assert await usage.async_pool_usage(dsn) == [{"x": 1}]
    assert await usage.async_null_pool_usage(dsn) == [{"x": 1}]
