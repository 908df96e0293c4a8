"""Django's PostgreSQL backend, pooled by ferropool.

Django (>= 5.1) builds a psycopg_pool ``ConnectionPool`` when
``DATABASES[alias]["OPTIONS"]["pool"]`` is set. This backend is Django's
own PostgreSQL backend with one change: that pool is a
``ferropool.ConnectionPool``, built from the same setting the same way::

    DATABASES = {
        "default": {
            "ENGINE": "ferropool.contrib.django",
            "NAME": "app",
            "CONN_MAX_AGE": 0,            # pooling requires it, as in Django
            "CONN_HEALTH_CHECKS": True,   # a check at each checkout
            "OPTIONS": {"pool": {"min_size": 4, "max_size": 16, "timeout": 10}},
        }
    }

``OPTIONS["pool"]`` is ``True`` (ferropool's defaults) or a dict of
``ferropool.ConnectionPool`` arguments (psycopg_pool's, plus ferropool's
own such as ``max_uses`` or ``leak_timeout``). Without it the backend
behaves exactly like Django's: one connection per request (or per
CONN_MAX_AGE). Django returns the connection to the pool at the end of
each request; ``connection.pool`` is the ferropool pool, and
``connection.pool.get_stats()`` its figures.

Nothing else differs from ``django.db.backends.postgresql``: migrations,
introspection, ``dbshell`` and the test database set-up are Django's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.db.backends.base.base import NO_DB_ALIAS  # type: ignore[import-untyped]
from django.db.backends.postgresql.base import (  # type: ignore[import-untyped]
    DatabaseWrapper as PostgresDatabaseWrapper,
)

from ...pool import ConnectionPool

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(PostgresDatabaseWrapper):  # type: ignore[misc]
    """Django's PostgreSQL DatabaseWrapper whose pool is ferropool's."""

    # One pool per alias, shared by every thread's wrapper; separate from
    # Django's own dict, whose pools are psycopg_pool's.
    _connection_pools: ClassVar[dict[str, ConnectionPool[Any]]] = {}

    @property
    def pool(self) -> ConnectionPool[Any] | None:
        # Django's construction (django/db/backends/postgresql/base.py),
        # with ferropool's ConnectionPool in place of psycopg_pool's.
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None

        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            if pool_options is True:
                pool_options = {}
            if not isinstance(pool_options, dict):
                raise ImproperlyConfigured(
                    'OPTIONS["pool"] must be True or a dict of ferropool.ConnectionPool'
                    f" arguments, got {pool_options!r}"
                )
            options = dict(pool_options)
            options.setdefault("name", f"django-{self.alias}")
            connect_kwargs = self.get_connection_params()
            # Autocommit while the pool opens and configures connections;
            # Django sets the mode it wants when it takes one.
            connect_kwargs["autocommit"] = True
            enable_checks = self.settings_dict["CONN_HEALTH_CHECKS"]
            pool: ConnectionPool[Any] = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,  # opened by the first connection, as Django does
                configure=self._configure_connection,
                check=ConnectionPool.check_connection if enable_checks else None,
                **options,
            )
            # Threads racing here build a pool each; the first one wins and
            # the others were never opened.
            self._connection_pools.setdefault(self.alias, pool)

        return self._connection_pools[self.alias]
