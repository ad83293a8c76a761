"""Version vectors, dotted contexts and the hybrid logical clock."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.clocks import HLC, ClockDriftError, Dot, DotContext, Timestamp, VersionVector

NODES = ["a", "b", "c"]


def wire_trip(data):
    """What a peer decodes: the wire form through real msgpack bytes."""
    return msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False)


vectors = st.dictionaries(st.sampled_from(NODES), st.integers(0, 5)).map(VersionVector)
dots = st.builds(Dot, st.sampled_from(NODES), st.integers(1, 8))


# -- version vectors ------------------------------------------------------------------------


def test_version_vector_basics() -> None:
    v = VersionVector()
    a = v.increment("a")
    assert v == VersionVector() and v["a"] == 0  # increment returns a new vector
    ab = a.increment("b").increment("b")
    assert ab.to_wire() == {"a": 1, "b": 2}
    assert a <= ab and a < ab and not ab < ab and ab.dominates(a) and not a.dominates(ab)
    c = VersionVector({"c": 1})
    assert a.concurrent(c) and c.concurrent(a) and not a.concurrent(ab)
    assert a.merge(c) == VersionVector({"a": 1, "c": 1})
    assert VersionVector({"a": 0}) == VersionVector()  # zero entries do not count


@settings(max_examples=100, deadline=None)
@given(vectors, vectors, vectors)
def test_version_vector_merge_is_least_upper_bound(x, y, z) -> None:
    m = x.merge(y)
    assert x <= m and y <= m
    assert m == y.merge(x) and x.merge(x) == x
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    # Least: any upper bound of both is above the merge.
    if x <= z and y <= z:
        assert m <= z
    # Exactly one of: equal, less, greater, concurrent.
    relations = [x == y, x < y, y < x, x.concurrent(y)]
    assert sum(relations) == 1
    assert (x <= y) == all(x[n] <= y[n] for n in NODES)


@settings(max_examples=50, deadline=None)
@given(vectors)
def test_version_vector_wire_round_trip(v) -> None:
    assert VersionVector.from_wire(wire_trip(v.to_wire())) == v


# -- dotted contexts ------------------------------------------------------------------------


def test_dot_context_compacts_out_of_order_dots() -> None:
    ctx = DotContext().add(Dot("a", 3)).add(Dot("a", 1))
    assert ctx.vv == VersionVector({"a": 1}) and ctx.cloud == {Dot("a", 3)}
    assert ctx.contains(Dot("a", 1)) and not ctx.contains(Dot("a", 2))
    assert ctx.next_dot("a") == Dot("a", 4)  # above the gap: a dot is never reused
    assert ctx.next_dot("b") == Dot("b", 1)
    ctx = ctx.add(Dot("a", 2))
    assert ctx.vv == VersionVector({"a": 3}) and ctx.cloud == frozenset()
    assert ctx.compact() == ctx


@settings(max_examples=100, deadline=None)
@given(st.lists(dots), st.lists(dots))
def test_dot_context_is_a_set_of_dots(xs, ys) -> None:
    x = DotContext()
    for d in xs:
        x = x.add(d)
    y = DotContext.of(ys)
    assert x == DotContext.of(reversed(xs))  # the same set, the same representation
    m = x.merge(y)
    assert m == y.merge(x)
    for node in NODES:
        for counter in range(1, 10):
            d = Dot(node, counter)
            assert x.contains(d) == (d in xs)
            assert m.contains(d) == (d in xs or d in ys)
    # The cloud never holds what the vector covers.
    assert all(d.counter > m.vv[d.node] for d in m.cloud)
    assert DotContext.from_wire(wire_trip(m.to_wire())) == m
    for node in NODES:
        assert not m.contains(m.next_dot(node))


# -- hybrid logical clock ---------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.integers(0, 1000),  # physical time passed in: jumps back and forth
        st.one_of(
            st.none(),
            st.builds(
                Timestamp, st.integers(0, 1000), st.integers(0, 5), st.sampled_from(["b", "c"])
            ),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_hlc_never_goes_backwards_and_passes_what_it_receives(steps) -> None:
    clock = HLC("a")
    last = clock.last
    for physical, remote in steps:
        ts = clock.now(physical) if remote is None else clock.update(remote, physical)
        assert ts > last
        assert ts.physical_ms >= physical  # never behind the physical time it was given
        if remote is not None:
            assert ts > remote
        last = ts
        assert clock.last == ts


def test_hlc_follows_physical_time_then_counts_when_it_stalls() -> None:
    clock = HLC("a")
    assert clock.now(100) == Timestamp(100, 0, "a")
    assert clock.now(100) == Timestamp(100, 1, "a")
    assert clock.now(50) == Timestamp(100, 2, "a")  # the Pi's clock jumped back
    assert clock.now(200) == Timestamp(200, 0, "a")
    assert clock.update(Timestamp(300, 4, "b"), 210) == Timestamp(300, 5, "a")
    assert clock.update(Timestamp(300, 9, "b"), 220) == Timestamp(300, 10, "a")
    assert clock.update(Timestamp(100, 0, "b"), 400) == Timestamp(400, 0, "a")
    restarted = HLC("a", last=clock.last)
    assert restarted.now(0) > clock.last


def test_hlc_timestamps_are_totally_ordered_across_nodes() -> None:
    a, b = HLC("a"), HLC("b")
    stamps = [a.now(10), b.now(10), a.now(10), b.update(a.last, 5), a.now(11), b.now(11)]
    assert len(set(stamps)) == len(stamps)
    assert Timestamp(10, 0, "a") < Timestamp(10, 0, "b") < Timestamp(10, 1, "a")
    for ts in stamps:
        assert Timestamp.from_wire(wire_trip(ts.to_wire())) == ts


def test_hlc_rejects_a_remote_too_far_ahead_and_keeps_its_state() -> None:
    clock = HLC("a", max_drift_ms=1000)
    clock.now(5000)
    before = clock.last
    with pytest.raises(ClockDriftError) as err:
        clock.update(Timestamp(6001, 0, "b"), 5000)
    assert err.value.remote == Timestamp(6001, 0, "b")
    assert clock.last == before
    assert clock.update(Timestamp(6000, 0, "b"), 5000) == Timestamp(6000, 1, "a")
    assert HLC("a").update(Timestamp(10**12, 0, "b"), 0).physical_ms == 10**12  # no limit
