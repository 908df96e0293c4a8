"""OpenTelemetry metrics (db.client.connection.*), read back through the
SDK's InMemoryMetricReader as an exporter would receive them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ferropool import ConnectionPool, NullConnectionPool, PoolTimeout
from ferropool.metrics.otel import POOL_NAME, STATE, instrument
from tests.fixtures.helpers import DEADLINE, wait_until

INSTRUMENTS = {
    "db.client.connection.count",
    "db.client.connection.idle.max",
    "db.client.connection.idle.min",
    "db.client.connection.max",
    "db.client.connection.pending_requests",
    "db.client.connection.timeouts",
    "db.client.connection.create_time",
    "db.client.connection.wait_time",
    "db.client.connection.use_time",
}
HISTOGRAMS = {
    "db.client.connection.create_time",
    "db.client.connection.wait_time",
    "db.client.connection.use_time",
}


class Collected:
    """One collection: data points by (instrument, pool, state)."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        data = reader.get_metrics_data()
        self.points: dict[tuple[str, str, str | None], Any] = {}
        self.units: dict[str, str] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "ferropool"
                for metric in sm.metrics:
                    self.units[metric.name] = metric.unit or ""
                    for dp in metric.data.data_points:
                        attrs = dict(dp.attributes or {})
                        key = (metric.name, str(attrs[POOL_NAME]), attrs.get(STATE))
                        self.points[key] = dp

    def value(self, name: str, pool: str = "db", state: str | None = None) -> Any:
        return self.points[(name, pool, state)].value

    def hist(self, name: str, pool: str = "db") -> Any:
        return self.points[(name, pool, None)]

    def names(self, pool: str = "db") -> set[str]:
        return {name for name, p, _ in self.points if p == pool}


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Any:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def test_semantic_convention_instruments(dsn: str, reader: Any, provider: Any) -> None:
    with ConnectionPool(dsn, min_size=2, max_size=3, name="db", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        instrument(pool, provider)
        for _ in range(10):
            with pool.connection() as conn:
                conn.execute("select 1")
        c = Collected(reader)
        assert c.names() == INSTRUMENTS
        assert c.units["db.client.connection.count"] == "{connection}"
        assert c.units["db.client.connection.pending_requests"] == "{request}"
        assert all(c.units[h] == "s" for h in HISTOGRAMS)
        assert c.value("db.client.connection.count", state="idle") == 2
        assert c.value("db.client.connection.count", state="used") == 0
        assert c.value("db.client.connection.idle.min") == 2
        assert c.value("db.client.connection.idle.max") == 3
        assert c.value("db.client.connection.max") == 3
        assert c.value("db.client.connection.pending_requests") == 0
        assert c.value("db.client.connection.timeouts") == 0

        core = pool.get_histograms()
        create = c.hist("db.client.connection.create_time")
        assert create.count == core["connect_time"].count == 2
        assert create.sum == pytest.approx(core["connect_time"].sum, rel=1e-6)
        # The core's buckets, as they are.
        assert list(create.explicit_bounds) == pytest.approx(list(core["connect_time"].bounds))
        cumulative = core["connect_time"].cumulative
        assert list(create.bucket_counts) == [
            b - a for a, b in zip((0, *cumulative), cumulative, strict=False)
        ]
        use = c.hist("db.client.connection.use_time")
        assert use.count == 10
        assert use.sum == pytest.approx(core["usage_time"].sum, abs=1e-9)
        # Every request obtained a connection: ten waits, none queued (0 s).
        wait = c.hist("db.client.connection.wait_time")
        assert wait.count == 10
        assert wait.sum == 0


def test_values_move_as_the_pool_is_used(dsn: str, reader: Any, provider: Any) -> None:
    with ConnectionPool(dsn, min_size=2, name="db", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        instrument(pool, provider)
        # Nothing observed yet, nothing reported.
        assert "db.client.connection.use_time" not in Collected(reader).names()

        held = [pool.getconn(), pool.getconn()]
        c = Collected(reader)
        assert c.value("db.client.connection.count", state="used") == 2
        assert c.value("db.client.connection.count", state="idle") == 0

        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.05)
        got = threading.Event()

        def borrower() -> None:
            with pool.connection(timeout=DEADLINE):
                got.set()

        t = threading.Thread(target=borrower)
        t.start()
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiting request")
        assert Collected(reader).value("db.client.connection.pending_requests") == 1
        time.sleep(0.1)
        pool.putconn(held.pop())
        assert got.wait(DEADLINE)
        t.join(DEADLINE)
        pool.putconn(held.pop())

        c = Collected(reader)
        assert c.value("db.client.connection.pending_requests") == 0
        assert c.value("db.client.connection.timeouts") == 1
        wait = c.hist("db.client.connection.wait_time")
        # Two immediate checkouts, a wait of >= 0.1 s and a timeout of 0.05 s.
        assert wait.count == 4
        assert wait.sum >= 0.15
        use = c.hist("db.client.connection.use_time")
        assert use.count == 3
        # Cumulative: a later collection adds only what happened since.
        with pool.connection():
            pass
        assert Collected(reader).hist("db.client.connection.use_time").count == 4


def test_pools_share_a_provider_under_their_names(dsn: str, reader: Any, provider: Any) -> None:
    a = ConnectionPool(dsn, min_size=1, name="a", open=True)
    b = ConnectionPool(dsn, min_size=2, name="b", open=True)
    try:
        a.wait(timeout=DEADLINE)
        b.wait(timeout=DEADLINE)
        instrument(a, provider)
        handle = instrument(b, provider, histograms=False)
        for pool in (a, b):
            with pool.connection():
                pass
        with pytest.raises(ValueError, match="already published"):
            instrument(ConnectionPool(dsn, name="a", open=False), provider)
        c = Collected(reader)
        assert c.value("db.client.connection.count", "a", "idle") == 1
        assert c.value("db.client.connection.count", "b", "idle") == 2
        assert c.names("a") >= HISTOGRAMS
        assert not HISTOGRAMS & c.names("b")
        assert handle.pool_name == "b"
        handle.stop()
        with a.connection():
            pass
        c = Collected(reader)
        assert c.value("db.client.connection.count", "a", "idle") == 1
        assert ("db.client.connection.count", "b", "idle") not in c.points
    finally:
        a.close()
        b.close()


def test_unbounded_null_pool_reports_no_max(dsn: str, reader: Any, provider: Any) -> None:
    with NullConnectionPool(dsn, name="db", open=True) as pool:
        instrument(pool, provider)
        with pool.connection() as conn:
            conn.execute("select 1")
        c = Collected(reader)
        assert ("db.client.connection.max", "db", None) not in c.points
        assert c.value("db.client.connection.idle.max") == 0
        assert c.hist("db.client.connection.create_time").count == 1
        assert c.hist("db.client.connection.use_time").count == 1


def test_refuses_what_is_not_a_pool(provider: Any) -> None:
    with pytest.raises(TypeError, match="ferropool pool"):
        instrument(object(), provider)  # type: ignore[arg-type]
