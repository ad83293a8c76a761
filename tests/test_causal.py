"""Causal delivery: without it, an operation-based set diverges; with it, it converges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.causal import CausalDelivery, Op


class OpORSet:
    """An operation-based observed-remove set: an add is tagged with its op's identity;
    a remove carries the tags its issuer had observed. Correct only under causal delivery."""

    def __init__(self) -> None:
        self.tags: set = set()  # (element, (origin, seq))

    def apply(self, op: Op) -> None:
        kind, element, tags = op.payload
        if kind == "add":
            self.tags.add((element, (op.origin, op.seq)))
        else:
            self.tags -= {(element, tuple(t)) for t in tags}

    def observed(self, element: str) -> list:
        return sorted(list(tag) for e, tag in self.tags if e == element)

    def value(self) -> set:
        return {e for e, _ in self.tags}


def test_a_remove_that_overtakes_its_add_diverges_without_causal_delivery():
    a, b = CausalDelivery("a"), CausalDelivery("b")
    set_a, set_b = OpORSet(), OpORSet()
    add = a.issue(("add", "x", []))
    set_a.apply(add)
    b.receive(add)
    set_b.apply(add)
    remove = b.issue(("remove", "x", set_b.observed("x")))
    set_b.apply(remove)
    set_a.apply(remove)

    naive = OpORSet()  # c, applying in arrival order: the remove first
    for op in (remove, add):
        naive.apply(op)
    assert naive.value() == {"x"} != set_b.value() == set()  # diverged for ever

    c, causal = CausalDelivery("c"), OpORSet()
    assert c.receive(remove) == []  # held back: its past is not here
    delivered = c.receive(add)
    assert delivered == [add, remove]
    for op in delivered:
        causal.apply(op)
    assert causal.value() == set_a.value() == set_b.value() == set()


def test_duplicates_are_delivered_once():
    a, c = CausalDelivery("a"), CausalDelivery("c")
    op = a.issue("p")
    assert c.receive(op) == [op]
    assert c.receive(op) == []
    assert c.receive(Op.from_wire(op.to_wire())) == []


def test_operations_of_one_origin_are_delivered_in_order():
    a, c = CausalDelivery("a"), CausalDelivery("c")
    ops = [a.issue(i) for i in range(4)]
    assert c.receive(ops[2]) == [] and c.receive(ops[1]) == []
    assert c.missing() == {"a": (1, 3)}
    assert c.receive(ops[0]) == ops[:3]
    assert c.receive(ops[3]) == [ops[3]]


def test_pending_is_bounded():
    a, c = CausalDelivery("a"), CausalDelivery("c", max_pending=2)
    ops = [a.issue(i) for i in range(5)]
    for op in ops[1:]:
        c.receive(op)
    assert len(c.pending) == 2 and c.dropped == 2


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**9), steps=st.integers(5, 40))
def test_replicas_converge_under_reorder_and_duplicates(seed, steps):
    rng = random.Random(seed)
    names = ["a", "b", "c"]
    layers = {n: CausalDelivery(n) for n in names}
    sets = {n: OpORSet() for n in names}
    inflight = {n: [] for n in names}  # ops on their way to n, in any order
    elements = ["x", "y"]
    for _ in range(steps):
        n = rng.choice(names)
        if rng.random() < 0.6:
            element = rng.choice(elements)
            if rng.random() < 0.6:
                payload = ("add", element, [])
            else:
                payload = ("remove", element, sets[n].observed(element))
            op = layers[n].issue(payload)
            sets[n].apply(op)
            for other in names:
                if other != n:
                    inflight[other].append(op)
                    if rng.random() < 0.3:
                        inflight[other].append(op)  # duplicated on the way
        elif inflight[n]:
            op = inflight[n].pop(rng.randrange(len(inflight[n])))  # any order
            for ready in layers[n].receive(op):
                sets[n].apply(ready)
    for n in names:  # everything still in flight arrives, in a random order
        rng.shuffle(inflight[n])
        for op in inflight[n]:
            for ready in layers[n].receive(op):
                sets[n].apply(ready)
        assert not layers[n].pending
    values = [sets[n].value() for n in names]
    assert values[0] == values[1] == values[2]
