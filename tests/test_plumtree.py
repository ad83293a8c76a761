"""Unit tests for protocols.plumtree: one test per rule of the Plumtree paper
(Leitao, Pereira, Rodrigues, "Epidemic Broadcast Trees", SRDS'07) and of the
module's additions (lazy batching, bounded caches, anti-entropy, repair on NeighborUp).

Pure and fast: the sans-IO state machine is driven directly with events and its
effects are compared with what the rule says. Peers are small ints, the node is 0.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import (
    Broadcast,
    Deliver,
    NeighborDown,
    NeighborUp,
    Receive,
    Send,
    SetTimer,
    TimerFired,
)
from protocols.plumtree import (
    AntiEntropyTick,
    Config,
    FlushIHave,
    Gossip,
    Graft,
    GraftTimeout,
    IHave,
    Plumtree,
    Prune,
)

ME = 0
R = 100  # the root of the broadcasts this node receives in these tests (another node)
P = b"payload"

# --- helpers ---------------------------------------------------------------------------------


def make(eager=(), lazy=(), config: Config | None = None, seed: int = 0) -> Plumtree:
    """A started node whose links to ``eager`` and ``lazy`` are up, in that state.

    Links start eager (NeighborUp); the ``lazy`` ones are then PRUNEd by the peer.
    The start-up effects (the first anti-entropy timer) are consumed here.
    Both trees the tests use are set so: the node's own (root ME, its broadcasts) and
    R's (the broadcasts it receives)."""
    node = Plumtree(ME, random.Random(seed), config or Config())
    node.handle(0.0, NeighborUp(999))  # starts the node (arms the first anti-entropy tick)
    node.handle(0.0, NeighborDown(999))
    for peer in (*eager, *lazy):
        node.handle(0.0, NeighborUp(peer))
    for peer in lazy:
        for root in (ME, R):
            assert node.handle(0.0, Receive(peer, Prune(root))) == []
    for root in (ME, R):
        assert node.eager_for(root) == list(eager)
        assert node.lazy_for(root) == list(lazy)
    return node


def sends(effects: list, kind: type | None = None) -> list[tuple]:
    """``(peer, message)`` of every Send, optionally only of one message type."""
    return [
        (e.peer, e.message)
        for e in effects
        if type(e) is Send and (kind is None or type(e.message) is kind)
    ]


def timers(effects: list, kind: type | None = None) -> list[SetTimer]:
    return [e for e in effects if type(e) is SetTimer and (kind is None or type(e.timer) is kind)]


def flush_timers(effects: list, cfg: Config) -> int:
    """How many IHAVE flush timers ``effects`` set, each checked to fall in the jittered
    window: half to one and a half times ``ihave_delay``."""
    armed = timers(effects, FlushIHave)
    assert all(0.5 * cfg.ihave_delay <= t.delay < 1.5 * cfg.ihave_delay for t in armed)
    return len(armed)


def delivers(effects: list) -> list[Deliver]:
    return [e for e in effects if type(e) is Deliver]


def flush(node: Plumtree, now: float = 0.0) -> list:
    return node.handle(now, TimerFired(FlushIHave()))


# --- start-up ------------------------------------------------------------------------------


def test_first_event_arms_one_jittered_anti_entropy_tick():
    cfg = Config(anti_entropy_interval=10.0)
    node = Plumtree(ME, random.Random(1), cfg)
    first = node.handle(0.0, NeighborUp(1))
    ticks = timers(first, AntiEntropyTick)
    assert len(ticks) == 1
    assert 5.0 <= ticks[0].delay <= 15.0  # interval * (0.5 + U[0, 1))
    assert timers(node.handle(0.0, NeighborUp(2)), AntiEntropyTick) == []


# --- peer set ------------------------------------------------------------------------------


def test_neighbor_up_adds_peer_as_eager():
    node = make()
    assert node.handle(1.0, NeighborUp(1)) == []  # nothing broadcast yet: nothing to announce
    assert node.eager_for(ME) == [1] and node.lazy_for(ME) == []
    # A lazy link that comes up again (the peer restarted) is a new link: eager again,
    # in every tree.
    node.handle(1.0, Receive(1, Prune(R)))
    node.handle(1.0, Receive(1, Prune(ME)))
    assert node.lazy_for(R) == node.lazy_for(ME) == [1]
    node.handle(1.0, NeighborUp(1))
    assert node.eager_for(R) == node.eager_for(ME) == [1]
    assert node.lazy_for(R) == node.lazy_for(ME) == []


def test_neighbor_down_removes_peer_from_both_sets_and_pending_ihaves():
    node = make(eager=[1], lazy=[2, 3])
    out = node.handle(1.0, Broadcast(b"m", P))
    assert len(timers(out, FlushIHave)) == 1  # IHAVEs for 2 and 3 are queued
    node.handle(1.0, NeighborDown(1))
    node.handle(1.0, NeighborDown(2))
    for root in (ME, R):
        assert node.eager_for(root) == [] and node.lazy_for(root) == [3]
    assert sends(flush(node, 1.02)) == [(3, IHave(((b"m", 1, ME),)))]  # nothing left for 2


# --- broadcast -----------------------------------------------------------------------------


