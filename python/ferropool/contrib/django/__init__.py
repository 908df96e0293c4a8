"""Django's PostgreSQL backend with ferropool as its connection pool.

Set ``"ENGINE": "ferropool.contrib.django"`` and keep Django's own pool
setting, ``OPTIONS["pool"]`` (True, or a dict of pool arguments): see
``base.DatabaseWrapper``.
"""
