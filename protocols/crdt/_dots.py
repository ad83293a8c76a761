"""The dot-store machinery shared by the dot-based CRDTs: entries keyed by dot, plus the
causal context of every dot ever seen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.clocks import Dot, DotContext, VersionVector, expect_list


def join_entries[V](
    left: Mapping[Dot, V], left_ctx: DotContext, right: Mapping[Dot, V], right_ctx: DotContext
) -> dict[Dot, V]:
    """Causal join: a dot survives if both sides hold it, or if the side lacking it has
    never seen it (a side that saw it and lacks it has removed it)."""
    out = {d: v for d, v in left.items() if d in right or not right_ctx.contains(d)}
    for d, v in right.items():
        if d not in left and not left_ctx.contains(d):
            out[d] = v
    return out


def prune_context(ctx: DotContext, node: str, upto: int | None) -> tuple[DotContext, int]:
    """The context after forgetting ``node``'s dots up to ``upto`` (all seen if None), and
    the horizon used. Every dot of the node up to the horizon counts as seen from now on,
    so a late delta carrying one (seen here or not) can never re-add it."""
    horizon = ctx.max_counter(node) if upto is None else upto
    return ctx.merge(DotContext(VersionVector({node: horizon}))), horizon


def horizon_context(node: str, horizon: int) -> DotContext:
    return DotContext(VersionVector({node: horizon}))


def entries_to_wire(entries: Mapping[Dot, Any], encode: Any = None) -> list:
    # Sorted by dot: dots are unique and comparable, values may not be.
    return [
        [d.node, d.counter, encode(entries[d]) if encode else entries[d]] for d in sorted(entries)
    ]


def entries_from_wire(data: Any, decode: Any = None) -> dict[Dot, Any]:
    out: dict[Dot, Any] = {}
    for row in expect_list(data):
        node, counter, item = expect_list(row, 3)
        out[Dot.from_wire([node, counter])] = decode(item) if decode else item
    return out


def state_from_wire(data: Any, decode: Any = None) -> tuple[dict[Dot, Any], DotContext]:
    """Entries and context of a dot store; the context is widened to cover the entries,
    so a malformed message cannot break the invariant that entries are in the context."""
    entries, ctx = expect_list(data, 2)
    decoded = entries_from_wire(entries, decode)
    return decoded, DotContext.from_wire(ctx).merge(DotContext.of(decoded))


def hashable(x: Any) -> Any:
    hash(x)  # raises TypeError: set elements and map keys must be hashable
    return x


class DotStore:
    """Entries keyed by dot, plus the causal context of every dot ever seen: the state
    the dot-based CRDTs share. Subclasses add their mutators and ``value()``, and may
    set ``_encode``/``_decode`` for their entries' wire form."""

    __slots__ = ("entries", "ctx")
    _encode: Any = None
    _decode: Any = None

    def __init__(self, entries: dict[Dot, Any] | None = None, ctx: DotContext | None = None):
        self.entries: dict[Dot, Any] = dict(entries or {})
        self.ctx = ctx if ctx is not None else DotContext.of(self.entries)

    @classmethod
    def bottom(cls) -> Any:
        return cls()

    def copy(self) -> Any:
        return type(self)(self.entries, self.ctx)

    def join(self, other: Any) -> Any:
        return type(self)(
            join_entries(self.entries, self.ctx, other.entries, other.ctx),
            self.ctx.merge(other.ctx),
        )

    def prune(self, node: str, upto: int | None = None) -> Any:
        """Forget ``node``'s entries with counter <= ``upto`` (all if None); their dots
        stay in the context, so a late delta cannot bring them back. Returns the delta."""
        self.ctx, horizon = prune_context(self.ctx, node, upto)
        self.entries = {
            d: v for d, v in self.entries.items() if d.node != node or d.counter > horizon
        }
        return type(self)({}, horizon_context(node, horizon))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.entries == other.entries and self.ctx == other.ctx

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> list:
        return [entries_to_wire(self.entries, self._encode), self.ctx.to_wire()]

    @classmethod
    def from_wire(cls, data: Any) -> Any:
        return cls(*state_from_wire(data, cls._decode))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.entries!r}, {self.ctx!r})"