def test_broadcast_delivers_pushes_eagerly_and_queues_lazy_announcements():
    cfg = Config(ihave_delay=0.02)
    node = make(eager=[1, 2], lazy=[3, 4], config=cfg)
    out = node.handle(1.0, Broadcast(b"m", P))
    assert delivers(out) == [Deliver(b"m", P, 0)]
    # (our own broadcast: rooted here, pushed down our own tree)
    assert sends(out) == [(1, Gossip(b"m", 1, P, ME)), (2, Gossip(b"m", 1, P, ME))]
    assert timers(out) == timers(out, FlushIHave) and flush_timers(out, cfg) == 1
    assert sends(flush(node, 1.02)) == [
        (3, IHave(((b"m", 1, ME),))),
        (4, IHave(((b"m", 1, ME),))),
    ]


def test_broadcast_of_known_id_does_nothing():
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Broadcast(b"m", P))
    assert node.handle(1.5, Broadcast(b"m", b"other")) == []
    assert node.payloads[b"m"][2] == P


# --- gossip --------------------------------------------------------------------------------


def test_first_gossip_delivers_and_pushes_to_all_but_the_sender():
    node = make(eager=[1, 2, 3], lazy=[4, 5])
    out = node.handle(1.0, Receive(1, Gossip(b"m", 2, P, R)))
    assert delivers(out) == [Deliver(b"m", P, 2)]
    assert sends(out) == [(2, Gossip(b"m", 3, P, R)), (3, Gossip(b"m", 3, P, R))]
    assert len(timers(out, FlushIHave)) == 1
    assert sends(flush(node, 1.02)) == [(4, IHave(((b"m", 3, R),))), (5, IHave(((b"m", 3, R),)))]
    assert node.eager_for(R) == [1, 2, 3]  # the sender stays eager


def test_first_gossip_from_lazy_sender_makes_it_eager_and_skips_it():
    node = make(eager=[1], lazy=[2, 3])
    out = node.handle(1.0, Receive(3, Gossip(b"m", 1, P, R)))
    assert delivers(out) == [Deliver(b"m", P, 1)]
    assert sends(out) == [(1, Gossip(b"m", 2, P, R))]
    assert sends(flush(node, 1.02)) == [(2, IHave(((b"m", 2, R),)))]  # none for the sender 3
    assert node.eager_for(R) == [1, 3] and node.lazy_for(R) == [2]
    assert node.eager_for(ME) == [1] and node.lazy_for(ME) == [2, 3]  # our own: as it was


def test_duplicate_gossip_prunes_the_sender():
    node = make(eager=[1, 2])
    node.handle(1.0, Receive(1, Gossip(b"m", 1, P, R)))
    out = node.handle(1.01, Receive(2, Gossip(b"m", 3, P, R)))
    assert out == [Send(2, Prune(R))]  # no Deliver, no push; the PRUNE names the tree
    assert node.eager_for(R) == [1] and node.lazy_for(R) == [2]
    assert list(node.eager_peers) == [1] and list(node.lazy_peers) == [2]  # the single tree


def test_duplicate_gossip_from_lazy_sender_still_prunes():
    # The sender holds us as eager while we hold it as lazy: e.g. our GRAFT and its PRUNE
    # crossed (our GRAFT made us eager there, its PRUNE made it lazy here). Its copies that
    # arrive second are redundant forever unless we answer them with PRUNE.
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Receive(1, Gossip(b"m", 1, P, R)))
    out = node.handle(1.01, Receive(2, Gossip(b"m", 2, P, R)))
    assert out == [Send(2, Prune(R))]
    assert list(node.lazy_for(R)) == [2]


def test_prune_moves_sender_from_eager_to_lazy():
    node = make(eager=[1, 2])
    assert node.handle(1.0, Receive(1, Prune(ME))) == []
    assert node.eager_for(ME) == [2] and node.lazy_for(ME) == [1]
    out = node.handle(1.0, Broadcast(b"m", P))
    assert sends(out) == [(2, Gossip(b"m", 1, P, ME))]  # no payload down the pruned link
    # A PRUNE from a non-neighbour does not create a link.
    node.handle(1.0, Receive(9, Prune(ME)))
    assert 9 not in node.lazy_for(ME) and 9 not in node.eager_for(ME)


# --- a tree per root -----------------------------------------------------------------------


def test_each_root_keeps_its_tree_whatever_other_roots_prune():
    node = make(eager=[1, 2], lazy=[3])
    node.handle(1.0, Broadcast(b"a", P))  # our tree, as the single tree then: 1, 2 eager
    # R's broadcasts come from 1 first and again from 2: 2 is pruned in R's tree, and in
    # the single tree...
    node.handle(1.1, Receive(1, Gossip(b"m", 1, P, R)))
    node.handle(1.2, Receive(2, Gossip(b"m", 2, P, R)))
    assert node.eager_for(R) == [1] and list(node.eager_peers) == [1]
    # ...but not in ours: our next broadcast still goes down both links.
    out = node.handle(1.3, Broadcast(b"b", P))
    assert sends(out, Gossip) == [(1, Gossip(b"b", 1, P, ME)), (2, Gossip(b"b", 1, P, ME))]
    # A PRUNE or GRAFT moves the link in the tree it names (and the single tree) only.
    node.handle(1.4, Receive(1, Prune(ME)))
    assert node.eager_for(ME) == [2] and node.eager_for(R) == [1]
    node.handle(1.5, Receive(3, Graft(None, 1, R)))
    assert node.eager_for(R) == [1, 3] and node.lazy_for(ME) == [3, 1]


