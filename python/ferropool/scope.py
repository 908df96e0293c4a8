# Generated from scope_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""``with pool:``: open the pool for a block, close it at the end.

Every pool class that opens and closes (the routing pool, the DB-API pool,
ConnectionPool and its variants) gets its context-manager methods from
`OpenClose` (the sync pools from its generated twin), so the block's
meaning is written once: enter opens (waiting for nothing else), exit
closes with the default timeout, whatever the block raised.
"""

from __future__ import annotations

from types import TracebackType

from typing_extensions import Self


class OpenClose:
    """`open()` on entering an ``with`` block, `close()` on leaving it."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()
