"""SQLAlchemy 2 Core and ORM on ferropool: ``poolclass=FerroPool``.

Against the real server: transactions through engines and sessions,
SQLAlchemy's pre-ping, reset-on-return and invalidation semantics, and
ferropool's figures moving with the traffic. Also on pg8000 and on
MariaDB (PyMySQL): the pool class works for any DB-API dialect.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, String, create_engine, event, exc, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

from ferropool.contrib.sqlalchemy import FerroPool
from tests.fixtures.helpers import DEADLINE, Threads, count_backends, terminate_backend, wait_until
from tests.fixtures.mariadb import MariaDB


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "sqlalchemy_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


def pg_url(dsn: str, driver: str = "psycopg") -> URL:
    params = conninfo_to_dict(dsn)
    return URL.create(
        f"postgresql+{driver}",
        username=str(params.get("user", "postgres")),
        password=params.get("password"),  # type: ignore[arg-type]
        host=str(params.get("host", "127.0.0.1")),
        port=int(params.get("port", 5432)),
        database=str(params.get("dbname", "postgres")),
    )


@pytest.fixture
def engine_factory(dsn: str, app_name: str) -> Iterator[Any]:
    """Engines on FerroPool tagged with the test's application_name; all
    disposed at the end."""
    engines: list[Engine] = []

    def make(driver: str = "psycopg", **kwargs: Any) -> Engine:
        kwargs.setdefault("pool_size", 2)
        kwargs.setdefault("max_overflow", 2)
        kwargs.setdefault("pool_timeout", DEADLINE)
        engine = create_engine(
            pg_url(dsn, driver),
            poolclass=FerroPool,
            connect_args={"application_name": app_name},
            **kwargs,
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def notes(dsn: str) -> Iterator[None]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {Note.__tablename__}")
        conn.execute(f"create table {Note.__tablename__} (id serial primary key, text text)")
    yield
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {Note.__tablename__}")


def stored(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f"select text from {Note.__tablename__} order by id")]


def pid(conn: Any) -> int:
    return int(conn.execute(text("select pg_backend_pid()")).scalar_one())


def test_core_transactions(dsn: str, notes: None, engine_factory: Any) -> None:
    engine = engine_factory()
    assert isinstance(engine.pool, FerroPool)
    insert = text(f"insert into {Note.__tablename__} (text) values (:t)")
    with engine.begin() as conn:
        conn.execute(insert, {"t": "committed"})
    with engine.connect() as conn:
        conn.execute(insert, {"t": "rolled back"})
        conn.rollback()
        conn.execute(insert, {"t": "committed too"})
        conn.commit()
    with engine.connect() as conn:
        # Never committed: SQLAlchemy's reset on return rolls it back.
        conn.execute(insert, {"t": "reset on return"})
    assert stored(dsn) == ["committed", "committed too"]
    stats = engine.pool.get_stats()
    assert stats["requests_num"] == 3
    assert stats["returns_bad"] == 0
    assert 1 <= stats["connections_num"] <= 4
    # ferropool got every connection back idle: nothing in a transaction
    # (once the pool, opened by the first checkout, has finished filling).
    wait_until(
        lambda: engine.pool.get_stats()["pool_available"] == engine.pool.get_stats()["pool_size"],
        what="every connection idle",
    )


def test_orm_sessions(dsn: str, notes: None, engine_factory: Any) -> None:
    engine = engine_factory()
    with Session(engine) as session:
        session.add(Note(text="one"))
        session.commit()
        session.add(Note(text="never"))
        session.rollback()
        session.add(Note(text="two"))
        session.commit()
        assert session.scalars(select(Note.text).order_by(Note.id)).all() == ["one", "two"]
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(Note(text="aborted"))
        raise RuntimeError("abort")
    assert stored(dsn) == ["one", "two"]
    assert engine.pool.get_stats()["requests_num"] >= 3


def test_connect_events_run_once_per_connection(engine_factory: Any) -> None:
    engine = engine_factory(pool_size=1, max_overflow=0)
    connects: list[Any] = []
    event.listen(engine, "connect", lambda dbapi_conn, record: connects.append(dbapi_conn))
    pids = set()
    for _ in range(10):
        with engine.connect() as conn:
            pids.add(pid(conn))
            info = conn.connection.info
            info["uses"] = info.get("uses", 0) + 1
    assert len(pids) == 1
    assert len(connects) == 1  # the dialect's set-up ran once, not per checkout
    with engine.connect() as conn:
        assert conn.connection.info["uses"] == 10  # record.info lives with the connection
    assert engine.pool.get_stats()["connections_num"] == 1


def test_do_connect_listener_writes_the_connections_info(engine_factory: Any) -> None:
    """SQLAlchemy hands do_connect a connection record; what the listener
    puts in its info is on that connection's info (the engine connection's,
    the pool events' record's), per connection, and again after a reconnect."""
    engine = engine_factory(pool_size=2, max_overflow=0)
    records: list[Any] = []

    @event.listens_for(engine, "do_connect")
    def do_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        records.append(conn_rec)
        conn_rec.info["x"] = "set in do_connect"
        conn_rec.info["attempt"] = len(records)
        conn_rec.record_info["listener"] = "do_connect"

    checkouts: list[dict[str, Any]] = []
    event.listen(
        engine, "checkout", lambda dbapi_conn, rec, proxy: checkouts.append(dict(rec.info))
    )
    with engine.connect() as one, engine.connect() as two:
        assert one.info["x"] == two.info["x"] == "set in do_connect"
        assert one.connection.info is one.info
        assert {one.info["attempt"], two.info["attempt"]} == {1, 2}
        assert one.connection.record_info["listener"] == "do_connect"
        attempt_of = {pid(one): one.info["attempt"], pid(two): two.info["attempt"]}
    assert all(isinstance(r, ConnectionPoolEntry) for r in records)
    assert [c["x"] for c in checkouts] == ["set in do_connect"] * 2
    with engine.connect() as conn:
        # Kept across checkouts, as the connection is.
        invalidated = pid(conn)
        assert conn.info["attempt"] == attempt_of[invalidated]
        # Invalidated: the engine connection gets another one from the
        # pool (the other idle one, or a new one: attempt 3), and its info.
        conn.invalidate()
        conn.rollback()  # of the transaction pid() began
        assert pid(conn) != invalidated
        assert conn.info["x"] == "set in do_connect"
        assert conn.info["attempt"] == attempt_of.get(pid(conn), 3)
    assert engine.pool.get_stats()["connections_errors"] == 0


def test_do_connect_info_follows_a_record_reconnecting(dsn: str, engine_factory: Any) -> None:
    """A failed pre-ping reconnects the same record to a new connection:
    SQLAlchemy clears its info, and the new connection's do_connect info
    takes its place."""
    engine = engine_factory(pool_size=1, max_overflow=0, pool_pre_ping=True, liveness_bypass=None)
    attempts: list[int] = []

    @event.listens_for(engine, "do_connect")
    def do_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        attempts.append(len(attempts) + 1)
        conn_rec.info["attempt"] = attempts[-1]

    with engine.connect() as conn:
        old = pid(conn)
        assert conn.info["attempt"] == 1
        conn.info["stale"] = True
    terminate_backend(dsn, old)
    with engine.connect() as conn:
        assert pid(conn) != old
        assert conn.info == {"attempt": 2}


def test_do_connect_listener_changes_connect_parameters(app_name: str, engine_factory: Any) -> None:
    engine = engine_factory(pool_size=1, max_overflow=0)

    @event.listens_for(engine, "do_connect")
    def do_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        cparams["application_name"] = f"{app_name}-do-connect"
        conn_rec.info["application_name"] = cparams["application_name"]

    with engine.connect() as conn:
        name = conn.execute(text("select current_setting('application_name')")).scalar_one()
        assert name == conn.info["application_name"] == f"{app_name}-do-connect"
    assert engine.pool.get_stats()["connections_errors"] == 0


def test_pre_ping_replaces_a_terminated_backend(dsn: str, engine_factory: Any) -> None:
    # ferropool's own liveness checks off: only SQLAlchemy's pre-ping can
    # notice the dead connection.
    engine = engine_factory(pool_size=1, max_overflow=0, pool_pre_ping=True, liveness_bypass=None)
    with engine.connect() as conn:
        old = pid(conn)
    terminate_backend(dsn, old)
    with engine.connect() as conn:
        new = pid(conn)
    assert new != old
    stats = engine.pool.get_stats()
    assert stats["returns_bad"] == 1  # the dead one was discarded, not reused
    assert stats["requests_errors"] == 0


def test_without_pre_ping_a_disconnect_invalidates(dsn: str, engine_factory: Any) -> None:
    engine = engine_factory(pool_size=1, max_overflow=0, liveness_bypass=None)
    with engine.connect() as conn:
        old = pid(conn)
    terminate_backend(dsn, old)
    with pytest.raises(exc.OperationalError) as info, engine.connect() as conn:
        conn.execute(text("select 1"))
    assert info.value.connection_invalidated
    with engine.connect() as conn:
        assert pid(conn) != old
    assert engine.pool.get_stats()["returns_bad"] == 1


def test_invalidate_discards_the_connection(dsn: str, app_name: str, engine_factory: Any) -> None:
    engine = engine_factory(pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        old = pid(conn)
        conn.invalidate()
    # Closed, not returned to ferropool: the server session is gone.
    with psycopg.connect(dsn, autocommit=True) as admin:

        def gone() -> bool:
            sql = "select count(*) from pg_stat_activity where pid = %s"
            return admin.execute(sql, (old,)).fetchone() == (0,)

        wait_until(gone, what="the invalidated backend closed")
    with engine.connect() as conn:
        assert pid(conn) != old
    stats = engine.pool.get_stats()
    assert stats["returns_bad"] == 1
    assert count_backends(dsn, app_name) == 1


def test_pool_timeout_is_sqlalchemys_error(engine_factory: Any) -> None:
    engine = engine_factory(pool_size=1, max_overflow=0, pool_timeout=0.2)
    with engine.connect(), pytest.raises(exc.TimeoutError, match=r"no connection within 0\.2"):
        engine.connect()
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1


def test_threads_share_a_small_pool(
    dsn: str, app_name: str, notes: None, engine_factory: Any
) -> None:
    engine = engine_factory(pool_size=2, max_overflow=1)
    held: set[int] = set()
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(15):
            with Session(engine) as session, session.begin():
                raw = session.connection().connection.dbapi_connection
                with lock:
                    assert id(raw) not in held, "a connection lent twice"
                    held.add(id(raw))
                try:
                    session.add(Note(text=f"{n}-{i}"))
                finally:
                    with lock:
                        held.discard(id(raw))

    threads = Threads()
    for n in range(10):
        threads.start(work, n)
    threads.join()
    assert sorted(stored(dsn)) == sorted(f"{n}-{i}" for n in range(10) for i in range(15))
    stats = engine.pool.get_stats()
    assert stats["requests_num"] == 150
    assert stats["pool_size"] <= 3
    assert stats["returns_bad"] == 0
    assert count_backends(dsn, app_name) <= 3


def test_dispose_closes_and_starts_a_new_pool(dsn: str, app_name: str, engine_factory: Any) -> None:
    engine = engine_factory(pool_size=2, max_overflow=0)
    with engine.connect() as conn:
        old = pid(conn)
    wait_until(lambda: count_backends(dsn, app_name) == 2, what="pool_size opened")
    first = engine.pool
    engine.dispose()
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="disposed")
    assert engine.pool is not first
    with engine.connect() as conn:
        assert pid(conn) != old
    assert "FerroPool" in engine.pool.status()


def test_pg8000_dialect(dsn: str, notes: None, engine_factory: Any) -> None:
    engine = engine_factory("pg8000", pool_pre_ping=True)
    with Session(engine) as session:
        session.add(Note(text="via pg8000"))
        session.commit()
    with engine.connect() as conn:
        conn.execute(text(f"insert into {Note.__tablename__} (text) values ('no')"))
    assert stored(dsn) == ["via pg8000"]
    assert engine.pool.ferropool.driver is not None
    assert engine.pool.ferropool.driver.name == "pg8000"


def test_mariadb_through_pymysql(mariadb: MariaDB) -> None:
    url = URL.create(
        "mysql+pymysql",
        username=mariadb.user,
        password=mariadb.password,
        host=mariadb.host,
        port=mariadb.port,
        database=mariadb.database,
    )
    engine = create_engine(url, poolclass=FerroPool, pool_size=2, pool_pre_ping=True)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(text="in MariaDB"))
            session.commit()
            session.add(Note(text="rolled back"))
            session.rollback()
        with engine.connect() as conn:
            old = conn.execute(text("select connection_id()")).scalar_one()
            conn.invalidate()
        with engine.connect() as conn:
            assert conn.execute(text("select connection_id()")).scalar_one() != old
            assert conn.execute(select(Note.text)).scalars().all() == ["in MariaDB"]
        stats = engine.pool.get_stats()
        assert stats["returns_bad"] == 1
        assert stats["pool_max"] == 12
    finally:
        with contextlib.suppress(Exception):
            Base.metadata.drop_all(engine)
        engine.dispose()
