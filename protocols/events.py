"""The vocabulary shared by every sans-IO protocol: what comes in, what goes out.

A protocol object is driven by ``handle(now, event) -> list[effect]``. The host
(an actor on a Pi, or the simulator) turns effects into I/O and feeds the
results back as events. Peers are any hashable identity: the node uses
strings, the simulator uses ints.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

Peer = Hashable


# --- events: what the host tells a protocol -------------------------------------------


@dataclass(frozen=True, slots=True)
class Receive:
    """A message arrived from ``peer``."""

    peer: Peer
    message: Any


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """The transport could not reach ``peer``, or its link broke (TCP reset, keepalive).

    ``incarnation``, when known, is the peer's incarnation on the link that broke: a
    failure of the link to an earlier incarnation says nothing about the current one."""

    peer: Peer
    incarnation: int | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer requested earlier with ``SetTimer`` is due."""

    timer: Any


@dataclass(frozen=True, slots=True)
class JoinVia:
    """Command: join the overlay through ``contact``."""

    contact: Peer


@dataclass(frozen=True, slots=True)
class KnownPeers:
    """Command: the office's other members as its replicated state lists them (each node
    writes its own peer address there): where to look when the seeds are gone."""

    peers: tuple


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Command: broadcast ``payload`` under the unique ``id`` chosen by the caller."""

    id: bytes
    payload: bytes


# --- effects: what a protocol asks the host to do ---------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to ``peer``; if it cannot be delivered, report ``PeerFailed``."""

    peer: Peer
    message: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Feed ``TimerFired(timer)`` back after ``delay`` seconds. Timers are never cancelled:
    the protocol checks on firing whether the timer still matters, which keeps hosts simple."""

    delay: float
    timer: Any


@dataclass(frozen=True, slots=True)
class CloseLink:
    """The protocol is done with ``peer``: the host may close its connection."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class NeighborUp:
    """HyParView added ``peer`` to its active view (a link Plumtree may use)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class NeighborDown:
    """HyParView removed ``peer`` from its active view."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Deliver:
    """Plumtree delivers a broadcast to the application, ``round`` hops from its origin."""

    id: bytes
    payload: bytes
    round: int
