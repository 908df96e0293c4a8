"""ferropool's core under other connection APIs than psycopg 3's.

- ``ferropool.adapters.psycopg2``: drop-ins for psycopg2's
  ``ThreadedConnectionPool`` and ``SimpleConnectionPool``.
- ``ferropool.adapters.dbapi``: ``Pool(connect=...)`` for any DB-API 2
  driver (psycopg2, pg8000, PyMySQL, sqlite3, ...).

Nothing is imported here, so that using one adapter never requires the
other's driver.
"""
