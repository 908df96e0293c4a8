"""``async with pool:``: open the pool for a block, close it at the end.

Every pool class that opens and closes (the routing pool, the DB-API pool,
ConnectionPool and its variants) gets its context-manager methods from
`AsyncOpenClose` (the sync pools from its generated twin), so the block's
meaning is written once: enter opens (waiting for nothing else), exit
closes with the default timeout, whatever the block raised.
"""

from __future__ import annotations

from types import TracebackType

from typing_extensions import Self


class AsyncOpenClose:
    """`open()` on entering an ``async with`` block, `close()` on leaving it."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()
