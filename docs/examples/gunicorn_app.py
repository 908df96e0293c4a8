"""A WSGI app served by gunicorn's pre-fork workers, one pool per worker.

Run it:  FERROPOOL_DSN="dbname=app" gunicorn -c gunicorn_conf.py gunicorn_app:app

The pool is opened in each worker by gunicorn_conf.py's post_fork hook,
never in the master: connections are not shared across processes. Docs:
docs/guides/gunicorn.md. Tested by tests/docs/test_examples.py, which runs
gunicorn with two workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from ferropool import ConnectionPool
from ferropool.metrics.advice import Watcher, watch

pool: ConnectionPool[Any] | None = None
watcher: Watcher | None = None


def open_pool() -> None:
    """Called in each worker after the fork (gunicorn_conf.post_fork)."""
    global pool, watcher
    pool = ConnectionPool(
        os.environ["FERROPOOL_DSN"],
        min_size=1,
        max_size=4,  # per worker: workers x max_size <= the server's budget
        name=f"worker-{os.getpid()}",
        open=True,
    )
    # Sizing advice, logged as warnings on the "ferropool" logger.
    watcher = watch(pool, interval=5.0)


def close_pool() -> None:
    """Called when the worker exits (gunicorn_conf.worker_exit)."""
    if watcher is not None:
        watcher.stop()
    if pool is not None:
        pool.close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    assert pool is not None, "the pool is opened by the post_fork hook"
    with pool.connection() as conn:
        row = conn.execute("select pg_backend_pid(), pg_sleep(%s)", (0.05,)).fetchone()
    assert row is not None
    body = json.dumps(
        {"worker": os.getpid(), "backend": row[0], "pool_size": pool.get_stats()["pool_size"]}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
