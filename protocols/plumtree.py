"""Plumtree epidemic broadcast trees (Leitao, Pereira, Rodrigues, SRDS'07), sans-IO.

Every link of the overlay starts *eager* (payloads are pushed along it). A node
that receives a payload twice PRUNEs the second sender's link to *lazy*, where
only ids travel, batched, in IHAVE. The eager links left form a spanning tree.
When an announced id does not arrive in time, the node GRAFTs the announcer:
the payload comes now and the link joins the tree again, which repairs it.
A periodic anti-entropy IHAVE of recent ids to every neighbour repairs
whatever both paths missed.

A tree per *root* (the node a broadcast started at), as riak_core's broadcast
keeps eager and lazy sets per root: every message names its root, and PRUNE and
GRAFT move the link in that root's tree. With one tree for all senders, the PRUNEs
of one sender's broadcasts cut links another sender's tree needs, and GRAFTs put
them back, over and over: measured on a 10-node office (bench/compare.py), the
publisher's first three events all went through IHAVE and GRAFT (92-157 ms to
reach everyone where the rest took 4-6 ms), because the nodes' own start-up
broadcasts had shaped the tree; every office node is a sender (its readings).
The paper's single tree stays too (``eager_peers``/``lazy_peers``): every PRUNE and
GRAFT moves the link there as well, and a root not seen before starts from a copy
of it. A new sender thus costs what it did with one tree (no flood: a simulated
office of 1000 nodes with senders at random keeps its RMR), and its own tree then
follows its own traffic only.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from protocols.events import (
    Broadcast,
    Deliver,
    NeighborDown,
    NeighborUp,
    Peer,
    Receive,
    Send,
    SetTimer,
    TimerFired,
)

# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gossip:
    """The payload itself, pushed along ``root``'s tree (``root``: the node the broadcast
    started at); ``round`` counts hops from it."""

    id: bytes
    round: int
    payload: bytes
    root: Peer


@dataclass(frozen=True, slots=True)
class IHave:
    """Lazy push: a batch of ``(id, round, root)`` announcements."""

    entries: tuple


@dataclass(frozen=True, slots=True)
class Graft:
    """Make the link eager again in ``root``'s tree and, if ``id`` is given, send that
    message."""

    id: bytes | None
    round: int
    root: Peer


@dataclass(frozen=True, slots=True)
class Prune:
    """Make the link lazy in ``root``'s tree: the receiver got a message of it twice."""

    root: Peer


MESSAGES = (Gossip, IHave, Graft, Prune)