def test_a_root_not_seen_before_starts_from_the_single_tree():
    # No flood for a new sender: its first broadcast is pushed where the single tree
    # pushes, announced elsewhere, as with one tree for all.
    node = make(eager=[1, 2], lazy=[3, 4])
    node.handle(1.0, Receive(1, Gossip(b"x", 1, P, R)))
    node.handle(1.0, Receive(2, Gossip(b"x", 1, P, R)))  # 2 pruned in the single tree
    out = node.handle(1.1, Receive(1, Gossip(b"n", 1, P, 101)))
    assert sends(out, Gossip) == []  # only 1 is eager, and it sent it
    assert node.eager_for(101) == [1] and node.lazy_for(101) == [3, 4, 2]
    assert sorted(p for p, _ in sends(flush(node, 1.2), IHave)) == [2, 3, 4]


def test_trees_beyond_roots_max_drop_the_least_recently_used():
    node = make(eager=[1, 2], config=Config(roots_max=2))
    for i, root in enumerate((R, 101)):  # each prunes 2 in its tree
        node.handle(1.0, Receive(1, Gossip(bytes([i]), 1, P, root)))
        node.handle(1.0, Receive(2, Gossip(bytes([i]), 1, P, root)))
    node.handle(1.1, Receive(2, Graft(None, 1, R)))  # R used again: 101 is the oldest now
    node.handle(1.2, Receive(1, Gossip(b"z", 1, P, 102)))
    assert list(node.trees) == [R, 102]
    # 101 starts again from the single tree, as any new root.
    assert node.eager_for(101) == list(node.eager_peers)


def test_a_grafted_message_is_resent_with_its_own_root():
    node = make(eager=[1, 2])
    node.handle(1.0, Receive(1, Gossip(b"m", 3, P, 101)))
    assert node.handle(1.1, Receive(2, Graft(b"m", 4, 101))) == [
        Send(2, Gossip(b"m", 4, P, 101))
    ]


# --- lazy push batching --------------------------------------------------------------------


def test_lazy_push_batches_one_ihave_per_peer_with_one_flush_timer():
    cfg = Config(ihave_delay=0.02)
    node = make(eager=[1], lazy=[2, 3], config=cfg)
    armed = 0
    for i, mid in enumerate((b"a", b"b", b"c")):
        armed += flush_timers(node.handle(1.0 + i * 0.005, Broadcast(mid, P)), cfg)
    assert armed == 1  # one timer for the whole window
    entries = ((b"a", 1, ME), (b"b", 1, ME), (b"c", 1, ME))
    assert sends(flush(node, 1.02)) == [(2, IHave(entries)), (3, IHave(entries))]
    assert sends(flush(node, 1.04)) == []  # the queue was emptied
    # A broadcast after the flush opens a new window.
    out = node.handle(1.05, Broadcast(b"d", P))
    assert flush_timers(out, cfg) == 1


def test_the_ihave_window_is_jittered_so_it_cannot_phase_lock_with_a_periodic_publisher():
    cfg = Config(ihave_delay=0.05)
    node = make(eager=[1], lazy=[2], config=cfg)
    delays = []
    for i in range(200):  # one broadcast every 50 ms, each in a window of its own
        now = 1.0 + i * 0.05
        delays += [t.delay for t in timers(node.handle(now, Broadcast(b"%d" % i, P)), FlushIHave)]
        flush(node, now + 0.049)
    assert len(delays) == 200 and len(set(delays)) == 200
    assert all(0.025 <= d < 0.075 for d in delays)
    assert 0.045 < sum(delays) / len(delays) < 0.055  # the same window on average
    assert min(delays) < 0.03 and max(delays) > 0.07


def test_ihave_entries_beyond_ihave_max_split_into_frames():
    node = make(lazy=[2], config=Config(ihave_max=2))
    for i in range(5):
        node.handle(1.0, Broadcast(bytes([i]), P))
    frames = sends(flush(node, 1.02))
    assert [peer for peer, _ in frames] == [2, 2, 2]
    assert [m.entries for _, m in frames] == [
        ((b"\x00", 1, ME), (b"\x01", 1, ME)),
        ((b"\x02", 1, ME), (b"\x03", 1, ME)),
        ((b"\x04", 1, ME),),
    ]


# --- IHAVE ---------------------------------------------------------------------------------


def test_ihave_for_unknown_id_records_missing_and_arms_one_graft_timer():
    cfg = Config(graft_timeout=0.08)
    node = make(lazy=[1, 2], config=cfg)
    out = node.handle(1.0, Receive(1, IHave(((b"m", 3, R),))))
    assert out == [SetTimer(0.08, GraftTimeout((b"m",)))]
    assert node.missing[b"m"] == [(1, 3, R)]
    assert node.handle(1.01, Receive(2, IHave(((b"m", 4, R),)))) == []  # no second timer
    assert node.missing[b"m"] == [(1, 3, R), (2, 4, R)]


