"""Flask on ferropool: one pool per process, borrowed for each request.

Run it:  FERROPOOL_DSN="dbname=app" flask --app flask_app run
         (or any WSGI server: waitress-serve --call flask_app:create_app)

Docs: docs/guides/flask.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ferropool import ConnectionPool, PoolTimeout
from ferropool.metrics.prometheus import PoolCollector


def create_app(dsn: str | None = None) -> Flask:
    app = Flask(__name__)

    # One pool per process, opened now and closed at exit. Size it for the
    # server's threads: waitress' default is 4, a threaded dev server more.
    pool = ConnectionPool(
        dsn or os.environ["FERROPOOL_DSN"],
        min_size=2,
        max_size=8,
        timeout=5.0,  # a request waits at most 5 s for a connection
        name="flask",
        open=True,
    )
    atexit.register(pool.close)
    app.extensions["ferropool"] = pool

    # Prometheus metrics on /metrics (a registry of the app's own here; the
    # default registry works the same with PoolCollector(pool)).
    registry = CollectorRegistry()
    PoolCollector(pool, registry=registry)

    with pool.connection() as conn:
        conn.execute(
            "create table if not exists flask_notes (id serial primary key, body text not null)"
        )

    @app.get("/double/<int:n>")
    def double(n: int) -> Any:
        with pool.connection() as conn:
            row = conn.execute("select %s::int * 2", (n,)).fetchone()
        assert row is not None
        return jsonify(n=n, double=row[0])

    @app.post("/notes")
    def add_note() -> Any:
        body = (request.get_json(silent=True) or {}).get("body", "")
        # The block commits when it ends without an exception, and rolls
        # back if it raises; either way the connection goes back.
        with pool.connection() as conn:
            row = conn.execute(
                "insert into flask_notes (body) values (%s) returning id", (body,)
            ).fetchone()
        assert row is not None
        return jsonify(id=row[0]), 201

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        with pool.connection() as conn:
            row = conn.execute("select body from flask_notes where id = %s", (note_id,)).fetchone()
        if row is None:
            return jsonify(error="not found"), 404
        return jsonify(id=note_id, body=row[0])

    @app.get("/health")
    def health() -> Any:
        stats = pool.get_stats()
        return jsonify(
            size=stats["pool_size"],
            idle=stats["pool_available"],
            waiting=stats["requests_waiting"],
            advice=[f.message for f in pool.advice()],
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(PoolTimeout)
    def busy(error: PoolTimeout) -> Any:
        # Every connection stayed busy for `timeout` seconds: shed load.
        return jsonify(error="database busy, try again"), 503

    return app
