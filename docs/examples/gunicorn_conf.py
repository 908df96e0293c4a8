"""gunicorn settings for gunicorn_app.py: a pool per worker, opened after fork.

Docs: docs/guides/gunicorn.md.
"""

from __future__ import annotations

from typing import Any

workers = 2
worker_class = "sync"


def post_fork(server: Any, worker: Any) -> None:
    # In the worker process: its own pool, its own connections.
    import gunicorn_app

    gunicorn_app.open_pool()


def worker_exit(server: Any, worker: Any) -> None:
    import gunicorn_app

    gunicorn_app.close_pool()
