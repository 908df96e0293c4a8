"""The private binding, ferropool._core, as the pool layer sees it: every
setting a required keyword, actions and outcomes as typed values. No
server: the payloads are plain objects standing in for connections."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ferropool import PoolTimeout, _core
from ferropool._core import Action, ActionKind, ConnectOutcome

SETTINGS: dict[str, Any] = {
    "name": "core-test",
    "min_size": 1,
    "max_size": 1,
    "max_waiting": 0,
    "max_lifetime": 3600.0,
    "max_idle": 600.0,
    "reconnect_timeout": 300.0,
    "null": False,
    "max_uses": 0,
    "max_connecting": 1,
    "lifo": False,
    "lifetime_jitter": 0.05,
    "liveness_bypass": None,
    "keepalive_interval": None,
    "leak_timeout": None,
}


class Conn:
    """Stands in for a connection: the core only keeps and hands it back."""


def core(**changes: Any) -> _core.Core:
    return _core.Core(**{**SETTINGS, **changes})


def next_action(c: _core.Core) -> Action:
    action = c.next_action(0.0)
    assert action is not None
    return action


@pytest.mark.parametrize("missing", sorted(SETTINGS))
def test_every_setting_is_a_required_keyword(missing: str) -> None:
    settings = {k: v for k, v in SETTINGS.items() if k != missing}
    with pytest.raises(TypeError, match=missing):
        _core.Core(**settings)


def test_open_and_was_opened_name_two_states() -> None:
    c = core()
    assert (c.is_open, c.was_opened) == (False, False)
    assert not hasattr(c, "closed") and not hasattr(c, "opened")
    c.open()
    assert (c.is_open, c.was_opened) == (True, True)
    c.close()
    assert (c.is_open, c.was_opened) == (False, True)
    assert c.max_connecting == 1


def test_actions_are_typed_values() -> None:
    c = core(leak_timeout=1e-6)
    c.open()
    create = next_action(c)
    assert create.kind == ActionKind.CREATE
    assert isinstance(create.ticket, _core.Ticket)
    assert (create.conn, create.reason, create.leak) == (None, None, None)
    conn = Conn()
    assert c.connected(create.ticket, conn, 0.01)
    assert c.checkout() is conn
    # The lease outlives leak_timeout: the sweep reports it.
    leak = c.next_action(5.0)
    while leak is not None and leak.kind != ActionKind.LEAK:
        leak = c.next_action(5.0)
    assert leak is not None and leak.leak is not None
    assert (leak.leak.key, leak.leak.first) == (id(conn), True)
    assert leak.leak.held > 0
    c.checkin(conn)
    c.drain()
    c.close()
    kinds = set()
    while (a := c.next_action(0.0)) is not None and a.kind != ActionKind.STOP:
        kinds.add(a.kind)
    assert a is not None and a.kind == ActionKind.STOP
    assert ActionKind.STOP in {ActionKind.STOP}, "hashable"
    assert repr(ActionKind.CLOSE) == "ActionKind.CLOSE"


def test_close_actions_carry_the_reason() -> None:
    c = core(max_size=2, max_lifetime=0.001)
    c.open()
    create = next_action(c)
    assert create.ticket is not None
    conn = Conn()
    assert c.connected(create.ticket, conn, 0.0)
    time.sleep(0.02)
    # Expired: retired at checkout, its close queued.
    assert c.checkout() is None
    actions = [next_action(c), next_action(c)]
    close = next(a for a in actions if a.kind == ActionKind.CLOSE)
    assert (close.conn, close.reason) == (conn, "expired")


def test_connect_failed_returns_an_outcome() -> None:
    c = core(reconnect_timeout=0.0)
    c.open()
    create = next_action(c)
    assert create.ticket is not None
    assert c.connect_failed(create.ticket, "refused") == ConnectOutcome.GAVE_UP
    c = core()
    c.open()
    create = next_action(c)
    assert create.ticket is not None
    assert c.connect_failed(create.ticket, "refused") == ConnectOutcome.RETRY
    assert c.last_connect_error == "refused"
    c.close()
    assert c.connect_failed(create.ticket, "refused") == ConnectOutcome.CLOSED


def test_restart_after_fork_is_refused_in_the_process_that_made_the_pool() -> None:
    c = core()
    with pytest.raises(RuntimeError, match="child process after fork"):
        c.restart_after_fork()


def test_restart_after_fork_starts_over_in_place_from_the_current_settings() -> None:
    """In a fork child, the same Core object starts over: empty, open, with
    the settings as last changed; the inherited connections are kept and
    their sockets returned; tickets and waits from before are refused
    without touching either pool."""
    import socket

    c = core(max_size=2, max_waiting=5)
    c.open()
    create = next_action(c)
    assert create.ticket is not None
    ours, server = socket.socketpair()
    inherited = Conn()
    assert c.connected(create.ticket, inherited, 0.0, ours.fileno())
    assert c.checkout() is inherited  # lent when the process forks
    c.resize(1, 3)
    c.max_lifetime = 42.0
    c.keepalive_interval = 7.0
    stale = c.wait_async(60.0, lambda: None)
    stale_ticket = next_action(c).ticket  # growth for the waiter
    assert isinstance(stale, _core.Waiting) and stale_ticket is not None

    def child() -> dict[str, Any]:
        sockets = c.restart_after_fork()
        with pytest.raises(RuntimeError):
            c.restart_after_fork()  # once per process
        stats = c.stats()
        refill = next_action(c)
        late = Conn()
        result = {
            "sockets": sockets,
            "settings": [c.min_size, c.max_size, c.max_waiting, c.max_lifetime],
            "keepalive": c.keepalive_interval,
            "open": c.is_open,
            "size": [stats["pool_size"], stats["connections_num"], stats["requests_waiting"]],
            "refill": refill.kind == ActionKind.CREATE,
            # Refused: the same slot id and word may exist in the new pool.
            "stale_connected": c.connected(stale_ticket, late, 0.0),
            "stale_failed": c.connect_failed(stale_ticket, "x") == ConnectOutcome.CLOSED,
            "stale_resolved": stale.resolved,
            "stale_cancel": stale.cancel(),
        }
        # The new pool serves new requests: one queues for its refill.
        result["new_wait"] = type(c.wait_async(60.0, lambda: None)).__name__
        # The connection lent before the fork is unknown to the new pool.
        with pytest.raises(ValueError):
            c.checkin(inherited)
        return result

    from tests.fixtures.safety import fork_and_run

    got = fork_and_run(child)
    assert got == {
        "sockets": [ours.fileno()],
        "settings": [1, 3, 5, 42.0],
        "keepalive": 7.0,
        "open": True,
        "size": [1, 0, 0],
        "refill": True,
        "stale_connected": False,
        "stale_failed": True,
        "stale_resolved": True,
        "stale_cancel": None,
        "new_wait": "Waiting",
    }
    # The parent's pool is untouched by the child's restart.
    assert c.size == 2 and c.checkin(inherited) is None
    stale.cancel()
    server.close()
    ours.close()


def test_a_wait_begun_before_fork_fails_in_the_child() -> None:
    c = core()
    c.open()
    create = next_action(c)
    assert create.ticket is not None
    held = Conn()
    assert c.connected(create.ticket, held, 0.0)
    assert c.checkout() is held
    waiting = c.wait_async(60.0, lambda: None)
    assert isinstance(waiting, _core.Waiting)

    def child() -> str:
        c.restart_after_fork()
        with pytest.raises(PoolTimeout, match="before fork"):
            waiting.finish()
        return "ok"

    from tests.fixtures.safety import fork_and_run

    assert fork_and_run(child) == "ok"
    waiting.cancel()
