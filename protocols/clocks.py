"""Logical clocks, sans-IO: version vectors, dotted contexts and a hybrid logical clock.

* ``VersionVector`` and ``DotContext`` are values: every operation returns a new object
  and never changes its inputs, so a CRDT can share them between states safely.
* ``HLC`` is the one stateful object here (a clock has to remember what it has issued);
  the physical time comes in as an argument, never from the machine.

Wire forms are plain dicts and lists, in a canonical (sorted) order so that equal values
encode to equal bytes (anti-entropy compares hashes of the wire form).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

__all__ = [
    "expect_int",
    "expect_list",
    "expect_str",
    "HLC",
    "ClockDriftError",
    "Dot",
    "DotContext",
    "Timestamp",
    "VersionVector",
]


# -- checks for data decoded from the wire (a peer may be buggy or hostile) ----------------


def expect_str(x: Any) -> str:
    if not isinstance(x, str):
        raise TypeError(f"expected a string, got {type(x).__name__}")
    return x


def expect_int(x: Any, minimum: int = 0) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"expected an integer, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"expected an integer >= {minimum}, got {x}")
    return x


def expect_list(x: Any, length: int | None = None) -> list | tuple:
    if not isinstance(x, list | tuple):
        raise TypeError(f"expected a list, got {type(x).__name__}")
    if length is not None and len(x) != length:
        raise ValueError(f"expected {length} items, got {len(x)}")
    return x


# -- version vectors ----------------------------------------------------------------------


class VersionVector:
    """node id -> counter; a missing node counts as 0. Immutable: ``increment`` and
    ``merge`` return new vectors."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        # Zero entries are dropped so that equal vectors have equal internal dicts.
        self._counts: dict[str, int] = {
            str(n): int(c) for n, c in (counts or {}).items() if int(c) > 0
        }

    def get(self, node: str) -> int:
        return self._counts.get(node, 0)

    def __getitem__(self, node: str) -> int:
        return self._counts.get(node, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def items(self) -> Iterable[tuple[str, int]]:
        return self._counts.items()

    def increment(self, node: str, by: int = 1) -> VersionVector:
        counts = dict(self._counts)
        counts[node] = counts.get(node, 0) + by
        return VersionVector(counts)

    def merge(self, other: VersionVector) -> VersionVector:
        counts = dict(self._counts)
        for node, count in other._counts.items():
            if count > counts.get(node, 0):
                counts[node] = count
        return VersionVector(counts)

    # Partial order: a <= b when every entry of a is at most b's.
    def __le__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return all(c <= other.get(n) for n, c in self._counts.items())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self <= other and self._counts != other._counts

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return other <= self

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return other < self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._counts == other._counts

    def __hash__(self) -> int:
        return hash(frozenset(self._counts.items()))

    def dominates(self, other: VersionVector) -> bool:
        """True when self has seen everything ``other`` has (self >= other)."""
        return other <= self

    def concurrent(self, other: VersionVector) -> bool:
        """Neither has seen all of the other: the two histories diverged."""
        return not self <= other and not other <= self

    def to_wire(self) -> dict[str, int]:
        return {n: self._counts[n] for n in sorted(self._counts)}

    @classmethod
    def from_wire(cls, data: Mapping[str, int]) -> VersionVector:
        if not isinstance(data, Mapping):
            raise TypeError("a version vector is a map of node -> counter")
        return cls({expect_str(n): expect_int(c) for n, c in data.items()})

    def __repr__(self) -> str:
        return f"VersionVector({self.to_wire()!r})"


# -- dots and dotted contexts ---------------------------------------------------------------


class Dot(NamedTuple):
    """One event: the ``counter``-th event issued by ``node``. Dots are never reused."""

    node: str
    counter: int

    def to_wire(self) -> list:
        return [self.node, self.counter]

    @classmethod
    def from_wire(cls, data: Iterable) -> Dot:
        node, counter = expect_list(data, 2)
        return cls(expect_str(node), expect_int(counter, 1))


class DotContext:
    """The set of dots a replica has seen: a version vector for the contiguous prefix of
    each node's dots plus a "cloud" of dots that arrived out of order (a delta can carry
    dot 7 of a node before 5 and 6 arrive). Immutable; always kept compact (no cloud dot
    is covered by the vector), so equal sets of dots have equal representations."""

    __slots__ = ("vv", "cloud")

    def __init__(self, vv: VersionVector | None = None, cloud: Iterable[Dot] = ()) -> None:
        self.vv, self.cloud = self._compacted(vv or VersionVector(), frozenset(cloud))

    @staticmethod
    def _compacted(vv: VersionVector, cloud: frozenset) -> tuple[VersionVector, frozenset]:
        if not cloud:
            return vv, cloud
        counts = dict(vv.items())
        pending = set(cloud)
        # Fold cloud dots that extend a node's contiguous prefix into the vector.
        for node in sorted({d.node for d in pending}):
            top = counts.get(node, 0)
            while Dot(node, top + 1) in pending:
                top += 1
            if top:
                counts[node] = top
        rest = frozenset(d for d in pending if d.counter > counts.get(d.node, 0))
        return VersionVector(counts), rest

    @classmethod
    def of(cls, dots: Iterable[Dot]) -> DotContext:
        """A context holding exactly ``dots`` (what a delta carries)."""
        return cls(VersionVector(), dots)

    def contains(self, dot: Dot) -> bool:
        return dot.counter <= self.vv.get(dot.node) or dot in self.cloud

    def __contains__(self, dot: object) -> bool:
        return isinstance(dot, tuple) and self.contains(Dot(*dot))

    def add(self, dot: Dot) -> DotContext:
        if self.contains(dot):
            return self
        return DotContext(self.vv, self.cloud | {dot})

    def max_counter(self, node: str) -> int:
        top = self.vv.get(node)
        for dot in self.cloud:
            if dot.node == node and dot.counter > top:
                top = dot.counter
        return top

    def next_dot(self, node: str) -> Dot:
        """A fresh dot for ``node``: above every dot of it seen so far, so that it is never
        reused even when gaps exist. The caller adds it (``add``) when it uses it."""
        return Dot(node, self.max_counter(node) + 1)

    def merge(self, other: DotContext) -> DotContext:
        return DotContext(self.vv.merge(other.vv), self.cloud | other.cloud)

    def compact(self) -> DotContext:
        # Construction already compacts; kept for callers that want to say so.
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DotContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    def __hash__(self) -> int:
        return hash((self.vv, self.cloud))

    def __le__(self, other: DotContext) -> bool:
        return self.vv <= other.vv and all(other.contains(d) for d in self.cloud)

    def to_wire(self) -> list:
        return [self.vv.to_wire(), [d.to_wire() for d in sorted(self.cloud)]]

    @classmethod
    def from_wire(cls, data: Any) -> DotContext:
        vv, cloud = expect_list(data, 2)
        return cls(VersionVector.from_wire(vv), [Dot.from_wire(d) for d in expect_list(cloud)])

    def __repr__(self) -> str:
        return f"DotContext({self.vv.to_wire()!r}, {sorted(self.cloud)!r})"


# -- hybrid logical clock -------------------------------------------------------------------


class Timestamp(NamedTuple):
    """An HLC timestamp. Tuple order is the total order: physical part, then logical
    counter, then node id, so two nodes can never issue equal timestamps."""

    physical_ms: int
    logical: int
    node: str

    def to_wire(self) -> list:
        return [self.physical_ms, self.logical, self.node]

    @classmethod
    def from_wire(cls, data: Iterable) -> Timestamp:
        physical_ms, logical, node = expect_list(data, 3)
        return cls(expect_int(physical_ms), expect_int(logical), expect_str(node))


class ClockDriftError(ValueError):
    """A remote timestamp is further ahead of our physical clock than ``max_drift_ms``:
    accepting it would drag our clock (and every later write) into the future."""

    def __init__(self, remote: Timestamp, physical_ms: int, max_drift_ms: int) -> None:
        super().__init__(
            f"remote timestamp {tuple(remote)} is {remote.physical_ms - physical_ms} ms "
            f"ahead of local time {physical_ms} (limit {max_drift_ms} ms)"
        )
        self.remote = remote
        self.physical_ms = physical_ms
        self.max_drift_ms = max_drift_ms


class HLC:
    """Hybrid logical clock (Kulkarni, Demirbas et al., "Logical physical clocks", 2014).

    ``now`` stamps a local event or a send, ``update`` a receive. Timestamps never go
    backwards, even when the physical time passed in does (a Pi without an RTC that
    resynchronises), and stay close to physical time when it is sane. ``last`` can be
    persisted and passed back in after a restart.
    """

    def __init__(
        self,
        node_id: str,
        *,
        max_drift_ms: int | None = None,
        last: Timestamp | None = None,
    ) -> None:
        self.node_id = node_id
        self.max_drift_ms = max_drift_ms
        self._l = last.physical_ms if last else 0
        self._c = last.logical if last else 0

    @property
    def last(self) -> Timestamp:
        return Timestamp(self._l, self._c, self.node_id)

    def now(self, physical_ms: int) -> Timestamp:
        if physical_ms > self._l:
            self._l, self._c = physical_ms, 0
        else:
            # Physical time stood still or went back: advance the logical part instead.
            self._c += 1
        return self.last

    def update(self, remote: Timestamp, physical_ms: int) -> Timestamp:
        """Account for a received timestamp; the result is above both it and ours."""
        if self.max_drift_ms is not None and remote.physical_ms - physical_ms > self.max_drift_ms:
            # Checked before any state changes, so a rejected message leaves no trace.
            raise ClockDriftError(remote, physical_ms, self.max_drift_ms)
        old = self._l
        top = max(old, remote.physical_ms, physical_ms)
        if top == old == remote.physical_ms:
            self._c = max(self._c, remote.logical) + 1
        elif top == old:
            self._c += 1
        elif top == remote.physical_ms:
            self._c = remote.logical + 1
        else:
            self._c = 0
        self._l = top
        return self.last

    def __repr__(self) -> str:
        return f"HLC({self.node_id!r}, last={tuple(self.last)!r})"
