"""Grow-only and positive-negative counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.clocks import expect_int, expect_list, expect_str


class GCounter:
    """node -> how much that node has added; the value is the sum. Only the owner of an
    entry increments it, so join takes the maximum per node.

    No ``prune``: dropping a departed node's entry would change the sum everywhere."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: dict[str, int] = {
            str(n): int(c) for n, c in (counts or {}).items() if int(c) > 0
        }

    @classmethod
    def bottom(cls) -> GCounter:
        return cls()

    def copy(self) -> GCounter:
        return GCounter(self.counts)

    def value(self) -> int:
        return sum(self.counts.values())

    def join(self, other: GCounter) -> GCounter:
        out = dict(self.counts)
        for node, count in other.counts.items():
            if count > out.get(node, 0):
                out[node] = count
        return GCounter(out)

    def increment(self, node: str, by: int = 1) -> GCounter:
        if by < 0:
            raise ValueError("a GCounter only grows; use a PNCounter")
        if by == 0:
            return GCounter()
        self.counts[node] = self.counts.get(node, 0) + by
        return GCounter({node: self.counts[node]})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GCounter):
            return NotImplemented
        return self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> dict[str, int]:
        return {n: self.counts[n] for n in sorted(self.counts)}

    @classmethod
    def from_wire(cls, data: Any) -> GCounter:
        if not isinstance(data, Mapping):
            raise TypeError("a GCounter is a map of node -> count")
        return cls({expect_str(n): expect_int(c) for n, c in data.items()})

    def __repr__(self) -> str:
        return f"GCounter({self.to_wire()!r})"


class PNCounter:
    """Two grow-only counters: increments and decrements; the value is their difference."""

    __slots__ = ("p", "n")

    def __init__(self, p: GCounter | None = None, n: GCounter | None = None) -> None:
        self.p = p if p is not None else GCounter()
        self.n = n if n is not None else GCounter()

    @classmethod
    def bottom(cls) -> PNCounter:
        return cls()

    def copy(self) -> PNCounter:
        return PNCounter(self.p.copy(), self.n.copy())

    def value(self) -> int:
        return self.p.value() - self.n.value()

    def join(self, other: PNCounter) -> PNCounter:
        return PNCounter(self.p.join(other.p), self.n.join(other.n))

    def increment(self, node: str, by: int = 1) -> PNCounter:
        if by < 0:
            return self.decrement(node, -by)
        return PNCounter(self.p.increment(node, by), GCounter())

    def decrement(self, node: str, by: int = 1) -> PNCounter:
        if by < 0:
            return self.increment(node, -by)
        return PNCounter(GCounter(), self.n.increment(node, by))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self.p == other.p and self.n == other.n

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> list:
        return [self.p.to_wire(), self.n.to_wire()]

    @classmethod
    def from_wire(cls, data: Any) -> PNCounter:
        p, n = expect_list(data, 2)
        return cls(GCounter.from_wire(p), GCounter.from_wire(n))

    def __repr__(self) -> str:
        return f"PNCounter({self.p.to_wire()!r}, {self.n.to_wire()!r})"