def test_ihave_for_received_id_is_ignored():
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Receive(1, Gossip(b"m", 1, P, R)))
    assert node.handle(1.01, Receive(2, IHave(((b"m", 1, R),)))) == []
    assert b"m" not in node.missing


def test_an_id_a_lazy_peer_announced_or_sent_is_not_announced_back_to_it():
    # Both ends of a lazy link queue the same id; the first window to close announces
    # it, and the other end then knows the peer has it.
    node = make(eager=[1], lazy=[2, 3, 4])
    node.handle(1.0, Receive(1, Gossip(b"m", 1, P, R)))
    node.handle(1.0, Broadcast(b"n", P))
    node.handle(1.01, Receive(2, IHave(((b"m", 2, R),))))  # 2 has m
    node.handle(1.01, Receive(3, Gossip(b"m", 2, P, R)))  # so has 3 (a duplicate: pruned)
    announced = sorted(sends(flush(node, 1.05), IHave))
    assert announced == [
        (2, IHave(((b"n", 1, ME),))),
        (3, IHave(((b"n", 1, ME),))),
        (4, IHave(((b"m", 2, R), (b"n", 1, ME)))),
    ]


def test_an_announcement_that_lets_the_peer_shorten_its_path_is_still_sent():
    node = make(eager=[1], lazy=[2, 3], config=Config(optimization_threshold=3))
    node.handle(1.0, Receive(1, Gossip(b"m", 1, P, R)))  # we announce m with round 2
    node.handle(1.01, Receive(2, IHave(((b"m", 6, R),))))  # 2 got it at 5: 3 hops longer
    node.handle(1.01, Receive(3, IHave(((b"m", 5, R),))))  # 3 got it at 4: only 2
    assert sorted(sends(flush(node, 1.05), IHave)) == [(2, IHave(((b"m", 2, R),)))]


def test_ihave_from_non_neighbour_is_ignored():
    node = make(eager=[1])
    assert node.handle(1.0, Receive(9, IHave(((b"m", 1, R),)))) == []
    assert node.missing == {}


# --- GRAFT on timeout ----------------------------------------------------------------------


def test_graft_timeout_grafts_announcers_in_turn():
    cfg = Config(graft_timeout=0.08, graft_retry=0.04)
    node = make(eager=[1], lazy=[2, 3], config=cfg)
    node.handle(1.0, Receive(2, IHave(((b"m", 3, R),))))
    node.handle(1.01, Receive(3, IHave(((b"m", 4, R),))))
    out = node.handle(1.08, TimerFired(GraftTimeout((b"m",))))
    assert out == [Send(2, Graft(b"m", 3, R)), SetTimer(0.04, GraftTimeout((b"m",)))]
    assert 2 in node.eager_for(R) and 2 not in node.lazy_for(R)
    out = node.handle(1.12, TimerFired(GraftTimeout((b"m",))))
    assert out == [Send(3, Graft(b"m", 4, R)), SetTimer(0.04, GraftTimeout((b"m",)))]
    assert 3 in node.eager_for(R) and 3 not in node.lazy_for(R)
    assert node.handle(1.16, TimerFired(GraftTimeout((b"m",)))) == []  # nobody left to ask
    assert b"m" not in node.missing


def test_graft_timeout_after_arrival_does_nothing_and_clears_missing():
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Receive(2, IHave(((b"m", 3, R),))))
    node.handle(1.01, Receive(1, Gossip(b"m", 2, P, R)))
    assert node.handle(1.08, TimerFired(GraftTimeout((b"m",)))) == []
    assert b"m" not in node.missing
    assert list(node.lazy_for(R)) == [2]  # the announcer was not grafted


# --- a payload that crossed our PRUNE ----------------------------------------------------


def crossing(config: Config | None = None) -> Plumtree:
    """A node whose parent in R's tree is 1; it got m1 from 1, then from 2, and PRUNEd 2.
    3 hangs from it."""
    node = make(eager=[1, 2, 3], config=config)
    node.handle(1.0, Receive(1, Gossip(b"m1", 2, P, R)))
    assert sends(node.handle(1.01, Receive(2, Gossip(b"m1", 2, P, R))), Prune) == [(2, Prune(R))]
    return node


def test_a_payload_that_crossed_our_prune_is_passed_on_but_not_up_to_our_parent():
    # 2 pushed m2 before our PRUNE reached it, and on a loaded office it comes first.
    node = crossing()
    out = node.handle(1.02, Receive(2, Gossip(b"m2", 2, P, R)))
    assert delivers(out) == [Deliver(b"m2", P, 2)]
    assert sends(out, Gossip) == [(3, Gossip(b"m2", 3, P, R))]  # not to 1, which has it
    assert 2 in node.lazy_for(R)  # the PRUNE stands
    # Our parent's own copy after it is the tree working: its link stays.
    assert sends(node.handle(1.03, Receive(1, Gossip(b"m2", 2, P, R)))) == []
    assert 1 in node.eager_for(R)
    # and the next payload comes down the tree as before
    out = node.handle(1.1, Receive(1, Gossip(b"m3", 2, P, R)))
    assert sends(out, Gossip) == [(3, Gossip(b"m3", 3, P, R))]


