"""The Prometheus collector, scraped as Prometheus would scrape it.

Each test scrapes the exposition text of a fresh CollectorRegistry (or of
prometheus_client's HTTP server) and parses it back, then uses the pool and
checks that the exported values moved as they should.
"""

from __future__ import annotations

import gc
import threading
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from ferropool import AsyncConnectionPool, ConnectionPool
from ferropool.cli.embedded import free_port
from ferropool.metrics import COUNTERS, GAUGES
from ferropool.metrics.prometheus import PoolCollector
from tests.fixtures.helpers import DEADLINE, wait_until

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Scrape:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(registry: CollectorRegistry) -> Scrape:
    return parse(generate_latest(registry).decode())


def value(samples: Scrape, name: str, pool: str = "web", **labels: str) -> float:
    return samples[(name, frozenset({"pool": pool, **labels}.items()))]


def buckets(samples: Scrape, name: str, pool: str = "web") -> list[tuple[float, float]]:
    found = [
        (float(dict(labels)["le"]), v)
        for (n, labels), v in samples.items()
        if n == f"{name}_bucket" and dict(labels)["pool"] == pool
    ]
    return sorted(found)


def test_scrape_moves_as_the_pool_is_used(dsn: str) -> None:
    registry = CollectorRegistry()
    with ConnectionPool(dsn, min_size=2, max_size=4, name="web", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        PoolCollector(pool, registry=registry)
        pool.wait(timeout=DEADLINE)

        s = scrape(registry)
        assert value(s, "ferropool_pool_size") == 2
        assert value(s, "ferropool_pool_available") == 2
        assert value(s, "ferropool_pool_min") == 2
        assert value(s, "ferropool_pool_max") == 4
        assert value(s, "ferropool_requests_total") == 0
        assert value(s, "ferropool_connections_total") == 2
        assert value(s, "ferropool_connect_time_seconds_count") == 2
        assert value(s, "ferropool_usage_time_seconds_count") == 0

        # Three borrowers: the pool grows to three, none idle.
        held = [pool.getconn() for _ in range(3)]
        s = scrape(registry)
        assert value(s, "ferropool_requests_total") == 3
        assert value(s, "ferropool_pool_size") == 3
        assert value(s, "ferropool_pool_available") == 0
        for conn in held:
            pool.putconn(conn)

        for _ in range(20):
            with pool.connection() as conn:
                conn.execute("select 1")
        s = scrape(registry)
        assert value(s, "ferropool_requests_total") == 23
        assert value(s, "ferropool_pool_available") == 3
        assert value(s, "ferropool_usage_time_seconds_count") == 23
        usage = buckets(s, "ferropool_usage_time_seconds")
        assert len(usage) == 31 and usage[-1] == (float("inf"), 23)
        assert [v for _, v in usage] == sorted(v for _, v in usage)
        # The third borrower waited for the pool to open a connection.
        assert value(s, "ferropool_requests_queued_total") == 1
        assert value(s, "ferropool_wait_time_seconds_count") == 1
        assert value(s, "ferropool_connections_total") == 3


def test_scrape_shows_waiting_requests_and_their_wait(dsn: str) -> None:
    registry = CollectorRegistry()
    with ConnectionPool(dsn, min_size=1, name="web", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        PoolCollector(pool, registry=registry)
        pool.wait(timeout=DEADLINE)
        held = pool.getconn()
        done = threading.Event()

        def borrower() -> None:
            with pool.connection(timeout=DEADLINE):
                done.set()

        t = threading.Thread(target=borrower)
        t.start()
        wait_until(
            lambda: value(scrape(registry), "ferropool_requests_waiting") == 1,
            what="the waiting request in the scrape",
        )
        time.sleep(0.1)
        pool.putconn(held)
        assert done.wait(DEADLINE)
        t.join(DEADLINE)

        s = scrape(registry)
        assert value(s, "ferropool_requests_waiting") == 0
        assert value(s, "ferropool_requests_queued_total") == 1
        assert value(s, "ferropool_requests_wait_seconds_total") >= 0.1
        assert value(s, "ferropool_wait_time_seconds_count") == 1
        assert value(s, "ferropool_wait_time_seconds_sum") >= 0.1
        # Timed out requests are errors.
        held = pool.getconn()
        with pytest.raises(Exception, match="couldn't get a connection"):
            pool.getconn(timeout=0.05)
        pool.putconn(held)
        assert value(scrape(registry), "ferropool_requests_errors_total") == 1


def test_counters_never_go_backwards(dsn: str) -> None:
    registry = CollectorRegistry()
    with ConnectionPool(dsn, min_size=1, name="web", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        PoolCollector(pool, registry=registry)
        for _ in range(5):
            with pool.connection():
                pass
        assert value(scrape(registry), "ferropool_requests_total") == 5
        pool.pop_stats()
        pool.get_histograms(reset=True)
        for _ in range(2):
            with pool.connection():
                pass
        s = scrape(registry)
        assert value(s, "ferropool_requests_total") == 7
        assert value(s, "ferropool_usage_time_seconds_count") == 7


def test_several_pools_are_labelled_by_name(dsn: str) -> None:
    registry = CollectorRegistry()
    a = ConnectionPool(dsn, min_size=1, name="a", open=True)
    b = ConnectionPool(dsn, min_size=2, name="b", open=True)
    try:
        collector = PoolCollector([a, b], registry=registry)
        a.wait(timeout=DEADLINE)
        b.wait(timeout=DEADLINE)
        s = scrape(registry)
        assert value(s, "ferropool_pool_size", pool="a") == 1
        assert value(s, "ferropool_pool_size", pool="b") == 2
        with pytest.raises(ValueError, match="already exported"):
            collector.add(ConnectionPool(dsn, name="a", open=False))
        collector.remove(a)
        assert ("ferropool_pool_size", frozenset({"pool": "a"}.items())) not in scrape(registry)
        assert collector.pools == [b]
    finally:
        a.close()
        b.close()
    # A garbage-collected pool drops out of the output.
    del b
    gc.collect()
    assert not [k for k in scrape(registry) if dict(k[1]).get("pool") == "b"]


def test_every_stats_key_is_exported(dsn: str) -> None:
    registry = CollectorRegistry()
    pool = ConnectionPool(dsn, name="web", open=False)
    PoolCollector(pool, registry=registry)
    s = scrape(registry)
    for key in GAUGES:
        assert ("ferropool_" + key, frozenset({"pool": "web"}.items())) in s
    for counter in COUNTERS.values():
        assert ("ferropool_" + counter.name + "_total", frozenset({"pool": "web"}.items())) in s


def test_default_registry_and_http_exposition(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, name="web-http", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        collector = PoolCollector(pool, namespace="app_db")
        try:
            port = free_port()
            server, thread = start_http_server(port, addr="127.0.0.1")
            try:
                with pool.connection():
                    pass
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    s = parse(r.read().decode())
            finally:
                server.shutdown()
                server.server_close()
                thread.join(5)
        finally:
            REGISTRY.unregister(collector)
        assert value(s, "app_db_requests_total", pool="web-http") == 1
        assert value(s, "app_db_usage_time_seconds_count", pool="web-http") == 1


def test_refuses_what_is_not_a_pool() -> None:
    with pytest.raises(TypeError, match="ferropool pool"):
        PoolCollector([object()], registry=None)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="namespace"):
        PoolCollector(registry=None, namespace="bad name")


@pytest.mark.anyio
async def test_async_pool_is_scraped(dsn: str) -> None:
    registry = CollectorRegistry()
    async with AsyncConnectionPool(dsn, min_size=1, name="web") as pool:
        PoolCollector(pool, registry=registry)
        for _ in range(3):
            async with pool.connection() as conn:
                await conn.execute("select 1")
        s: Any = scrape(registry)
        assert value(s, "ferropool_requests_total") == 3
        assert value(s, "ferropool_usage_time_seconds_count") == 3
