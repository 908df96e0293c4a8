#!/usr/bin/env python
"""Generate ferropool's sync modules from their async sources.

The async pools are the source; their sync twins are generated, so a
behaviour is written once. The conversion works on tokens, so comments,
blank lines and docstrings survive:

- ``async def`` / ``async with`` / ``async for`` lose ``async``; ``await``
  disappears;
- names in ``NAMES`` are renamed (``AsyncConnectionPool`` becomes
  ``ConnectionPool``, ``asleep`` becomes ``sleep``, ``runner_async``
  becomes ``runner``), in code, docstrings and comments alike;
- ``await conn.set_autocommit(x)`` (psycopg's async setters) becomes
  ``conn.autocommit = x``, and ``Awaitable[X]`` in annotations ``X``;
- a block that truly differs is written as::

      if True:  # ASYNC
          ...async version...
      else:
          ...sync version...

  and the sync file keeps only the ``else`` branch (or nothing, if there is
  no ``else``).

The output is formatted with ruff, and starts with a header saying where it
comes from. ``--check`` regenerates in memory and fails on any difference
(CI runs it).

Tests generate the same way: a ``tests/**/*_async.py`` holding the line
``# async_to_sync: source`` generates its twin without ``_async`` (the
line itself is not copied). Their helpers come in pairs too, from
tests/fixtures/acompat.py (``aspawn``/``spawn``, ``agather``/``gather``,
``asleep``/``sleep``...), so that concurrent clients are tasks in the
async test and threads in the sync one.

Usage: ``python tools/async_to_sync.py [--check] [FILE ...]`` (default:
every pair in ``PAIRS``).
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (async source, generated sync module), relative to the repository root.
PAIRS: list[tuple[str, str]] = [
    ("python/ferropool/runner/ping_async.py", "python/ferropool/runner/ping.py"),
    ("python/ferropool/runner/driver_async.py", "python/ferropool/runner/driver.py"),
    (
        "python/ferropool/runner/psycopg_driver_async.py",
        "python/ferropool/runner/psycopg_driver.py",
    ),
    ("python/ferropool/runner/workers_async.py", "python/ferropool/runner/workers.py"),
    ("python/ferropool/runner/runner_async.py", "python/ferropool/runner/runner.py"),
    ("python/ferropool/scope_async.py", "python/ferropool/scope.py"),
    ("python/ferropool/context_async.py", "python/ferropool/context.py"),
    ("python/ferropool/pool_async.py", "python/ferropool/pool.py"),
    ("python/ferropool/null_pool_async.py", "python/ferropool/null_pool.py"),
    ("python/ferropool/routing_async.py", "python/ferropool/routing.py"),
]

# Async name -> sync name. Applied to whole identifiers only.
NAMES: dict[str, str] = {
    # ferropool's own classes and functions
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncNullConnectionPool": "NullConnectionPool",
    "AsyncRoutingPool": "RoutingPool",
    "AsyncRoutedContext": "RoutedContext",
    "AsyncConnectionContext": "ConnectionContext",
    "AsyncLender": "Lender",
    "AsyncBlock": "Block",
    "AsyncRunner": "Runner",
    "AsyncWorkers": "Workers",
    "AsyncDriver": "Driver",
    "AsyncPsycopgDriver": "PsycopgDriver",
    "AsyncPoolConnection": "PoolConnection",
    "aread_budget": "read_budget",
    "aresolve_budget": "resolve_budget",
    "aping": "ping",
    "ACT": "CT",
    # modules
    "pool_async": "pool",
    "null_pool_async": "null_pool",
    "routing_async": "routing",
    "runner_async": "runner",
    "workers_async": "workers",
    "driver_async": "driver",
    "ping_async": "ping",
    "psycopg_driver_async": "psycopg_driver",
    "context_async": "context",
    "scope_async": "scope",
    "AsyncOpenClose": "OpenClose",
    # psycopg
    "AsyncConnection": "Connection",
    "AsyncCursor": "Cursor",
    # the primitives of ferropool.runner.acompat
    "AEvent": "Event",
    "ALock": "Lock",
    "AQueue": "Queue",
    "AWorker": "Worker",
    "aspawn": "spawn",
    "ajoin": "join",
    "asleep": "sleep",
    "acurrent": "current",
    "amaybe": "maybe",
    # dunder and method names
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclose": "close",
    # test helpers: tests/fixtures/acompat.py's primitives, and the fixture
    # modules generated from an async source
    "athreads": "threads",
    "arun": "run",
    "agather": "gather",
    "ato_thread": "to_thread",
    "helpers_async": "helpers",
    "safety_async": "safety",
    "load_async": "load",
    "wait_until_async": "wait_until",
    "backend_pid_async": "backend_pid",
    "count_backends_async": "count_backends",
    "terminate_backend_async": "terminate_backend",
    # the standard library's async spellings
    "asynccontextmanager": "contextmanager",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
}

# Words in docstrings and comments that say "async" in prose.
PROSE: list[tuple[str, str]] = [
    ("an async pool", "a pool"),
    ("An async pool", "A pool"),
    ("async pools", "pools"),
    ("async pool", "pool"),
    ("Async pools", "Pools"),
    ("`async with`", "`with`"),
    ("``async with``", "``with``"),
    ("async with", "with"),
    ("an asyncio", "a"),
    ("``await ", "``"),
    ("`await ", "`"),
    ("An asyncio", "A"),
]

_ASYNC_IF = re.compile(r"^(?P<indent>[ \t]*)if True:\s*# ASYNC\s*$")
_SETTER = re.compile(
    r"^(?P<indent>\s*)await (?P<obj>[\w.\[\]]+)\.set_(?P<attr>autocommit|read_only)\((?P<arg>.+)\)$"
)
_WORD = re.compile(r"\b(" + "|".join(sorted(map(re.escape, NAMES), key=len, reverse=True)) + r")\b")


def header(source: str) -> str:
    return (
        f"# Generated from {Path(source).name} by tools/async_to_sync.py: do not edit.\n"
        "# Change the async source and run `python tools/async_to_sync.py`.\n"
    )


def convert(text: str, source: str) -> str:
    """The sync module for the async module *text* (unformatted)."""
    # A test source's mark would make its generated twin claim to be a source.
    lines = [line for line in text.splitlines(keepends=True) if line.strip() != MARK]
    lines = _drop_async_blocks(lines)
    lines = [_setter(line) for line in lines]
    return header(source) + _tokens("".join(lines))


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _drop_async_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _ASYNC_IF.match(lines[i].rstrip("\n"))
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = len(m.group("indent"))
        i += 1
        # The async branch: everything indented deeper, blank lines included.
        while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > indent):
            i += 1
        if i < len(lines) and _indent_of(lines[i]) == indent and lines[i].strip() == "else:":
            i += 1
            while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > indent):
                line = lines[i]
                out.append(line[4:] if line.strip() else line)
                i += 1
            continue
        # No sync branch: a block left empty by the removal gets a `pass`.
        previous = next((line for line in reversed(out) if line.strip()), "")
        following = next((line for line in lines[i:] if line.strip()), "")
        if previous.rstrip().endswith(":") and _indent_of(following) < indent:
            out.append(" " * indent + "pass\n")
    return out


def _setter(line: str) -> str:
    m = _SETTER.match(line.rstrip("\n"))
    if not m:
        return line
    return f"{m['indent']}{m['obj']}.{m['attr']} = {m['arg']}\n"


def _prose(text: str) -> str:
    for old, new in PROSE:
        text = text.replace(old, new)
    return _WORD.sub(lambda m: NAMES[m.group(1)], text)


def _tokens(text: str) -> str:
    """Drop async/await and rename, token by token, keeping the layout."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    # (start, end, replacement) in text offsets, applied right to left.
    edits: list[tuple[int, int, str]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for k, tok in enumerate(tokens):
        start, end = offset(tok.start), offset(tok.end)
        if tok.type == tokenize.NAME and tok.string in ("async", "await"):
            nxt = tokens[k + 1]
            if tok.string == "async" and nxt.string not in ("def", "with", "for"):
                continue
            # The keyword and the blanks up to the next token go.
            edits.append((start, offset(nxt.start) if nxt.start[0] == tok.start[0] else end, ""))
        elif tok.type == tokenize.NAME and tok.string == "Awaitable" and _opens(tokens, k):
            # Awaitable[X] -> X: drop the name, its bracket and the matching one.
            close = _matching(tokens, k + 1)
            edits.append((start, offset(tokens[k + 1].end), ""))
            edits.append((offset(tokens[close].start), offset(tokens[close].end), ""))
        elif tok.type == tokenize.NAME and tok.string in NAMES:
            edits.append((start, end, NAMES[tok.string]))
        elif tok.type in (tokenize.STRING, tokenize.COMMENT):
            new = _prose(tok.string)
            if new != tok.string:
                edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _opens(tokens: list[tokenize.TokenInfo], k: int) -> bool:
    return k + 1 < len(tokens) and tokens[k + 1].string == "["


def _matching(tokens: list[tokenize.TokenInfo], k: int) -> int:
    """The index of the bracket closing the one at *k*."""
    depth = 0
    for i in range(k, len(tokens)):
        if tokens[i].string in "([{":
            depth += 1
        elif tokens[i].string in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets")


def ruff(text: str, filename: str) -> str:
    """*text* with imports sorted, nested `with` joined and formatted as the
    project's ruff does."""
    # SIM117: `with a:` around `async with b:` becomes two nested plain `with`.
    fixes = ["check", "--select", "I,F401,SIM117", "--fix-only", "--quiet"]
    for args in (fixes, ["format", "--quiet"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--stdin-filename", filename, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def generate(source: str, target: str) -> str:
    text = (ROOT / source).read_text()
    return ruff(convert(text, source), str(ROOT / target))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    parser.add_argument("files", nargs="*", help="async sources to convert (default: all)")
    opts = parser.parse_args()
    pairs = PAIRS + test_pairs()
    if opts.files:
        wanted = {str(Path(f).resolve().relative_to(ROOT)) for f in opts.files}
        pairs = [p for p in pairs if p[0] in wanted]
    stale = 0
    for source, target in pairs:
        if not (ROOT / source).exists():
            continue
        new = generate(source, target)
        path = ROOT / target
        old = path.read_text() if path.exists() else ""
        if new == old:
            continue
        if opts.check:
            stale += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"{target} (committed)",
                    f"{target} (generated from {source})",
                )
            )
        else:
            path.write_text(new)
            print(f"generated {target} from {source}")
    if stale:
        print(f"\n{stale} generated file(s) out of date: run python tools/async_to_sync.py")
        return 1
    return 0


def test_pairs() -> list[tuple[str, str]]:
    """Each ``tests/**/*_async.py`` marked as a source (a line holding
    ``MARK``) generates its twin without ``_async``."""
    pairs = []
    for path in sorted((ROOT / "tests").rglob("*_async.py")):
        if MARK not in path.read_text():
            continue
        rel = path.relative_to(ROOT)
        pairs.append((str(rel), str(rel.with_name(rel.name.replace("_async.py", ".py")))))
    return pairs


# How a test module says that its sync twin is generated from it.
MARK = "# async_to_sync: source"


if __name__ == "__main__":
    sys.exit(main())