def test_the_paper_rules_on_a_crossed_payload_cut_the_link_we_hang_from():
    # What keep_crossed=False does, as the paper: we push m2 to our parent, which has it
    # (and will PRUNE us for it), make 2 eager again, and PRUNE our parent for its copy.
    node = crossing(Config(keep_crossed=False))
    out = node.handle(1.02, Receive(2, Gossip(b"m2", 2, P, R)))
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R)), (3, Gossip(b"m2", 3, P, R))]
    assert 2 in node.eager_for(R)
    assert sends(node.handle(1.03, Receive(1, Gossip(b"m2", 2, P, R)))) == [(1, Prune(R))]
    assert 1 in node.lazy_for(R)


def test_a_payload_long_after_our_prune_is_taken_as_the_tree_s():
    cfg = Config(crossed_window=1.0)
    node = crossing(cfg)
    out = node.handle(2.5, Receive(2, Gossip(b"m2", 2, P, R)))  # 1.49 s later: not in flight
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R)), (3, Gossip(b"m2", 3, P, R))]
    assert 2 in node.eager_for(R)
    assert sends(node.handle(2.51, Receive(1, Gossip(b"m2", 2, P, R)))) == [(1, Prune(R))]


def test_a_peer_we_grafted_or_that_grafted_us_is_no_longer_taken_as_crossing():
    node = crossing()
    node.handle(1.02, Receive(2, IHave(((b"m2", 2, R),))))
    node.handle(1.1, TimerFired(GraftTimeout((b"m2",))))  # we GRAFT 2: we want its pushes
    out = node.handle(1.12, Receive(2, Gossip(b"m2", 2, P, R)))
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R)), (3, Gossip(b"m2", 3, P, R))]
    assert node.parents[R] == 2
    # 3 PRUNEd, then 3 GRAFTs us: a copy from it is the tree's again
    node = crossing()
    node.handle(1.02, Receive(3, Gossip(b"m1", 3, P, R)))  # a duplicate: PRUNE 3
    node.handle(1.03, Receive(3, Graft(None, 3, R)))
    out = node.handle(1.04, Receive(3, Gossip(b"m2", 2, P, R)))
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R))]
    assert node.parents[R] == 3


def test_a_parent_that_grafts_us_hangs_from_us_and_gets_crossed_payloads():
    node = crossing()
    node.handle(1.02, Receive(1, Graft(None, 2, R)))  # the tree turned: 1 hangs from us now
    assert R not in node.parents
    out = node.handle(1.03, Receive(2, Gossip(b"m2", 2, P, R)))  # crossed our PRUNE
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R)), (3, Gossip(b"m2", 3, P, R))]


def test_a_new_link_to_a_peer_we_pruned_starts_afresh():
    # The peer restarted (or the link was made again): its pushes are the tree's.
    node = crossing()
    node.handle(1.02, NeighborDown(2))
    node.handle(1.03, NeighborUp(2))
    assert not node.pruned
    out = node.handle(1.04, Receive(2, Gossip(b"m2", 2, P, R)))
    assert sorted(sends(out, Gossip)) == [(1, Gossip(b"m2", 3, P, R)), (3, Gossip(b"m2", 3, P, R))]


# --- GRAFT received ------------------------------------------------------------------------


def test_graft_makes_sender_eager_and_resends_cached_gossip():
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Receive(1, Gossip(b"m", 3, P, R)))
    out = node.handle(1.1, Receive(2, Graft(b"m", 4, R)))
    assert out == [Send(2, Gossip(b"m", 4, P, R))]
    assert 2 in node.eager_for(R) and 2 not in node.lazy_for(R)


def test_graft_without_id_only_changes_the_link():
    node = make(eager=[1], lazy=[2])
    node.handle(1.0, Broadcast(b"m", P))
    assert node.handle(1.1, Receive(2, Graft(None, 1, R))) == []
    assert 2 in node.eager_for(R) and 2 not in node.lazy_for(R)


def test_graft_for_unknown_id_sends_nothing_but_makes_link_eager():
    node = make(lazy=[2])
    assert node.handle(1.0, Receive(2, Graft(b"never", 1, R))) == []
    assert list(node.eager_for(R)) == [2]


# --- optimisation (paper section 3.8) ------------------------------------------------------


def test_optimization_swaps_tree_link_when_gain_reaches_threshold():
    node = make(eager=[1], lazy=[2], config=Config(optimization_threshold=3))
    node.handle(1.0, Receive(2, IHave(((b"m", 2, R),))))
    out = node.handle(1.01, Receive(1, Gossip(b"m", 5, P, R)))  # 5 - 2 == threshold
    assert delivers(out) == [Deliver(b"m", P, 5)]
    assert sends(out, Graft) == [(2, Graft(None, 2, R))]
    assert sends(out, Prune) == [(1, Prune(R))]
    assert list(node.eager_for(R)) == [2]
    assert list(node.lazy_for(R)) == [1]


def test_optimization_below_threshold_keeps_links():
    node = make(eager=[1], lazy=[2], config=Config(optimization_threshold=3))
    node.handle(1.0, Receive(2, IHave(((b"m", 3, R),))))
    out = node.handle(1.01, Receive(1, Gossip(b"m", 5, P, R)))  # 5 - 3 < threshold
    assert delivers(out) == [Deliver(b"m", P, 5)]
    assert sends(out, Graft) == [] and sends(out, Prune) == []
    assert list(node.eager_for(R)) == [1]
    assert list(node.lazy_for(R)) == [2]


