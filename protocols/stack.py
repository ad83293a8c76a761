"""HyParView and Plumtree wired together, as one node runs them.

HyParView's ``NeighborUp``/``NeighborDown`` become Plumtree's peer set changes;
messages and timers go to whichever protocol owns their type. The simulator
runs exactly this; the node's actors split the two across processes and do
the same routing.
"""

from __future__ import annotations

import random

from protocols import hyparview, plumtree
from protocols.events import (
    Broadcast,
    JoinVia,
    KnownPeers,
    NeighborDown,
    NeighborUp,
    Peer,
    PeerFailed,
    Receive,
    TimerFired,
)

PLUMTREE_TYPES = frozenset(plumtree.MESSAGES) | frozenset(plumtree.TIMERS)


class Stack:
    """A node's overlay: membership plus broadcast, one ``handle`` for both."""

    __slots__ = ("me", "hyparview", "plumtree")

    def __init__(
        self,
        me: Peer,
        rng: random.Random,
        incarnation: int = 0,
        hyparview_config: hyparview.Config | None = None,
        plumtree_config: plumtree.Config | None = None,
        broadcast_layer: object | None = None,
    ) -> None:
        self.me = me
        self.hyparview = hyparview.HyParView(
            me, rng, incarnation, hyparview_config or hyparview.Config()
        )
        # ``broadcast_layer`` lets a benchmark put a baseline (plain flooding) in
        # Plumtree's place; it must speak Plumtree's messages and events.
        self.plumtree = broadcast_layer or plumtree.Plumtree(
            me, rng, plumtree_config or plumtree.Config()
        )

    def handle(self, now: float, event: object) -> list:
        """Route ``event`` to its protocol; membership changes reach Plumtree at once."""
        kind = type(event)
        if kind is Receive:
            to_plumtree = type(event.message) in PLUMTREE_TYPES
        elif kind is TimerFired:
            to_plumtree = type(event.timer) in PLUMTREE_TYPES
        else:
            to_plumtree = kind is Broadcast
            if not to_plumtree and kind not in (PeerFailed, JoinVia, KnownPeers):
                raise TypeError(f"not an overlay event: {event!r}")
        if to_plumtree:
            return self.plumtree.handle(now, event)
        out = self.hyparview.handle(now, event)
        extra = []
        for effect in out:
            if type(effect) in (NeighborUp, NeighborDown):
                extra.extend(self.plumtree.handle(now, effect))
        out.extend(extra)
        return out
