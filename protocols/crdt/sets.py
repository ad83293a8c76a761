"""Add-wins observed-remove set."""

from __future__ import annotations

from collections.abc import Hashable

from protocols.clocks import Dot, DotContext
from protocols.crdt._dots import (
    DotStore,
    hashable,
)


class AWORSet(DotStore):
    """Each add tags the element with a fresh dot (and retires the element's dots it
    saw); a remove retires the dots it observed. An add concurrent with a remove has a
    dot the remove never saw, so the element stays: add wins.

    Elements must be hashable and survive msgpack unchanged (str, int, bytes, ...)."""

    __slots__ = ()
    _decode = staticmethod(hashable)

    def value(self) -> frozenset:
        return frozenset(self.entries.values())

    def __contains__(self, element: object) -> bool:
        return element in self.entries.values()

    def _dots_of(self, element: Hashable) -> set[Dot]:
        return {d for d, e in self.entries.items() if e == element}

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
