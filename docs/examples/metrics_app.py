"""Monitoring a pool: Prometheus, OpenTelemetry, and sizing advice.

Run it:  FERROPOOL_DSN="dbname=app" python metrics_app.py
         then curl http://127.0.0.1:9464/metrics

Docs: docs/metrics.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from prometheus_client import start_http_server

from ferropool import ConnectionPool
from ferropool.metrics import otel
from ferropool.metrics.advice import watch
from ferropool.metrics.prometheus import PoolCollector


def main(dsn: str, port: int = 9464, seconds: float = 1.0) -> None:
    logging.basicConfig(level=logging.WARNING)  # advice arrives as warnings
    with ConnectionPool(dsn, min_size=2, max_size=8, name="app", open=True) as pool:
        # Prometheus: the pool's gauges, counters and histograms on /metrics.
        PoolCollector(pool)
        server, _ = start_http_server(port, addr="127.0.0.1")

        # OpenTelemetry: db.client.connection.* through a meter provider
        # (here printed to stdout every second; use your OTLP exporter).
        reader = PeriodicExportingMetricReader(
            ConsoleMetricExporter(out=sys.stdout), export_interval_millis=1000
        )
        provider = MeterProvider(metric_readers=[reader])
        otel.instrument(pool, provider)

        # Advice: sampled every 5 s, findings logged at most every 10 min.
        with watch(pool, interval=5.0):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                with pool.connection() as conn:
                    conn.execute("select 1")
                time.sleep(0.01)
            print("advice:", [f.message for f in pool.advice()])
        provider.shutdown()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main(
        os.environ["FERROPOOL_DSN"],
        port=int(os.environ.get("PORT", "9464")),
        seconds=float(os.environ.get("SECONDS", "60")),
    )
