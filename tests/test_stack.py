"""Tests for protocols.stack: HyParView and Plumtree routed together.

A tiny network of Stack nodes is driven by a deterministic event queue written
here (a heap of (time, seq, node, event), fixed per-pair latencies, so every link
is FIFO). Periodic timers are set far apart so that the network goes quiet
between phases and the state can be checked at rest.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter

import pytest

from protocols import hyparview, plumtree
from protocols.events import (
    Broadcast,
    Deliver,
    JoinVia,
    NeighborDown,
    NeighborUp,
    PeerFailed,
    Receive,
    Send,
    SetTimer,
    TimerFired,
)
from protocols.stack import Stack

# Period of the shuffle, promote, reconnect and anti-entropy timers: never within a test, so
# the overlay is exactly what the joins made and a quiet network stays quiet.
QUIET = 1e6


class Net:
    def __init__(self, n: int, seed: int = 1) -> None:
        self.n = n
        self.now = 0.0
        self.seq = 0
        self.queue: list = []
        self.stacks = {
            i: Stack(
                i,
                random.Random(seed * 1000 + i),
                hyparview_config=hyparview.Config(
                    active_size=3,
                    active_min=2,
                    passive_size=8,
                    shuffle_interval=QUIET,
                    promote_interval=QUIET,
                    reconnect_interval=QUIET,
                ),
                plumtree_config=plumtree.Config(anti_entropy_interval=QUIET),
            )
            for i in range(n)
        }
        self.delivered: Counter = Counter()  # (node, id) -> deliveries
        self.sent: list = []  # (src, dst, message), every Send carried out
        self.membership: list = []  # (node, NeighborUp | NeighborDown), in order

    @staticmethod
    def latency(a: int, b: int) -> float:
        return 0.001 * (1 + (a + b) % 4)

    def push(self, at: float, node: int, event: object) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, node, event))

    def inject(self, node: int, event: object) -> None:
        self.apply(node, self.stacks[node].handle(self.now, event))

    def apply(self, node: int, effects: list) -> None:
        for effect in effects:
            if type(effect) is Send:
                self.sent.append((node, effect.peer, effect.message))
                at = self.now + self.latency(node, effect.peer)
                self.push(at, effect.peer, Receive(node, effect.message))
            elif type(effect) is SetTimer:
                self.push(self.now + effect.delay, node, TimerFired(effect.timer))
            elif type(effect) is Deliver:
                self.delivered[node, effect.id] += 1
            elif type(effect) in (NeighborUp, NeighborDown):
                self.membership.append((node, effect))

    def step(self) -> None:
        at, _, node, event = heapq.heappop(self.queue)
        self.now = at
        self.apply(node, self.stacks[node].handle(at, event))

    def settle(self, horizon: float = 2.0) -> None:
        """Run every timer due within ``horizon``, then until no message is in flight."""
        until = self.now + horizon
        while self.queue and self.queue[0][0] <= until:
            self.step()
        self.now = until
        while any(type(e[3]) is Receive for e in self.queue):
            self.step()

    def active(self, i: int) -> set:
        return set(self.stacks[i].hyparview.active_view)

    def broadcast(self, node: int, mid: bytes) -> list:
        """Broadcast from ``node``, let it finish; the GOSSIP messages it took."""
        start = len(self.sent)
        self.inject(node, Broadcast(mid, b"payload " + mid))
        self.settle()
        return [m for _, _, m in self.sent[start:] if type(m) is plumtree.Gossip and m.id == mid]


def joined(n: int = 7, seed: int = 1) -> Net:
    """Nodes join one by one, each through a node that joined before it."""
    net = Net(n, seed)
    pick = random.Random(seed)
    for i in range(1, n):
        net.inject(i, JoinVia(pick.randrange(i)))
        net.settle()
    return net


def connected(net: Net) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for peer in net.active(todo.pop()):
            if peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return len(seen) == net.n


@pytest.mark.parametrize("n,seed", [(5, 1), (7, 2), (8, 3)])
def test_active_views_are_symmetric_and_mirrored_in_plumtree(n, seed):
    net = joined(n, seed)
    assert connected(net)
    for i, stack in net.stacks.items():
        assert net.active(i), f"node {i} has no active peer"
        for peer in net.active(i):
            assert i in net.active(peer), f"{i} -> {peer} is one-sided"
        pt = stack.plumtree
        assert not set(pt.eager_peers) & set(pt.lazy_peers)
        assert set(pt.eager_peers) | set(pt.lazy_peers) == net.active(i)


@pytest.mark.parametrize("n,seed", [(5, 1), (7, 2), (8, 3)])
def test_broadcast_is_delivered_exactly_once_everywhere(n, seed):
    net = joined(n, seed)
    net.broadcast(0, b"m1")
    assert {i: net.delivered[i, b"m1"] for i in range(n)} == dict.fromkeys(range(n), 1)
    net.broadcast(n - 1, b"m2")
    assert {i: net.delivered[i, b"m2"] for i in range(n)} == dict.fromkeys(range(n), 1)


@pytest.mark.parametrize("n,seed", [(5, 1), (7, 2), (8, 3)])
def test_tree_forms_and_later_broadcast_has_rmr_zero(n, seed):
    net = joined(n, seed)
    changes = len(net.membership)
    edges = sum(len(net.active(i)) for i in range(n)) // 2
    first = net.broadcast(0, b"w1")
    if edges > n - 1:
        assert len(first) > n - 1  # the first broadcast floods every link: redundancy
    net.broadcast(n // 2, b"w2")
    gossip = net.broadcast(n - 1, b"measured")
    assert len(gossip) == n - 1  # RMR = m / (n - 1) - 1 = 0
    assert all(net.delivered[i, b"measured"] == 1 for i in range(n))
    assert net.membership[changes:] == []  # the overlay did not change under the tree
    eager_links = sum(len(net.stacks[i].plumtree.eager_peers) for i in range(n))
    assert eager_links == 2 * (n - 1)  # a symmetric spanning tree


@pytest.mark.parametrize("n,seed", [(5, 1), (7, 2), (8, 3), (10, 4)])
def test_a_sender_keeps_its_tree_while_others_broadcast(n, seed):
    # Every office node is a sender. Once a sender's tree has formed, the other senders'
    # PRUNEs do not cut it: its next broadcast again crosses n - 1 links, and nobody
    # has to GRAFT it.
    net = joined(n, seed)
    net.broadcast(0, b"w1")
    net.broadcast(0, b"w2")
    for k in range(3):  # all at once, as the nodes' readings at start-up
        for sender in range(1, n):
            net.inject(sender, Broadcast(b"other%d-%d" % (k, sender), b"reading"))
        net.settle()
    start = len(net.sent)
    gossip = net.broadcast(0, b"measured")
    assert len(gossip) == n - 1
    assert all(net.delivered[i, b"measured"] == 1 for i in range(n))
    grafts = [m for _, _, m in net.sent[start:] if type(m) is plumtree.Graft]
    assert grafts == []
    # Its tree is a spanning tree, and every message of it names it.
    eager_links = sum(len(net.stacks[i].plumtree.eager_for(0)) for i in range(n))
    assert eager_links == 2 * (n - 1)
    assert {m.root for m in gossip} == {0}


def test_peer_failed_goes_to_hyparview_and_its_neighbor_down_to_plumtree():
    net = joined(6, 1)
    net.broadcast(0, b"m")
    a = 0
    b = next(iter(net.stacks[a].hyparview.active_view))
    pt = net.stacks[a].plumtree
    assert b in pt.eager_peers or b in pt.lazy_peers
    out = net.stacks[a].handle(net.now, PeerFailed(b))
    assert NeighborDown(b) in out
    assert b not in net.stacks[a].hyparview.active_view
    assert b in net.stacks[a].hyparview.failed
    assert b not in pt.eager_peers and b not in pt.lazy_peers


def test_messages_and_timers_are_routed_by_type():
    stack = Stack(1, random.Random(0))
    # A GOSSIP goes to Plumtree: it delivers.
    out = stack.handle(0.0, Receive(2, plumtree.Gossip(b"m", 1, b"p", 2)))
    assert Deliver(b"m", b"p", 1) in out
    assert stack.hyparview.active_view == {}
    # A JOIN goes to HyParView, whose NeighborUp reaches Plumtree at once.
    out = stack.handle(0.1, Receive(2, hyparview.Join(0)))
    assert NeighborUp(2) in out
    assert list(stack.plumtree.eager_peers) == [2]
    # Plumtree's NeighborUp repair: the new peer is told about b"m".
    assert any(type(e) is SetTimer and type(e.timer) is plumtree.FlushIHave for e in out)
    out = stack.handle(0.2, TimerFired(plumtree.FlushIHave()))
    assert Send(2, plumtree.IHave(((b"m", 2, 2),))) in out
    # A HyParView timer goes to HyParView.
    out = stack.handle(0.3, TimerFired(hyparview.ShuffleTick()))
    assert any(type(e) is Send and type(e.message) is hyparview.Shuffle for e in out)


@pytest.mark.parametrize("event", [object(), "hello", NeighborUp(2), Deliver(b"m", b"p", 0)])
def test_handle_rejects_non_overlay_event(event):
    stack = Stack(1, random.Random(0))
    with pytest.raises(TypeError):
        stack.handle(0.0, event)