def test_late_ihave_with_enough_gain_swaps_tree_link_and_becomes_the_reference():
    # The module's extension of section 3.8: batched IHAVEs mostly arrive after the payload,
    # so the same comparison runs when an IHAVE for a delivered id comes in.
    node = make(eager=[1], lazy=[2, 3], config=Config(optimization_threshold=3))
    node.handle(1.0, Receive(1, Gossip(b"m", 6, P, R)))
    out = node.handle(1.02, Receive(2, IHave(((b"m", 2, R),))))
    assert sends(out) == [(2, Graft(None, 2, R)), (1, Prune(R))]
    assert list(node.eager_for(R)) == [2]
    assert list(node.lazy_for(R)) == [3, 1]
    # Later IHAVEs are compared with the new path (round 2), not the old one (round 6), even
    # once the old parent is eager again (it GRAFTed us for some other message).
    node.handle(1.03, Receive(1, Graft(None, 0, R)))
    assert node.handle(1.04, Receive(3, IHave(((b"m", 3, R),)))) == []
    assert list(node.eager_for(R)) == [2, 1]


def test_neighbor_down_forgets_the_peer_announcements():
    node = make(eager=[1], lazy=[2, 3], config=Config(optimization_threshold=3))
    node.handle(1.0, Receive(2, IHave(((b"m", 1, R),))))
    node.handle(1.0, Receive(3, IHave(((b"m", 2, R),))))
    node.handle(1.005, NeighborDown(2))
    assert all(peer != 2 for peer, _, _ in node.missing.get(b"m", []))
    out = node.handle(1.01, Receive(1, Gossip(b"m", 6, P, R)))  # 6 - 2 >= threshold via 3
    assert sends(out, Graft) == [(3, Graft(None, 2, R))]
    assert sends(out, Prune) == [(1, Prune(R))]


# --- bounded caches ------------------------------------------------------------------------


def test_payloads_expire_after_payload_ttl():
    node = make(eager=[1], config=Config(payload_ttl=10.0, seen_ttl=100.0))
    node.handle(0.0, Broadcast(b"old", P))
    node.handle(11.0, Broadcast(b"new", P))
    assert list(node.payloads) == [b"new"]
    assert node.handle(11.5, Receive(1, Graft(b"old", 1, ME))) == []  # nothing left to send
    assert b"old" in node.received  # still known as seen: seen_ttl is longer


def test_graft_after_payload_ttl_without_new_traffic_sends_nothing():
    node = make(eager=[1], config=Config(payload_ttl=10.0))
    node.handle(0.0, Broadcast(b"old", P))
    assert node.handle(11.0, Receive(1, Graft(b"old", 1, ME))) == []


def test_payloads_bounded_by_payload_max():
    node = make(eager=[1], config=Config(payload_max=2))
    for mid in (b"a", b"b", b"c"):
        node.handle(1.0, Broadcast(mid, P))
    assert list(node.payloads) == [b"b", b"c"]
    assert node.handle(1.1, Receive(1, Graft(b"a", 1, ME))) == []
    # (resent as it was: rooted here)
    assert node.handle(1.1, Receive(1, Graft(b"b", 1, ME))) == [Send(1, Gossip(b"b", 1, P, ME))]


def test_payloads_bounded_by_payload_bytes_max_keeping_the_newest_however_large():
    node = make(eager=[1], config=Config(payload_bytes_max=10))
    node.handle(1.0, Broadcast(b"a", b"1234"))
    node.handle(1.0, Receive(1, Gossip(b"b", 1, b"5678", R)))
    assert list(node.payloads) == [b"a", b"b"] and node.payload_bytes == 8
    node.handle(1.0, Broadcast(b"c", b"90"))  # 10 bytes: still within
    assert list(node.payloads) == [b"a", b"b", b"c"] and node.payload_bytes == 10
    node.handle(1.0, Broadcast(b"d", b"x"))  # the oldest goes
    assert list(node.payloads) == [b"b", b"c", b"d"] and node.payload_bytes == 7
    assert node.handle(1.1, Receive(1, Graft(b"a", 1, ME))) == []  # nothing left to send
    assert node.handle(1.1, Receive(1, Graft(b"b", 1, R))) == [Send(1, Gossip(b"b", 2, b"5678", R))]
    node.handle(1.0, Broadcast(b"e", b"0123456789ab"))  # alone over the bound: kept alone
    assert list(node.payloads) == [b"e"] and node.payload_bytes == 12
    assert b"a" in node.received  # what was delivered is still known as seen


def test_the_anti_entropy_tick_forgets_what_is_old_when_nothing_follows():
    node = make(eager=[1], config=Config(payload_ttl=10.0, seen_ttl=20.0))
    for i in range(50):  # a burst, then nothing
        node.handle(0.0, Receive(1, Gossip(bytes([i]), 1, P, R)))
    tick = TimerFired(AntiEntropyTick())
    node.handle(9.0, tick)
    assert len(node.payloads) == 50 and len(node.received) == 50  # all still young
    node.handle(11.0, tick)
    assert not node.payloads and node.payload_bytes == 0  # older than payload_ttl
    assert len(node.received) == 50  # but still known as seen
    assert delivers(node.handle(11.5, Receive(1, Gossip(b"\x00", 1, P, R)))) == []  # a duplicate
    node.handle(21.0, tick)
    assert not node.received  # older than seen_ttl


