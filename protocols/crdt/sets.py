"""Add-wins observed-remove set."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from protocols.clocks import Dot, DotContext
from protocols.crdt._dots import (
    entries_to_wire,
    hashable,
    horizon_context,
    join_entries,
    prune_context,
    state_from_wire,
)


class AWORSet:
    """Each add tags the element with a fresh dot (and retires the element's dots it
    saw); a remove retires the dots it observed. An add concurrent with a remove has a
    dot the remove never saw, so the element stays: add wins.

    Elements must be hashable and survive msgpack unchanged (str, int, bytes, ...)."""

    __slots__ = ("entries", "ctx")

    def __init__(self, entries: dict[Dot, Any] | None = None, ctx: DotContext | None = None):
        self.entries: dict[Dot, Any] = dict(entries or {})
        self.ctx = ctx if ctx is not None else DotContext.of(self.entries)

    @classmethod
    def bottom(cls) -> AWORSet:
        return cls()

    def copy(self) -> AWORSet:
        return AWORSet(self.entries, self.ctx)

    def value(self) -> frozenset:
        return frozenset(self.entries.values())

    def __contains__(self, element: object) -> bool:
        return element in self.entries.values()

    def _dots_of(self, element: Hashable) -> set[Dot]:
        return {d for d, e in self.entries.items() if e == element}

    def join(self, other: AWORSet) -> AWORSet:
        return AWORSet(
            join_entries(self.entries, self.ctx, other.entries, other.ctx),
            self.ctx.merge(other.ctx),
        )

    def add(self, node: str, element: Hashable) -> AWORSet:
        dot = self.ctx.next_dot(node)
        old = self._dots_of(element)
        for d in old:
            del self.entries[d]
        self.entries[dot] = element
        self.ctx = self.ctx.add(dot)
        return AWORSet({dot: element}, DotContext.of(old | {dot}))

    def remove(self, element: Hashable) -> AWORSet:
        old = self._dots_of(element)
        for d in old:
            del self.entries[d]
        return AWORSet({}, DotContext.of(old))

    def prune(self, node: str, upto: int | None = None) -> AWORSet:
        """Forget ``node``'s adds with counter <= ``upto`` (all if None). Their dots stay in
        the context, so an old delta cannot re-add them. Returns the delta to ship."""
        self.ctx, horizon = prune_context(self.ctx, node, upto)
        self.entries = {
            d: e for d, e in self.entries.items() if d.node != node or d.counter > horizon
        }
        return AWORSet({}, horizon_context(node, horizon))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AWORSet):
            return NotImplemented
        return self.entries == other.entries and self.ctx == other.ctx

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> list:
        return [entries_to_wire(self.entries), self.ctx.to_wire()]

    @classmethod
    def from_wire(cls, data: Any) -> AWORSet:
        return cls(*state_from_wire(data, hashable))

    def __repr__(self) -> str:
        return f"AWORSet({self.entries!r}, {self.ctx!r})"
