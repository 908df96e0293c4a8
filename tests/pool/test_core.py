"""The private binding, ferropool._core, as the pool layer sees it: every
setting a required keyword, actions and outcomes as typed values. No
server: the payloads are plain objects standing in for connections."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ferropool import _core
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
