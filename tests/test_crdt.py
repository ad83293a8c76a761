"""Delta-state CRDTs: lattice laws, the delta-mutator law, wire round trips, convergence
under a hostile network, pruning without resurrection, and concrete semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.clocks import HLC, Dot, DotContext, Timestamp
from protocols.crdt import AWORSet, GCounter, LWWRegister, MVRegister, ORMap, PNCounter


def wire_trip(crdt: Any) -> Any:
    """The state a peer decodes: to_wire, real msgpack bytes, from_wire."""
    raw = msgpack.packb(crdt.to_wire(), use_bin_type=True)
    return type(crdt).from_wire(msgpack.unpackb(raw, raw=False))


def packed(crdt: Any) -> bytes:
    return msgpack.packb(crdt.to_wire(), use_bin_type=True)


# -- one description per type: its operations and how to run them ---------------------------


@dataclass
class Kind:
    cls: type
    writes: st.SearchStrategy  # operations that add or set something
    others: tuple = ()  # removes and prunes

    @property
    def ops(self) -> st.SearchStrategy:
        # Writes weigh more, so that there is something to remove.
        return st.one_of(self.writes, self.writes, *self.others)


SMALL = st.integers(0, 4)
PRUNE = st.tuples(st.just("prune"), SMALL)
KINDS = {
    "gcounter": Kind(GCounter, st.tuples(st.just("inc"), st.integers(0, 3))),
    "pncounter": Kind(PNCounter, st.tuples(st.sampled_from(["inc", "dec"]), st.integers(-2, 3))),
    "lww": Kind(LWWRegister, st.tuples(st.just("write"), SMALL)),
    "mvreg": Kind(MVRegister, st.tuples(st.just("write"), SMALL), (PRUNE,)),
    "aworset": Kind(
        AWORSet,
        st.tuples(st.just("add"), st.sampled_from("xyzw")),
        (st.tuples(st.just("remove"), st.sampled_from("xyzw")), PRUNE),
    ),
    "ormap": Kind(
        ORMap,
        st.tuples(st.just("put"), st.tuples(st.sampled_from("kmnp"), SMALL)),
        (st.tuples(st.just("remove"), st.sampled_from("kmnp")), PRUNE),
    ),
}
NODES = ["a", "b", "c", "d", "e"]


def mutate(state: Any, node: str, op: tuple, clock: HLC, physical: int) -> Any:
    """Run one operation at ``node`` in place; return its delta."""
    name, arg = op
    if name == "inc":
        return state.increment(node, arg)
    if name == "dec":
        return state.decrement(node, arg)
    if name == "write" and isinstance(state, LWWRegister):
        return state.write(arg, clock.now(physical))
    if name == "write":
        return state.write(node, arg)
    if name == "add":
        return state.add(node, arg)
    if name == "remove":
        return state.remove(arg)
    if name == "put":
        key, value = arg
        return state.put(node, key, value, clock.now(physical))
    if name == "prune":
        # Forget some node's writes up to a small horizon (or all: arg 0 means None).
        return state.prune(NODES[arg % 3], arg or None)
    raise AssertionError(op)


def checked_mutate(state: Any, node: str, op: tuple, clock: HLC, physical: int) -> Any:
    before = state.copy()
    delta = mutate(state, node, op, clock, physical)
    # The delta-mutator law: joining the delta into the old state gives the new state.
    assert before.join(delta) == state, (op, before, delta, state)
    assert wire_trip(delta) == delta
    return delta


def replica_states(kind: Kind, script: list) -> list:
    """Three replicas running a script of local operations and pairwise syncs."""
    states = [kind.cls.bottom() for _ in range(3)]
    clocks = [HLC(n) for n in NODES[:3]]
    for physical, (i, step) in enumerate(script):
        if step[0] == "sync":
            states[i] = states[i].join(states[step[1]])
        else:
            checked_mutate(states[i], NODES[i], step, clocks[i], physical % 7)
    return states


def scripts(kind: Kind) -> st.SearchStrategy:
    step = st.one_of(kind.ops, st.tuples(st.just("sync"), st.integers(0, 2)))
    return st.lists(st.tuples(st.integers(0, 2), step), max_size=25)


# -- lattice laws, the delta law, wire round trips ------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_join_is_commutative_associative_idempotent(name: str) -> None:
    kind = KINDS[name]

    @settings(max_examples=60, deadline=None)
    @given(scripts(kind))
    def check(script: list) -> None:
        x, y, z = replica_states(kind, script)
        copies = [x.copy(), y.copy(), z.copy()]
        assert x.join(y) == y.join(x)
        # Equal states encode to equal bytes: anti-entropy compares hashes of to_wire().
        assert packed(x.join(y)) == packed(y.join(x))
        assert packed(x.join(y).join(z)) == packed(z.join(x).join(y))
        assert x.join(y).join(z) == x.join(y.join(z))
        assert x.join(x) == x
        assert x.join(kind.cls.bottom()) == x
        assert [x, y, z] == copies  # join returns a new state, inputs untouched
        xy = x.join(y)
        assert xy.join(x) == xy  # the join is an upper bound of both
        assert xy.join(y) == xy
        for s in (x, y, z, xy):
            assert wire_trip(s) == s
            assert wire_trip(s).value() == s.value()

    check()


# -- convergence under drop, duplicate, reorder and partition --------------------------------

network_steps = st.lists(
    st.one_of(
        st.tuples(st.just("op"), st.integers(0, 4), st.integers(0, 10**6)),
        st.tuples(st.just("deliver"), st.integers(0, 10**6), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 10**6), st.just(None)),
        st.tuples(st.just("full"), st.integers(0, 4), st.integers(0, 4)),
        st.tuples(st.just("partition"), st.booleans(), st.just(None)),
    ),
    max_size=60,
)


@pytest.mark.parametrize("name", list(KINDS))
def test_replicas_converge_under_a_hostile_network(name: str) -> None:
    kind = KINDS[name]

    @settings(max_examples=40, deadline=None)
    @given(st.integers(3, 5), network_steps, st.data())
    def check(n: int, steps: list, data: st.DataObject) -> None:
        states = [kind.cls.bottom() for _ in range(n)]
        clocks = [HLC(NODES[i]) for i in range(n)]
        in_flight: list = []  # (destination, wire form of a delta)
        every_delta = kind.cls.bottom()
        split = False
        group = [i < n // 2 + 1 for i in range(n)]  # two groups while partitioned

        def reachable(src: int, dst: int) -> bool:
            return not split or group[src] == group[dst]

        for physical, (action, p, q) in enumerate(steps):
            if action == "op":
                i = p % n
                op = data.draw(kind.ops)
                delta = checked_mutate(states[i], NODES[i], op, clocks[i], physical % 11)
                every_delta = every_delta.join(delta)
                for j in range(n):
                    if j != i:
                        in_flight.append((i, j, delta.to_wire()))
            elif action in ("deliver", "drop") and in_flight:
                k = p % len(in_flight)  # any message, not the oldest: reordering
                src, dst, wire = in_flight[k]
                if action == "drop" or not q:  # q: duplicate, leave a copy in flight
                    in_flight.pop(k)
                if action == "deliver" and reachable(src, dst):
                    states[dst] = states[dst].join(kind.cls.from_wire(wire))
            elif action == "full" and reachable(p % n, q % n):
                states[q % n] = states[q % n].join(wire_trip(states[p % n]))
            elif action == "partition":
                split = p

        # Heal, then a final full exchange (two all-pairs rounds reach everyone).
        for _ in range(2):
            for i in range(n):
                for j in range(n):
                    states[j] = states[j].join(states[i])
        assert all(s == states[0] for s in states)
        assert all(s.value() == states[0].value() for s in states)
        # Nothing was lost: the common state is the join of every delta ever made.
        assert states[0] == every_delta

    check()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["inc", "dec"]), st.integers(0, 3)),
        max_size=30,
    ),
    st.permutations(range(30)),
)
def test_counters_add_up_whatever_the_delivery_order(ops: list, order: list) -> None:
    states = [PNCounter() for _ in range(3)]
    deltas = []
    for i, name, k in ops:
        deltas.append(mutate(states[i], NODES[i], (name, k), HLC("z"), 0))
    expected = sum(k if name == "inc" else -k for _, name, k in ops)
    merged = PNCounter()
    for idx in order:
        if idx < len(deltas):
            merged = merged.join(deltas[idx]).join(deltas[idx])  # duplicated, too
    assert merged.value() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), SMALL, st.integers(0, 5)), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_lww_highest_timestamp_wins_in_any_arrival_order(writes: list, rnd) -> None:
    clocks = [HLC(n) for n in NODES[:3]]
    deltas = [LWWRegister().write(v, clocks[i].now(t)) for i, v, t in writes]
    rnd.shuffle(deltas)
    merged = LWWRegister()
    for d in deltas:
        merged = merged.join(d)
    winner = max(deltas, key=lambda d: d.ts)
    assert merged == winner and merged.value() == winner.value()


# -- sequential semantics against plain Python models ------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(KINDS["aworset"].writes, KINDS["aworset"].others[0]), max_size=30))
def test_aworset_alone_behaves_like_a_set(ops: list) -> None:
    s, model = AWORSet(), set()
    for name, e in ops:
        if name == "add":
            s.add("a", e)
            model.add(e)
        else:
            s.remove(e)
            model.discard(e)
        assert s.value() == model
    assert len(s.entries) == len(model)  # an add retires the element's older dots


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(KINDS["ormap"].writes, KINDS["ormap"].others[0]), max_size=30))
def test_ormap_alone_behaves_like_a_dict(ops: list) -> None:
    m, model, clock = ORMap(), {}, HLC("a")
    for t, (name, arg) in enumerate(ops):
        if name == "put":
            m.put("a", arg[0], arg[1], clock.now(t))
            model[arg[0]] = arg[1]
        else:
            m.remove(arg)
            model.pop(arg, None)
        assert m.value() == model
        assert all(m.get(k) == v for k, v in model.items())


# -- pruning never resurrects ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["mvreg", "aworset", "ormap"])
def test_pruned_writes_stay_gone_even_when_old_deltas_arrive_late(name: str) -> None:
    kind = KINDS[name]

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(kind.writes, min_size=2, max_size=10),
        st.lists(st.tuples(st.integers(0, 2), kind.ops), max_size=20),
        st.integers(0, 3),
        st.booleans(),
        st.randoms(use_true_random=False),
    )
    def check(x_ops: list, ops: list, cut: int, saw_x: bool, rnd) -> None:
        # Replica 2 is node "x", which departs; replica 0 prunes it.
        names = ["a", "b", "x"]
        states = [kind.cls.bottom() for _ in range(3)]
        clocks = [HLC(n) for n in names]
        deltas = []
        # x writes first (what it leaves behind), then everyone, x included.
        for t, (i, op) in enumerate([(2, op) for op in x_ops] + ops):
            if op[0] == "prune":
                op = ("prune", 1)  # prune "b" sometimes too, as another departure
            deltas.append(checked_mutate(states[i], names[i], op, clocks[i], t))
            if rnd.random() < 0.5:
                j = rnd.randrange(3)
                states[j] = states[j].join(deltas[-1])
        if saw_x:
            states[0] = states[0].join(states[2])
        pruner = states[0]
        # Prune all of x, or only up to a horizon ``cut`` dots below its latest.
        horizon = pruner.ctx.max_counter("x") - cut if cut else None
        if horizon is not None and horizon < 1:
            horizon = None
        limit = horizon or pruner.ctx.max_counter("x")
        kept = {d: v for d, v in pruner.entries.items() if d.node != "x" or d.counter > limit}
        prune_delta = pruner.prune("x", horizon)

        def gone(state: Any) -> bool:
            return not any(d.node == "x" and d.counter <= limit for d in state.entries)

        assert gone(pruner)
        assert pruner.entries == kept  # nothing else was dropped
        rnd.shuffle(deltas)
        for d in deltas:  # every old delta, late and in any order
            pruner = pruner.join(d)
        pruner = pruner.join(states[1]).join(states[2])  # and the others' full states
        assert gone(pruner)
        # The prune travels as a delta: a replica that never pruned forgets them too.
        other = states[1].join(states[2]).join(prune_delta)
        for d in deltas:
            other = other.join(d)
        assert gone(other)
        assert other == pruner

    check()


def test_aworset_prune_keeps_the_horizon_and_later_writes() -> None:
    x, a = AWORSet(), AWORSet()
    old = x.add("x", "lamp")
    a = a.join(old)
    a.prune("x")
    assert "lamp" not in a.value()
    a = a.join(old)
    assert a.value() == frozenset()  # the old delta came late: still gone
    fresh = x.add("x", "fan")  # dot 2 of x is above the horizon (1)
    a = a.join(fresh)
    assert a.value() == {"fan"}
    # A horizon given explicitly covers dots never seen here either.
    b = AWORSet()
    b.prune("x", 5)
    assert b.join(old).join(fresh).value() == frozenset()


def test_ormap_prune_by_age_keeps_newer_values() -> None:
    m, clock = ORMap(), HLC("x")
    m.put("x", "aa:01", "10.0.0.1", clock.now(100))
    m.put("x", "aa:02", "10.0.0.2", clock.now(900))
    snapshot = m.copy()
    delta = m.prune("x", before=Timestamp(500, 0, ""))
    assert m.value() == {"aa:02": "10.0.0.2"}
    assert m.join(snapshot).value() == {"aa:02": "10.0.0.2"}
    assert snapshot.join(delta).value() == {"aa:02": "10.0.0.2"}


# -- concrete examples --------------------------------------------------------------------------


def test_lww_higher_hlc_wins_regardless_of_arrival_order() -> None:
    a, b = HLC("a"), HLC("b")
    early = LWWRegister().write(21.0, a.now(1000))
    late = LWWRegister().write(23.5, b.now(900))  # b's wall clock is behind...
    later = LWWRegister().write(19.0, b.update(early.ts, 950))  # ...but it saw a's write
    assert late.ts < early.ts < later.ts
    for order in ([early, late, later], [later, late, early], [late, later, early]):
        r = LWWRegister()
        for d in order:
            r = r.join(d)
        assert r.value() == 19.0
    reg = LWWRegister()
    reg.write("on", Timestamp(5, 0, "a"))
    assert reg.write("off", Timestamp(4, 0, "b")) == LWWRegister(Timestamp(4, 0, "b"), "off")
    assert reg.value() == "on"  # a stale write loses locally too
    assert (
        LWWRegister(Timestamp(5, 0, "a"), 1).join(LWWRegister(Timestamp(5, 0, "b"), 0)).value() == 0
    )
    # Equal timestamps cannot come from HLCs, but if they meet, join still commutes.
    tie_a, tie_b = LWWRegister(Timestamp(7, 0, "a"), "x"), LWWRegister(Timestamp(7, 0, "a"), "y")
    assert tie_a.join(tie_b) == tie_b.join(tie_a)


def test_mvregister_keeps_concurrent_writes_until_one_sees_them() -> None:
    a, b = MVRegister(), MVRegister()
    da = a.write("a", "warm")
    db = b.write("b", "cool")
    a = a.join(db)
    b = b.join(da)
    assert a == b and a.value() == ["warm", "cool"]
    dc = a.write("a", "neutral")
    assert a.value() == ["neutral"]
    assert b.join(dc).value() == ["neutral"]
    assert dc.join(da).join(db).value() == ["neutral"]  # old writes cannot come back


def test_aworset_concurrent_add_and_remove_keeps_the_element() -> None:
    a, b = AWORSet(), AWORSet()
    b = b.join(a.add("a", "lamp"))
    removed = b.remove("lamp")  # b removes the add it saw...
    added = a.add("a", "lamp")  # ...while a adds it again, concurrently
    assert a.join(removed).value() == {"lamp"}
    assert b.join(added).value() == {"lamp"}
    later = a.join(removed).remove("lamp")  # a remove that saw every add wins
    assert b.join(added).join(later).value() == frozenset()


def test_ormap_remove_then_old_put_delta_stays_removed() -> None:
    clock = HLC("a")
    origin, replica = ORMap(), ORMap()
    put = origin.put("a", "aa:bb", "10.0.0.7", clock.now(1))
    replica = replica.join(put)
    replica.remove("aa:bb")
    assert replica.join(put).value() == {}  # the put arrives again, late: still removed
    # A put the remover never saw wins over the remove.
    concurrent = origin.put("a", "aa:bb", "10.0.0.8", clock.now(2))
    assert replica.join(concurrent).value() == {"aa:bb": "10.0.0.8"}


def test_ormap_concurrent_puts_resolve_by_timestamp_and_readd_starts_afresh() -> None:
    a, b = ORMap(), ORMap()
    a.put("a", "k", "from-a", Timestamp(10, 0, "a"))
    b.put("b", "k", "from-b", Timestamp(10, 0, "b"))
    merged = a.join(b)
    assert merged.value() == {"k": "from-b"} and len(merged.entries) == 2
    assert merged.register("k") == LWWRegister(Timestamp(10, 0, "b"), "from-b")
    merged.remove("k")
    assert "k" not in merged and merged.get("k", "none") == "none"
    merged.put("a", "k", "again", Timestamp(1, 0, "a"))  # an older clock, after a remove
    assert merged.value() == {"k": "again"}
    merged.put("a", "k", "stale", Timestamp(0, 0, "a"))  # a stale put re-asserts the key...
    assert merged.value() == {"k": "again"}  # ...but does not beat the newer value


def test_counters() -> None:
    g = GCounter()
    assert g.increment("a", 2) == GCounter({"a": 2})
    assert g.increment("a") == GCounter({"a": 3}) and g.value() == 3
    with pytest.raises(ValueError):
        g.increment("a", -1)
    p = PNCounter()
    p.increment("a", 5)
    p.decrement("b", 2)
    assert p.value() == 3
    assert PNCounter.from_wire([{"a": 5}, {"b": 2}]) == p
    with pytest.raises(TypeError):
        GCounter.from_wire([1, 2])


def test_dot_stores_take_their_context_from_the_entries_by_default() -> None:
    s = AWORSet({Dot("a", 2): "x"})
    assert s.ctx == DotContext.of([Dot("a", 2)])
    assert s.join(AWORSet({}, DotContext.of([Dot("a", 2)]))).value() == frozenset()


# -- malformed wire data ----------------------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.sampled_from(["a", "b", "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=12,
)


@pytest.mark.parametrize("name", list(KINDS))
def test_from_wire_rejects_junk_with_the_errors_replication_catches(name: str) -> None:
    cls = KINDS[name].cls

    @settings(max_examples=150, deadline=None)
    @given(junk)
    def check(data: Any) -> None:
        try:
            state = cls.from_wire(data)
        except (TypeError, ValueError, KeyError):
            return
        # Whatever is accepted is a usable state.
        state.value()
        assert wire_trip(state) == state
        assert state.join(state) == state

    check()


def test_from_wire_examples() -> None:
    with pytest.raises(ValueError):
        AWORSet.from_wire([[["a", 0, "e"]], [{}, []]])  # dot counters start at 1
    with pytest.raises(TypeError):
        AWORSet.from_wire([[["a", 1, ["unhashable"]]], [{}, []]])
    with pytest.raises(TypeError):
        LWWRegister.from_wire([["1", 0, "a"], "v"])
    # An entry missing from its context: the context is widened, not left inconsistent.
    s = AWORSet.from_wire([[["a", 2, "e"]], [{}, []]])
    assert s.ctx.contains(Dot("a", 2)) and s.value() == {"e"}
