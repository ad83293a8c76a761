"""State-based replication: deltas in any order, anti-entropy repairs what was lost."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.replication import Replica, ReplicationError


@dataclass(frozen=True)
class MaxSet:
    """A small state-based CRDT for the tests: a grow-only set (join = union)."""

    items: frozenset = frozenset()

    def join(self, other: MaxSet) -> MaxSet:
        return MaxSet(self.items | other.items)

    def to_wire(self) -> list:
        return sorted(self.items)

    @classmethod
    def from_wire(cls, data: list) -> MaxSet:
        if not isinstance(data, list):
            raise TypeError("a list")
        return cls(frozenset(data))

    @classmethod
    def bottom(cls) -> MaxSet:
        return cls()


SPACES = {"targets": MaxSet, "readings": MaxSet}


def anti_entropy(a: Replica, b: Replica) -> int:
    """One exchange as the State actors run it: digest, then the differing entries both
    ways. Returns how many entries travelled."""
    to_a = b.differing(a.digest())
    to_b = a.differing(b.digest())
    a.receive(to_a)
    b.receive(to_b)
    return len(to_a) + len(to_b)


def test_join_reports_change_only_when_the_state_changes():
    r = Replica(SPACES)
    assert r.join("targets", "lights", MaxSet(frozenset({1})))
    assert not r.join("targets", "lights", MaxSet(frozenset({1})))
    assert r.get("targets", "lights").items == {1}
    assert r.get("targets", "missing") == MaxSet()


def test_bad_entries_are_refused_with_a_typed_error():
    r = Replica(SPACES)
    for bad in (["nope", "k", []], ["targets", "k", "not a list"], ["targets"], 7):
        with pytest.raises(ReplicationError):
            r.receive([bad])


def test_anti_entropy_sends_only_what_differs():
    a, b = Replica(SPACES), Replica(SPACES)
    for key in ("x", "y", "z"):
        a.join("targets", key, MaxSet(frozenset({key})))
        b.join("targets", key, MaxSet(frozenset({key})))
    assert anti_entropy(a, b) == 0
    a.join("targets", "x", MaxSet(frozenset({"more"})))
    b.join("readings", "n1", MaxSet(frozenset({20})))
    assert b.wanted(a.digest()) == 1
    assert anti_entropy(a, b) == 3  # x both ways (each may hold what the other lacks), n1 once
    assert a.state == b.state


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**9))
def test_lossy_reordered_deltas_then_one_anti_entropy_round_converge(seed):
    rng = random.Random(seed)
    replicas = [Replica(SPACES) for _ in range(4)]
    for step in range(60):
        origin = rng.randrange(4)
        space, key = rng.choice(list(SPACES)), rng.choice("abc")
        delta = MaxSet(frozenset({step}))
        replicas[origin].join(space, key, delta)
        for other in range(4):
            if other != origin and rng.random() > 0.4:  # 40% of deltas lost
                msg = [Replica.entry(space, key, delta)]
                replicas[other].receive(msg * rng.randint(1, 2))  # and some duplicated
    # anti-entropy along a ring, twice round: everyone hears from everyone
    for _ in range(2):
        for i in range(4):
            anti_entropy(replicas[i], replicas[(i + 1) % 4])
    assert all(r.state == replicas[0].state for r in replicas)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9))
def test_targets_written_on_both_sides_of_a_split_lose_no_acknowledged_write(seed):
    """Issue 4's split: two halves keep writing targets, then heal. Every replica ends
    equal, and every acknowledged write is either there or superseded by a later write
    (in HLC order) to the same key."""
    from protocols.clocks import HLC
    from protocols.crdt import ORMap

    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    replicas = {n: Replica({"targets": ORMap}) for n in names}
    clocks = {n: HLC(n) for n in names}
    halves = [{"a", "b"}, {"c", "d"}]
    acked = []  # (key, ts, value)
    physical = 1_000
    for step in range(40):
        physical += rng.randint(0, 3)  # clocks that tie and crawl
        n = rng.choice(names)
        key, value = rng.choice(["lights", "temperature"]), step
        current = replicas[n].get("targets", "all").copy()
        ts = clocks[n].now(physical)
        delta = current.put(n, key, value, ts)
        replicas[n].join("targets", "all", delta)
        acked.append((key, ts, value))
        for other in next(h for h in halves if n in h) - {n}:  # deltas stay in the half
            if rng.random() > 0.3:
                replicas[other].receive([Replica.entry("targets", "all", delta)])
    for _ in range(2):  # healed: anti-entropy round the ring
        for i, n in enumerate(names):
            anti_entropy(replicas[n], replicas[names[(i + 1) % 4]])
    final = [replicas[n].get("targets", "all").value() for n in names]
    assert all(v == final[0] for v in final)
    for key, ts, value in acked:
        latest = max(t for k, t, _ in acked if k == key)
        assert ts < latest or final[0][key] == value
