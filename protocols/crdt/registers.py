"""Registers: last-writer-wins (ordered by HLC timestamps) and multi-value."""

from __future__ import annotations

from typing import Any

import msgpack

from protocols.clocks import DotContext, Timestamp, expect_list
from protocols.crdt._dots import DotStore


def _value_key(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


class LWWRegister:
    """One value and the HLC timestamp of its write; the higher timestamp wins. HLC
    timestamps carry the node id, so two writes never tie (should two equal timestamps
    still meet, the larger encoded value wins, to keep join commutative)."""

    __slots__ = ("ts", "val")

    def __init__(self, ts: Timestamp | None = None, value: Any = None) -> None:
        self.ts = ts
        self.val = value

    @classmethod
    def bottom(cls) -> LWWRegister:
        return cls()

    def copy(self) -> LWWRegister:
        return LWWRegister(self.ts, self.val)

    def value(self) -> Any:
        return self.val

    def _wins_over(self, other: LWWRegister) -> bool:
        if other.ts is None:
            return True
        if self.ts is None:
            return False
        if self.ts != other.ts:
            return self.ts > other.ts
        return _value_key(self.val) >= _value_key(other.val)

    def join(self, other: LWWRegister) -> LWWRegister:
        return self.copy() if self._wins_over(other) else other.copy()

    def write(self, value: Any, ts: Timestamp) -> LWWRegister:
        """Write ``value`` stamped ``ts`` (from ``HLC.now``). A write older than the current
        one loses at once, as it would at any replica."""
        delta = LWWRegister(ts, value)
        if delta._wins_over(self):
            self.ts, self.val = ts, value
        return delta

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWRegister):
            return NotImplemented
        return self.ts == other.ts and self.val == other.val

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_wire(self) -> list:
        return [self.ts.to_wire() if self.ts is not None else None, self.val]

    @classmethod
    def from_wire(cls, data: Any) -> LWWRegister:
        ts, value = expect_list(data, 2)
        return cls(Timestamp.from_wire(ts) if ts is not None else None, value)

    def __repr__(self) -> str:
        return f"LWWRegister({self.ts!r}, {self.val!r})"


class MVRegister(DotStore):
    """Multi-value register: each write gets a dot and replaces the dots it has seen;
    writes that did not see each other (concurrent) are all kept until a later write
    that saw them replaces them."""

    __slots__ = ()

    def value(self) -> list:
        """The concurrent values, in dot order (the same order at every replica)."""
        return [self.entries[d] for d in sorted(self.entries)]

    def write(self, node: str, value: Any) -> MVRegister:
        dot = self.ctx.next_dot(node)
        seen = set(self.entries)
        self.entries = {dot: value}
        self.ctx = self.ctx.add(dot)
        return MVRegister({dot: value}, DotContext.of(seen | {dot}))
