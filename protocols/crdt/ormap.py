"""Observed-remove map of keys to last-writer-wins values."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from protocols.clocks import Dot, DotContext, Timestamp, expect_list
from protocols.crdt._dots import (
    DotStore,
    hashable,
)
from protocols.crdt.registers import LWWRegister


def _decode_entry(row: Any) -> tuple[Any, LWWRegister]:
    key, ts, value = expect_list(row, 3)
    if ts is None:
        raise ValueError("a map entry needs a timestamp")
    return hashable(key), LWWRegister.from_wire([ts, value])


class ORMap(DotStore):
    """key -> LWW value, with add-wins keys (the network map: MAC -> IP).

    Every ``put`` tags the key with a fresh dot carrying the key's LWW register, and
    retires the key's dots it saw. ``remove`` retires the dots it observed, so a put
    concurrent with a remove survives it (add wins), while an old put delivered after the
    remove stays removed. The key's value is the join of the registers on its live dots:
    concurrent puts resolve by HLC timestamp. Since a removal drops the registers, a key
    re-added later starts afresh, whatever the timestamps of its past values.

    Keys must be hashable and survive msgpack unchanged (str, int, bytes)."""

    __slots__ = ()
    # Registers are never mutated once stored, so copies may share them.
    _encode = staticmethod(lambda e: [e[0], *e[1].to_wire()])
    _decode = staticmethod(_decode_entry)

    def _dots_of(self, key: Hashable) -> set[Dot]:
        return {d for d, (k, _) in self.entries.items() if k == key}

    def register(self, key: Hashable) -> LWWRegister:
        """The key's register: the join of those on its live dots (bottom if absent)."""
        out = LWWRegister()
        for k, reg in self.entries.values():
            if k == key:
                out = out.join(reg)
        return out

    def value(self) -> dict:
        out: dict[Any, LWWRegister] = {}
        for k, reg in self.entries.values():
            out[k] = out[k].join(reg) if k in out else reg
        return {k: reg.value() for k, reg in out.items()}

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self.register(key).value() if key in self else default

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.entries.values())

    def keys(self) -> set:
        return {k for k, _ in self.entries.values()}

    def put(self, node: str, key: Hashable, value: Any, ts: Timestamp) -> ORMap:
        """Set ``key`` to ``value`` stamped ``ts`` (from ``HLC.now``). A stale timestamp
        still re-asserts the key's presence, but the newer value it saw is kept."""
        old = self._dots_of(key)
        reg = self.register(key).join(LWWRegister(ts, value))
        dot = self.ctx.next_dot(node)
        for d in old:
            del self.entries[d]
        self.entries[dot] = (key, reg)
        self.ctx = self.ctx.add(dot)
        return ORMap({dot: (key, reg)}, DotContext.of(old | {dot}))

    def remove(self, key: Hashable) -> ORMap:
        old = self._dots_of(key)
        for d in old:
            del self.entries[d]
        return ORMap({}, DotContext.of(old))

    def prune(self, node: str, upto: int | None = None, before: Timestamp | None = None) -> ORMap:
        """Forget what ``node`` wrote: its puts with counter <= ``upto`` (all if None); with
        ``before``, only those whose value is also older than that timestamp. Pruned dots
        stay in the context, so a late delta cannot resurrect them. Returns the delta."""
        if before is None:
            return super().prune(node, upto)
        # By age: retire exactly the matching dots (newer ones of the node stay valid).
        doomed = {
            d
            for d, (_, reg) in self.entries.items()
            if d.node == node
            and (upto is None or d.counter <= upto)
            and reg.ts is not None
            and reg.ts < before
        }
        for d in doomed:
            del self.entries[d]
        return ORMap({}, DotContext.of(doomed))