def _lru_put(cache: OrderedDict, key: object, value: object, limit: int) -> None:
    """Set ``key`` as the most recent entry; drop the least recent past ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _expire(cache: OrderedDict, limit: int, horizon: float) -> None:
    """Drop from the oldest end (caches are in arrival order) what is too old or too many."""
    while cache and (len(cache) > limit or next(iter(cache.values()))[0] < horizon):
        cache.popitem(last=False)


# --- timers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraftTimeout:
    """Messages announced by one IHAVE have not all arrived: time to GRAFT the missing.
    One timer per IHAVE, not per id: a host pays for every timer and every step."""

    ids: tuple


@dataclass(frozen=True, slots=True)
class FlushIHave:
    pass


@dataclass(frozen=True, slots=True)
class AntiEntropyTick:
    pass


TIMERS = (GraftTimeout, FlushIHave, AntiEntropyTick)


# --- configuration ---------------------------------------------------------------------------


@dataclass(slots=True)
class Config:
    """Defaults from DESIGN.md section 2."""

    graft_timeout: float = 0.080  # first wait for a missing message after its IHAVE
    graft_retry: float = 0.040  # then between GRAFTs to further announcers
    # Lazy push batching window: the top of DESIGN's 5-50 ms. IHAVEs are two thirds of a
    # broadcast's messages on a 10-node office, and each costs actor hops on both ends.
    ihave_delay: float = 0.050
    optimization_threshold: int = 3  # hops saved before we swap a tree link for a lazy one
    # A payload from a peer we PRUNEd less than this long ago crossed the PRUNE; False:
    # every copy is taken as the paper takes it (see Plumtree._crossed).
    crossed_window: float = 1.0
    keep_crossed: bool = True
    payload_ttl: float = 30.0  # keep payloads this long, to answer GRAFTs
    payload_max: int = 10_000
    # and at most this many bytes of them: ten thousand events of a client's most (256
    # KiB of data) would be 2.5 GB. Small ones meet payload_max first (10,000 of 400
    # bytes: 3.8 MiB).
    payload_bytes_max: int = 4 << 20
    seen_ttl: float = 90.0  # remember delivered ids this long, to drop duplicates
    seen_max: int = 100_000
    missing_max: int = 10_000  # announced-but-missing ids tracked at once
    announcers_max: int = 8  # IHAVE senders kept per missing id
    ihave_max: int = 900  # entries per IHAVE frame (the wire's bound: 1 MiB, longest ids, roots)
    anti_entropy_interval: float = 10.0
    anti_entropy_max: int = 256  # most recent ids announced per anti-entropy exchange
    # Trees kept, one per root: an office has a root per node. Beyond this (a peer
    # naming roots at random), the least recently used tree is dropped; its root
    # starts again from the single tree, as a new one does.
    roots_max: int = 1024


@dataclass(slots=True)
class Plumtree:
    """One node's broadcast tree. Drive it with :meth:`handle`; feed it HyParView's
    ``NeighborUp``/``NeighborDown`` effects as events."""

    me: Peer
    rng: random.Random
    config: Config = field(default_factory=Config)
    # dicts used as ordered sets, so iteration (and thus a simulation) is reproducible.
    # The single tree of the paper, moved by every root's PRUNEs and GRAFTs:
    eager_peers: dict = field(default_factory=dict)
    lazy_peers: dict = field(default_factory=dict)
    # root -> (eager, lazy): that root's own tree, least recently used first
    trees: OrderedDict = field(default_factory=OrderedDict)
    # id -> (time, round, parent, root): the parent is who delivered it, the link to prune
    received: OrderedDict = field(default_factory=OrderedDict)
    # id -> (time, round, payload, root)
    payloads: OrderedDict = field(default_factory=OrderedDict)
    payload_bytes: int = 0  # of the payloads kept
    # The most ids ``received`` held since it was last rebuilt: a dict keeps the table of
    # its largest size until rebuilt (after 9,000 events at 300/s, rebuilding both caches
    # gave back 0.4 MiB in each Gossip).
    _received_peak: int = 0
    missing: dict = field(default_factory=dict)  # id -> [(announcer, round, root), ...]
    # root -> the peer its last payload came from down the tree: our parent in it
    parents: OrderedDict = field(default_factory=OrderedDict)
    # (root, peer) -> (when we PRUNEd that peer in that root's tree,), oldest first
    pruned: OrderedDict = field(default_factory=OrderedDict)
    _graft_armed: set = field(default_factory=set)
    # peer -> {id: (round, root)}: IHAVE entries waiting for the window to close
    _lazy_queue: dict = field(default_factory=dict)
    _flush_armed: bool = False
    _started: bool = False

    def handle(self, now: float, event: object) -> list:
        """Apply one event; return the effects the host must carry out."""
        out: list = []
        if not self._started:
            self._started = True
            interval = self.config.anti_entropy_interval
            out.append(SetTimer(interval * (0.5 + self.rng.random()), AntiEntropyTick()))
        kind = type(event)
        if kind is Receive:
            msg = event.message
            mkind = type(msg)
            if mkind is Gossip:
                self._on_gossip(now, event.peer, msg, out)
            elif mkind is IHave:
                self._on_ihave(now, event.peer, msg, out)
            elif mkind is Graft:
                self._on_graft(now, event.peer, msg, out)
            elif mkind is Prune:
                self._on_prune(event.peer, msg.root)
        elif kind is TimerFired:
            self._on_timer(now, event.timer, out)
        elif kind is Broadcast:
            self._broadcast(now, event.id, event.payload, out)
        elif kind is NeighborUp:
            peer = event.peer
            self._forget_prunes(peer)  # a new link (the peer may have restarted)
            # Every new link starts eager (paper), in every tree.
            for eager, lazy in ((self.eager_peers, self.lazy_peers), *self.trees.values()):
                lazy.pop(peer, None)
                eager[peer] = None
            # A new link is often a repair: tell the peer what went by recently, so it can
            # GRAFT what it missed while it had no links (what the paper leaves to chance).
            recent = self._recent(now)
            if recent:
                queued = self._lazy_queue.setdefault(peer, {})
                for mid, round, root in recent:
                    queued[mid] = (round, root)
                self._arm_flush(out)
        elif kind is NeighborDown:
            gone = event.peer
            for eager, lazy in ((self.eager_peers, self.lazy_peers), *self.trees.values()):
                eager.pop(gone, None)
                lazy.pop(gone, None)
            self._lazy_queue.pop(gone, None)
            self._forget_prunes(gone)
            # Its announcements can no longer be grafted: free their slots.
            for announcers in self.missing.values():
                announcers[:] = [a for a in announcers if a[0] != gone]
        return out

    # -- peer sets ------------------------------------------------------------------------

    def is_neighbor(self, peer: Peer) -> bool:
        return peer in self.eager_peers or peer in self.lazy_peers

    def eager_for(self, root: Peer) -> list:
        """The links ``root``'s broadcasts are pushed on from here."""
        tree = self.trees.get(root)
        return list(self.eager_peers if tree is None else tree[0])

    def lazy_for(self, root: Peer) -> list:
        """The links only ``root``'s ids are announced on from here."""
        tree = self.trees.get(root)
        return list(self.lazy_peers if tree is None else tree[1])

    def _tree(self, root: Peer) -> tuple[dict, dict]:
        tree = self.trees.get(root)
        if tree is None:
            tree = (dict(self.eager_peers), dict(self.lazy_peers))
        _lru_put(self.trees, root, tree, max(1, self.config.roots_max))
        return tree

    def _make_eager(self, root: Peer, peer: Peer) -> None:
        if self.pruned:
            self.pruned.pop((root, peer), None)
        if self.is_neighbor(peer):
            for eager, lazy in (self._tree(root), (self.eager_peers, self.lazy_peers)):
                lazy.pop(peer, None)
                eager[peer] = None

    def _make_lazy(self, root: Peer, peer: Peer) -> None:
        if self.is_neighbor(peer):
            for eager, lazy in (self._tree(root), (self.eager_peers, self.lazy_peers)):
                eager.pop(peer, None)
                lazy[peer] = None

    # -- broadcast ------------------------------------------------------------------------

    def _broadcast(self, now: float, mid: bytes, payload: bytes, out: list) -> None:
        if mid in self.received:
            return
        self._remember(now, mid, 0, payload, None, self.me)
        out.append(Deliver(mid, payload, 0))
        self._push(mid, 0, payload, None, self.me, out)

    def _push(
        self,
        mid: bytes,
        round: int,
        payload: bytes,
        sender: Peer,
        root: Peer,
        out: list,
        skip: Peer = None,
    ) -> None:
        """Eager push the payload down ``root``'s tree (but to ``skip``), lazy push its
        id to the rest."""
        eager, lazy = self._tree(root)
        gossip = Gossip(mid, round + 1, payload, root)
        for peer in eager:
            if peer != sender and peer != skip:
                out.append(Send(peer, gossip))
        if lazy:
            for peer in lazy:
                if peer != sender:
                    self._lazy_queue.setdefault(peer, {})[mid] = (round + 1, root)
            self._arm_flush(out)

    def _arm_flush(self, out: list) -> None:
        if self._lazy_queue and not self._flush_armed:
            self._flush_armed = True
            # Jittered, as the anti-entropy timer: a window of fixed length phase-locks
            # with a publisher of the same period (the benchmark's 20/s against 50 ms),
            # and every node's IHAVEs then land on the next broadcast's tree.
            out.append(SetTimer(self.config.ihave_delay * (0.5 + self.rng.random()), FlushIHave()))

    def _remember(
        self, now: float, mid: bytes, round: int, payload: bytes, parent: Peer, root: Peer
    ) -> None:
        self.received[mid] = (now, round, parent, root)
        if len(self.received) > self._received_peak:
            self._received_peak = len(self.received)
        old = self.payloads.pop(mid, None)
        if old is not None:
            self.payload_bytes -= len(old[2])
        self.payloads[mid] = (now, round, payload, root)
        self.payload_bytes += len(payload)
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        """Drop what the caches keep beyond their bounds, oldest first: on every payload,
        and on the anti-entropy tick, so that what a burst left is freed once it is old
        even if nothing follows it."""
        c = self.config
        _expire(self.received, c.seen_max, now - c.seen_ttl)
        payloads = self.payloads
        horizon = now - c.payload_ttl
        # As _expire, and by bytes too; the newest stays however large.
        while payloads and (
            len(payloads) > c.payload_max
            or next(iter(payloads.values()))[0] < horizon
            or (self.payload_bytes > c.payload_bytes_max and len(payloads) > 1)
        ):
            self.payload_bytes -= len(payloads.popitem(last=False)[1][2])

    def _prune(self, now: float, root: Peer, peer: Peer, out: list) -> None:
        self._make_lazy(root, peer)
        out.append(Send(peer, Prune(root)))
        c = self.config
        if c.keep_crossed:
            _lru_put(self.pruned, (root, peer), (now,), 4 * c.roots_max)
            _expire(self.pruned, 4 * c.roots_max, now - c.crossed_window)

    def _forget_prunes(self, peer: Peer) -> None:
        if self.pruned:
            for key in [key for key in self.pruned if key[1] == peer]:
                del self.pruned[key]

    def _crossed(self, now: float, root: Peer, peer: Peer) -> bool:
        """Did a payload from ``peer`` cross our PRUNE of it in ``root``'s tree? On a
        loaded office several of a root's payloads are on their way at once, and a PRUNE
        takes as long: payloads the peer pushed before it had our PRUNE still come. The
        paper's rules, applied to such a stray copy, cut the tree: it arrives first, we
        push it on to our parent too, whose own copy reached it earlier, so our parent
        PRUNEs us, and its copy reaching us second makes us PRUNE it: a subtree hangs
        from nothing, and gets every payload after an IHAVE and a GRAFT timeout, whose
        traffic loads the office more (30 members on two cores, bench/compare.py: 3.5-4.3
        GRAFTs and 19-26 PRUNEs an event, medians of 157-196 ms, in three runs of five;
        with this, 0.3-1.1 GRAFTs and 12-13 ms). So a stray copy is delivered and passed
        on, but not to our parent, does not make its link eager again, and the copy from
        our parent after it is not pruned."""
        pruned = self.pruned.get((root, peer))
        return pruned is not None and pruned[0] >= now - self.config.crossed_window

    # -- receiving ------------------------------------------------------------------------

    def _has(self, peer: Peer, mid: bytes, round: int) -> None:
        """``peer`` has ``mid``: it sent or announced it to us with ``round`` (its own
        hop count plus one). On a lazy link both ends queue the same id and the first
        window to close announces it; the other end's IHAVE is then dropped (near half
        of all), unless it is ``optimization_threshold`` hops shorter than the peer's
        path: then it is what lets the peer move its tree link to us (``_optimize``)."""
        queued = self._lazy_queue.get(peer)
        if queued:
            ours = queued.get(mid)
            if ours is not None and round - 1 - ours[0] < self.config.optimization_threshold:
                del queued[mid]

    def _on_gossip(self, now: float, peer: Peer, msg: Gossip, out: list) -> None:
        mid, root = msg.id, msg.root
        self._has(peer, mid, msg.round)
        if mid in self.received:
            # A second copy: this link is redundant for the tree. PRUNE even a peer we
            # hold lazy: if our GRAFT and its PRUNE crossed, it may still push to us.
            if self.is_neighbor(peer):
                first = self.received[mid][2]
                if first != peer and self._crossed(now, root, first):
                    return  # the first copy was the stray one: this link is the tree's
                self._prune(now, root, peer, out)
            return
        self._remember(now, mid, msg.round, msg.payload, peer, root)
        out.append(Deliver(mid, msg.payload, msg.round))
        announcers = self.missing.pop(mid, None)
        if self.pruned and self._crossed(now, root, peer):
            # Pass it on, but not up to our parent, which has it or soon will: a copy
            # from us would be its duplicate, and it would PRUNE the link we hang from.
            self._push(mid, msg.round, msg.payload, peer, root, out, self.parents.get(root))
            return
        self._push(mid, msg.round, msg.payload, peer, root, out)
        self._make_eager(root, peer)
        _lru_put(self.parents, root, peer, max(1, self.config.roots_max))
        if announcers:
            best_peer, best_round, _ = min(announcers, key=lambda a: a[1])
            self._optimize(now, now, mid, msg.round, peer, best_peer, best_round, root, out)

    def _optimize(
        self,
        now: float,
        seen_at: float,
        mid: bytes,
        round: int,
        parent: Peer,
        lazy: Peer,
        lazy_round: int,
        root: Peer,
        out: list,
    ) -> None:
        """Paper section 3.8: in an optimal tree the eager path is never longer than a lazy
        announcement. If a lazy link announced the message ``threshold`` hops earlier than
        the tree delivered it, it replaces the tree link. The paper checks this when the
        payload arrives after an IHAVE; with batched IHAVEs they mostly arrive after the
        payload, so the same check runs then too. (``seen_at``: when ``mid`` came, which
        its record keeps.)"""
        if (
            round - lazy_round >= self.config.optimization_threshold
            and lazy != parent
            and self.is_neighbor(lazy)
            and parent in self._tree(root)[0]
        ):
            self._make_eager(root, lazy)
            out.append(Send(lazy, Graft(None, lazy_round, root)))
            self._prune(now, root, parent, out)
            # compare later IHAVEs with the new path
            self.received[mid] = (seen_at, lazy_round, lazy, root)

    def _on_ihave(self, now: float, peer: Peer, msg: IHave, out: list) -> None:
        if not self.is_neighbor(peer):
            return  # a stale link: grafting it would add a non-neighbor to the tree
        c = self.config
        armed = []
        for mid, round, root in msg.entries:
            self._has(peer, mid, round)
            seen = self.received.get(mid)
            if seen is not None:
                # (the root we had it with: an announcement cannot move another tree)
                self._optimize(now, seen[0], mid, seen[1], seen[2], peer, round, seen[3], out)
                continue
            announcers = self.missing.get(mid)
            if announcers is None:
                if len(self.missing) >= c.missing_max:
                    continue
                announcers = self.missing[mid] = []
            if len(announcers) < c.announcers_max:
                announcers.append((peer, round, root))
            if mid not in self._graft_armed:
                self._graft_armed.add(mid)
                armed.append(mid)
        if armed:
            out.append(SetTimer(c.graft_timeout, GraftTimeout(tuple(armed))))

    def _on_graft(self, now: float, peer: Peer, msg: Graft, out: list) -> None:
        if self.parents.get(msg.root) == peer:
            del self.parents[msg.root]  # it hangs from us now
        self._make_eager(msg.root, peer)
        if msg.id is not None:
            cached = self.payloads.get(msg.id)
            if cached is not None and cached[0] >= now - self.config.payload_ttl:
                _, round, payload, root = cached
                out.append(Send(peer, Gossip(msg.id, round + 1, payload, root)))

    def _on_prune(self, peer: Peer, root: Peer) -> None:
        self._make_lazy(root, peer)

    # -- timers ---------------------------------------------------------------------------

    def _on_timer(self, now: float, timer: object, out: list) -> None:
        kind = type(timer)
        if kind is GraftTimeout:
            self._on_graft_timeout(timer, out)
        elif kind is FlushIHave:
            self._flush(out)
        elif kind is AntiEntropyTick:
            self._forget_old(now)
            if self._received_peak > 4 * max(1024, len(self.received)):  # after a burst
                self.received = OrderedDict(self.received)
                self.payloads = OrderedDict(self.payloads)
                self._received_peak = len(self.received)
            self._anti_entropy(now, out)
            out.append(SetTimer(self.config.anti_entropy_interval, timer))

    def _on_graft_timeout(self, timer: GraftTimeout, out: list) -> None:
        retry = []
        for mid in timer.ids:
            self._graft_armed.discard(mid)
            if mid in self.received:
                self.missing.pop(mid, None)
                continue
            announcers = self.missing.get(mid)
            while announcers:
                peer, round, root = announcers.pop(0)
                if self.is_neighbor(peer):
                    self._make_eager(root, peer)
                    out.append(Send(peer, Graft(mid, round, root)))
                    # Ask the next announcer if this one does not deliver soon.
                    self._graft_armed.add(mid)
                    retry.append(mid)
                    break
            else:
                self.missing.pop(mid, None)
        if retry:
            out.append(SetTimer(self.config.graft_retry, GraftTimeout(tuple(retry))))

    def _flush(self, out: list) -> None:
        self._flush_armed = False
        limit = self.config.ihave_max
        for peer, queued in self._lazy_queue.items():
            entries = [(mid, round, root) for mid, (round, root) in queued.items()]
            for start in range(0, len(entries), limit):
                out.append(Send(peer, IHave(tuple(entries[start : start + limit]))))
        self._lazy_queue.clear()

    def _recent(self, now: float) -> list:
        """``(id, round, root)`` announcements of the newest cached payloads, newest first."""
        horizon = now - self.config.payload_ttl
        limit = min(self.config.anti_entropy_max, self.config.ihave_max)  # one IHAVE frame
        recent = []
        for mid, (at, round, _, root) in reversed(self.payloads.items()):
            if at < horizon or len(recent) >= limit:
                break
            recent.append((mid, round + 1, root))
        return recent

    def _anti_entropy(self, now: float, out: list) -> None:
        """Announce recent ids to every neighbour: each grafts whatever the tree missed.
        Every one, not one at random: a payload is kept ``payload_ttl`` (3 rounds), and
        a neighbour with 3 links picking one at random skipped a given node in all 3 with
        probability (2/3)**3, about 0.3; what only it could repair was lost for good."""
        recent = self._recent(now)
        if recent:
            announcement = IHave(tuple(recent))
            for peer in (*self.eager_peers, *self.lazy_peers):
                out.append(Send(peer, announcement))
