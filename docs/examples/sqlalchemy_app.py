"""SQLAlchemy Core and ORM on a ferropool pool: ``poolclass=FerroPool``.

Run it:  FERROPOOL_DSN="dbname=app" python sqlalchemy_app.py

Docs: docs/guides/sqlalchemy.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, String, create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ferropool.contrib.sqlalchemy import FerroPool


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "sqlalchemy_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


def url_from_dsn(dsn: str) -> URL:
    """A SQLAlchemy URL (psycopg 3 driver) from a libpq connection string."""
    p = conninfo_to_dict(dsn)
    return URL.create(
        "postgresql+psycopg",
        username=p.get("user"),
        password=p.get("password"),
        host=p.get("host"),
        port=int(p["port"]) if p.get("port") else None,
        database=p.get("dbname"),
    )


def make_engine(dsn: str) -> Engine:
    return create_engine(
        url_from_dsn(dsn),
        poolclass=FerroPool,
        pool_size=2,  # ferropool's min_size
        max_overflow=6,  # max_size = pool_size + max_overflow = 8
        pool_timeout=10,
        pool_pre_ping=True,  # SQLAlchemy's ping at checkout, honoured
    )


def main(dsn: str | None = None) -> dict[str, Any]:
    engine = make_engine(dsn or os.environ["FERROPOOL_DSN"])
    try:
        Base.metadata.create_all(engine)
        # Core: a connection, a transaction committed by engine.begin().
        with engine.begin() as conn:
            answer = conn.execute(text("select 6 * 7")).scalar_one()
        # ORM: a session, committed by the with block's session.begin().
        with Session(engine) as session, session.begin():
            session.add_all([Note(body="first"), Note(body="second")])
        with Session(engine) as session:
            notes = session.scalar(select(func.count()).select_from(Note))
        # The ferropool under SQLAlchemy's pool, and its figures.
        stats = engine.pool.ferropool.get_stats()  # type: ignore[attr-defined]
        return {"answer": answer, "notes": notes, "stats": stats}
    finally:
        engine.dispose()


if __name__ == "__main__":
    print(main())