def test_after_a_burst_the_tick_gives_the_caches_tables_back():
    import sys

    node = make(eager=[1], config=Config(payload_ttl=10.0, seen_ttl=20.0))
    for i in range(10_000):
        node.handle(0.0, Receive(1, Gossip(i.to_bytes(2, "big"), 1, P, R)))
    node.handle(15.0, Receive(1, Gossip(b"late", 1, P, R)))
    big = sys.getsizeof(node.received), sys.getsizeof(node.payloads)
    node.handle(21.0, TimerFired(AntiEntropyTick()))
    assert list(node.received) == [b"late"] and list(node.payloads) == [b"late"]
    small = sys.getsizeof(node.received), sys.getsizeof(node.payloads)
    assert small[0] * 20 < big[0] and small[1] * 20 < big[1], (big, small)


def test_received_ids_expire_after_seen_ttl():
    node = make(eager=[1], lazy=[2], config=Config(seen_ttl=5.0, payload_ttl=5.0))
    node.handle(0.0, Receive(1, Gossip(b"old", 1, P, R)))
    node.handle(6.0, Receive(1, Gossip(b"new", 1, P, R)))
    assert list(node.received) == [b"new"]
    # Forgotten: an announcement of it is now treated as missing.
    out = node.handle(6.1, Receive(2, IHave(((b"old", 2, R),))))
    assert timers(out, GraftTimeout) == [
        SetTimer(node.config.graft_timeout, GraftTimeout((b"old",)))
    ]


def test_received_ids_bounded_by_seen_max():
    node = make(eager=[1], config=Config(seen_max=2))
    for mid in (b"a", b"b", b"c"):
        node.handle(1.0, Receive(1, Gossip(mid, 1, P, R)))
    assert list(node.received) == [b"b", b"c"]


def test_missing_bounded_by_missing_max():
    node = make(lazy=[1], config=Config(missing_max=2))
    out = node.handle(1.0, Receive(1, IHave(((b"a", 1, R), (b"b", 1, R), (b"c", 1, R)))))
    assert list(node.missing) == [b"a", b"b"]
    assert [t.timer for t in timers(out)] == [GraftTimeout((b"a", b"b"))]


def test_announcers_per_id_bounded_by_announcers_max():
    node = make(lazy=[1, 2, 3], config=Config(announcers_max=2))
    for peer in (1, 2, 3):
        node.handle(1.0, Receive(peer, IHave(((b"m", peer, R),))))
    assert node.missing[b"m"] == [(1, 1, R), (2, 2, R)]


# --- anti-entropy --------------------------------------------------------------------------


def test_anti_entropy_announces_recent_ids_newest_first_to_every_neighbour():
    cfg = Config(anti_entropy_max=2, anti_entropy_interval=10.0)
    node = make(eager=[1, 2], lazy=[3], config=cfg)
    for i, mid in enumerate((b"a", b"b", b"c")):
        node.handle(1.0 + i, Broadcast(mid, P))
    node.handle(3.5, TimerFired(FlushIHave()))  # the broadcasts' own IHAVEs to 3
    out = node.handle(4.0, TimerFired(AntiEntropyTick()))
    newest = IHave(((b"c", 1, ME), (b"b", 1, ME)))
    assert sorted(sends(out)) == [(1, newest), (2, newest), (3, newest)]
    assert timers(out) == [SetTimer(10.0, AntiEntropyTick())]


def test_anti_entropy_skips_ids_older_than_payload_ttl():
    node = make(eager=[1], config=Config(payload_ttl=10.0))
    node.handle(0.0, Broadcast(b"old", P))
    node.handle(5.0, Broadcast(b"new", P))
    out = node.handle(12.0, TimerFired(AntiEntropyTick()))
    assert sends(out) == [(1, IHave(((b"new", 1, ME),)))]


def test_anti_entropy_sends_nothing_without_neighbours_or_recent_payloads():
    cfg = Config(anti_entropy_interval=10.0, payload_ttl=10.0)
    rearm = [SetTimer(10.0, AntiEntropyTick())]
    alone = make(config=cfg)
    alone.handle(1.0, Broadcast(b"m", P))
    assert alone.handle(2.0, TimerFired(AntiEntropyTick())) == rearm
    idle = make(eager=[1], config=cfg)
    assert idle.handle(2.0, TimerFired(AntiEntropyTick())) == rearm
    stale = make(eager=[1], config=cfg)
    stale.handle(1.0, Broadcast(b"m", P))
    assert stale.handle(20.0, TimerFired(AntiEntropyTick())) == rearm


def test_neighbor_up_after_broadcasts_announces_recent_ids_to_new_peer():
    cfg = Config(ihave_delay=0.02)
    node = make(eager=[1], config=cfg)
    node.handle(1.0, Broadcast(b"a", P))
    node.handle(1.1, Receive(1, Gossip(b"b", 2, P, R)))
    out = node.handle(2.0, NeighborUp(5))
    assert len(out) == 1 and flush_timers(out, cfg) == 1
    assert node.eager_for(R) == node.eager_for(ME) == [1, 5]
    assert sends(flush(node, 2.02)) == [(5, IHave(((b"b", 3, R), (b"a", 1, ME))))]


