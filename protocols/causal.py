"""Causal delivery for operation-based replication, sans-IO.

An operation-based CRDT ships operations, not states. Its operations only commute
when each is applied after everything its issuer had applied before issuing it (a
remove after the add it observed), and exactly once. Plumtree gives neither: a
broadcast can overtake an earlier one on another path, and anti-entropy repairs
arrive late and twice. This layer restores both: every operation carries its
origin, its sequence number at that origin and the vector of what the origin had
delivered; a replica delivers it once, and holds it back until its causal past is
delivered (Birman, Schiper, Stephenson, "Lightweight causal and atomic group
multicast", 1991, the vector-clock rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Op:
    origin: str
    seq: int  # 1, 2, ... per origin: (origin, seq) identifies the operation
    deps: tuple  # ((node, count), ...) the origin had delivered before issuing it
    payload: Any

    def to_wire(self) -> list:
        return [self.origin, self.seq, [list(d) for d in self.deps], self.payload]

    @classmethod
    def from_wire(cls, data: list) -> Op:
        origin, seq, deps, payload = data
        return cls(origin, int(seq), tuple((str(n), int(c)) for n, c in deps), payload)


@dataclass
class CausalDelivery:
    """One replica's delivery state. ``issue`` stamps a local operation; ``receive``
    returns the operations that became deliverable, in a causal order."""

    me: str
    max_pending: int = 10_000  # held-back operations; beyond it, the oldest are dropped
    delivered: dict = field(default_factory=dict)  # origin -> highest seq delivered
    pending: dict = field(default_factory=dict)  # (origin, seq) -> Op, waiting for its past
    dropped: int = 0  # held-back operations given up for lack of room

    def issue(self, payload: Any) -> Op:
        """A local operation: delivered here at once, then to be broadcast."""
        seq = self.delivered.get(self.me, 0) + 1
        deps = tuple(sorted((n, c) for n, c in self.delivered.items() if n != self.me))
        self.delivered[self.me] = seq
        return Op(self.me, seq, deps, payload)

    def seen(self, op: Op) -> bool:
        return op.seq <= self.delivered.get(op.origin, 0) or (op.origin, op.seq) in self.pending

    def ready(self, op: Op) -> bool:
        if op.seq != self.delivered.get(op.origin, 0) + 1:
            return False
        return all(self.delivered.get(node, 0) >= count for node, count in op.deps)

    def receive(self, op: Op) -> list[Op]:
        """Deliver ``op`` if its causal past is here, and whatever it unblocks; hold it
        back otherwise. Duplicates deliver nothing."""
        if self.seen(op):
            return []
        if not self.ready(op):
            if len(self.pending) >= self.max_pending:
                self.pending.pop(next(iter(self.pending)))
                self.dropped += 1
            self.pending[(op.origin, op.seq)] = op
            return []
        out = [op]
        self.delivered[op.origin] = op.seq
        # Each delivery may unblock others; repeat until nothing moves.
        progress = True
        while progress and self.pending:
            progress = False
            for key, held in list(self.pending.items()):
                if held.seq <= self.delivered.get(held.origin, 0):
                    del self.pending[key]  # delivered meanwhile through another copy
                elif self.ready(held):
                    del self.pending[key]
                    self.delivered[held.origin] = held.seq
                    out.append(held)
                    progress = True
        return out

    def missing(self) -> dict:
        """What we know exists but have not delivered: origin -> (first missing seq,
        highest seq we hold or heard of). Anti-entropy asks peers for these."""
        gaps: dict = {}
        for origin, seq in self.pending:
            low = self.delivered.get(origin, 0) + 1
            top = max(seq, gaps.get(origin, (low, 0))[1])
            gaps[origin] = (low, top)
        return gaps
