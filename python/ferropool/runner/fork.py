"""Fork safety: a child process must never touch its parent's connections.

After fork() the child holds copies of the parent's sockets. Using one
would interleave two processes on one PostgreSQL session, and merely
closing one sends a Terminate message that ends the parent's session. So in
the child each runner restarts its core in place (``Core.restart_after_fork``
keeps the inherited connection objects alive forever, nothing ever sent on
them, and starts over from the current settings), points every inherited
socket it returns at /dev/null (the parent's socket is untouched: only the
child's descriptor changes), and starts new workers (threads do not
survive fork()).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable
from typing import Protocol


class Forkable(Protocol):
    def after_fork_in_child(self, devnull: int) -> None: ...


_runners: weakref.WeakSet[Forkable] = weakref.WeakSet()
# Inherited objects (leases, /dev/null's descriptor): never freed in the child.
_inherited: list[object] = []
_registered = False


def register(runner: Forkable) -> None:
    """Make *runner* start over in child processes."""
    global _registered
    _runners.add(runner)
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _registered = True


def keep_forever(obj: object) -> None:
    """Never free *obj* in this (child) process."""
    _inherited.append(obj)


def neutralise(sockets: Iterable[int], devnull: int) -> None:
    """Point the child's copies of the parent's sockets at /dev/null."""
    for fd in sockets:
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)


def _after_fork_in_child() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    keep_forever(devnull)
    for runner in list(_runners):
        runner.after_fork_in_child(devnull)