# --- determinism ---------------------------------------------------------------------------


def _script() -> list:
    return [
        NeighborUp(1),
        NeighborUp(2),
        NeighborUp(3),
        NeighborUp(4),
        Broadcast(b"a", P),
        Receive(2, Gossip(b"b", 1, P, R)),
        Receive(3, Gossip(b"b", 2, P, R)),
        Receive(4, IHave(((b"c", 1, R), (b"d", 2, R)))),
        TimerFired(FlushIHave()),
        TimerFired(GraftTimeout((b"c",))),
        TimerFired(AntiEntropyTick()),
        TimerFired(AntiEntropyTick()),
        TimerFired(AntiEntropyTick()),
        NeighborDown(2),
        Receive(1, Graft(b"a", 1, R)),
        TimerFired(AntiEntropyTick()),
        TimerFired(AntiEntropyTick()),
    ]


def test_same_seed_same_events_same_effects():
    runs = []
    for _ in range(2):
        node = Plumtree(ME, random.Random(42))
        runs.append([node.handle(i * 0.01, e) for i, e in enumerate(_script())])
    assert runs[0] == runs[1]
    # The seed is what the randomness comes from: the jittered first tick differs.
    other = Plumtree(ME, random.Random(43)).handle(0.0, NeighborUp(1))
    assert other != runs[0][0]


# --- property: random event sequences ------------------------------------------------------

PEERS = st.integers(1, 4)
IDS = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
ROUNDS = st.integers(0, 8)
ROOTS = st.sampled_from([ME, R, 101, 102])  # more than roots_max below: trees are dropped
MESSAGES = st.one_of(
    st.builds(Gossip, IDS, ROUNDS, st.sampled_from([P, b"own"]), ROOTS),
    st.builds(IHave, st.lists(st.tuples(IDS, ROUNDS, ROOTS), max_size=4).map(tuple)),
    st.builds(Graft, st.none() | IDS, ROUNDS, ROOTS),
    st.builds(Prune, ROOTS),
)
TIMERS = st.one_of(
    st.builds(GraftTimeout, st.tuples(IDS)), st.just(FlushIHave()), st.just(AntiEntropyTick())
)
EVENTS = st.one_of(
    st.builds(Receive, PEERS, MESSAGES),
    st.builds(NeighborUp, PEERS),
    st.builds(NeighborDown, PEERS),
    st.builds(TimerFired, TIMERS),
    st.builds(Broadcast, IDS, st.just(b"own")),
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.5), EVENTS), max_size=60), st.integers(0, 2**16))
def test_random_event_sequences_keep_invariants(steps, seed):
    cfg = Config(
        ihave_max=2,
        announcers_max=2,
        missing_max=3,
        payload_max=3,
        payload_bytes_max=12,  # the payloads below are 3 and 7 bytes
        anti_entropy_max=2,
        roots_max=3,
    )
    node = Plumtree(ME, random.Random(seed), cfg)
    now = 0.0
    delivered: set = set()
    for dt, event in steps:
        now += dt
        out = node.handle(now, event)
        for d in delivers(out):
            assert d.id not in delivered, f"{d.id!r} delivered twice"
            delivered.add(d.id)
        assert len(node.trees) <= cfg.roots_max
        for root in (ME, R, 101, 102):
            eager, lazy = set(node.eager_for(root)), set(node.lazy_for(root))
            assert not eager & lazy
            assert eager | lazy == set(node.eager_peers) | set(node.lazy_peers)  # every link
            assert ME not in eager | lazy
        assert len(node.missing) <= cfg.missing_max
        assert len(node.parents) <= cfg.roots_max
        assert len(node.pruned) <= 4 * cfg.roots_max
        assert all(len(a) <= cfg.announcers_max for a in node.missing.values())
        assert len(node.payloads) <= cfg.payload_max
        assert node.payload_bytes == sum(len(v[2]) for v in node.payloads.values())
        assert node.payload_bytes <= cfg.payload_bytes_max or len(node.payloads) == 1
        for _, msg in sends(out, IHave):
            assert 0 < len(msg.entries) <= cfg.ihave_max


def test_one_graft_timer_per_ihave_grafts_every_id_still_missing_at_once():
    node = make(eager=[1], lazy=[2])
    out = node.handle(1.0, Receive(2, IHave(((b"a", 2, R), (b"b", 2, R), (b"c", 2, R)))))
    assert timers(out, GraftTimeout) == [
        SetTimer(node.config.graft_timeout, GraftTimeout((b"a", b"b", b"c")))
    ]
    node.handle(1.05, Receive(1, Gossip(b"b", 1, b"x", R)))  # b came down the tree in time
    out = node.handle(1.08, TimerFired(GraftTimeout((b"a", b"b", b"c"))))
    assert [e for e in out if isinstance(e, Send)] == [
        Send(2, Graft(b"a", 2, R)),
        Send(2, Graft(b"c", 2, R)),
    ]
    assert timers(out, GraftTimeout) == [
        SetTimer(node.config.graft_retry, GraftTimeout((b"a", b"c")))
    ]
