"""HyParView membership (Leitao, Pereira, Rodrigues, DSN'07) as a sans-IO state machine.

Each node keeps a small symmetric *active view* (the links broadcast uses) and a
larger *passive view* (a reserve of known nodes, refreshed by SHUFFLE random
walks). A failed active peer is replaced at once from the passive view.

Beyond the paper (DESIGN.md's lessons from Partisan and iroh-gossip, and what
our simulator showed the plain rules getting wrong; the README says why each):
- links are tagged with the peer's incarnation, so a DISCONNECT, or a failure
  report, from before a restart cannot tear down the link made afterwards;
- a peer dropped as failed still gets a best-effort DISCONNECT, and an accepted
  NEIGHBOR_REPLY we no longer wait for is answered with one: links stay symmetric;
- a NEIGHBOR request that gets no answer within ``neighbor_timeout`` counts as
  a failure of that peer;
- a timer (every ``promote_interval``) keeps filling the active view from the
  passive view with low-priority requests, which only take free slots; a node
  left alone with nobody passive to ask asks the peers it lost, one at a time,
  and joins again through its contacts;
- a share of SHUFFLEs go straight to a passive peer (as in Cyclon), since a
  random walk never leaves the component it starts in;
- like Serf's reconnect, peers lost to a failure are retried now and then, so
  two halves of a healed partition find each other again;
- the office's members, as its replicated state lists them (``KnownPeers``), go
  into the passive view where it has room, and back there while a node is alone
  with nobody passive: a node restarted while its seeds are down still finds the
  office, as Serf rejoins the members in its snapshot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from protocols.events import (
    CloseLink,
    JoinVia,
    KnownPeers,
    NeighborDown,
    NeighborUp,
    Peer,
    PeerFailed,
    Receive,
    Send,
    SetTimer,
    TimerFired,
)

# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    """A new node asks its contact to take it into the overlay."""

    incarnation: int


@dataclass(frozen=True, slots=True)
class ForwardJoin:
    """Random walk that spreads a joiner into active and passive views."""

    joiner: Peer
    incarnation: int
    ttl: int


@dataclass(frozen=True, slots=True)
class Neighbor:
    """Ask to become an active peer; high priority only when the asker has none."""

    incarnation: int
    high_priority: bool


@dataclass(frozen=True, slots=True)
class NeighborReply:
    incarnation: int
    accepted: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The sender dropped the link; ``alive`` says whether it stays reachable (keep it
    in the passive view) or is leaving for good."""

    incarnation: int
    alive: bool = True


@dataclass(frozen=True, slots=True)
class Shuffle:
    """Random walk carrying a sample of the origin's views, to refresh passive views."""

    origin: Peer
    ttl: int
    nodes: tuple


@dataclass(frozen=True, slots=True)
class ShuffleReply:
    nodes: tuple


MESSAGES = (Join, ForwardJoin, Neighbor, NeighborReply, Disconnect, Shuffle, ShuffleReply)


# --- timers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShuffleTick:
    pass


@dataclass(frozen=True, slots=True)
class PromoteTick:
    pass


@dataclass(frozen=True, slots=True)
class ReconnectTick:
    pass


@dataclass(frozen=True, slots=True)
class JoinRetry:
    contact: Peer


@dataclass(frozen=True, slots=True)
class NeighborTimeout:
    peer: Peer
    attempt: int


@dataclass(frozen=True, slots=True)
class ShuffleReplyTimeout:
    peer: Peer


TIMERS = (ShuffleTick, PromoteTick, ReconnectTick, NeighborTimeout, JoinRetry, ShuffleReplyTimeout)


# --- configuration ---------------------------------------------------------------------------


@dataclass(slots=True)
class Config:
    """Defaults from DESIGN.md section 2 (the paper, Partisan and iroh-gossip)."""

    active_size: int = 5
    active_min: int = 3
    passive_size: int = 30
    arwl: int = 6  # active random walk length (FORWARD_JOIN ttl)
    prwl: int = 3  # passive random walk length: at this ttl the joiner enters the passive view
    # DESIGN's 10 s. At 30 s the passive views went stale: after 80% of 1000 nodes
    # crashed, reliability fell from 0.999 to 0.97-0.98 and never healed (simulator).
    # A reply to a non-neighbour goes by datagram on a node (protocols/datagram.py).
    shuffle_interval: float = 10.0
    shuffle_active: int = 3
    shuffle_passive: int = 4
    shuffle_ttl: int = 6
    shuffle_with_passive: float = 0.25  # share of shuffles sent straight to a passive peer
    # A passive peer sent a SHUFFLE straight that has not replied after this long is
    # dropped from the passive view, as if the connection to it had failed: the SHUFFLE
    # and its reply may travel as datagrams (a node does so), which fail silently.
    shuffle_reply_timeout: float = 2.0
    # DESIGN's 500 ms. A node's answer takes a connection, a worker process forked at each
    # end: of 17-39 requests while 10 nodes started together on 2 cores, 2-15 went past
    # 500 ms (hyparview_neighbor_timeouts), each dropping a live peer from the passive view
    # and undone by a DISCONNECT when the acceptance came; at 2 s none. A crashed node
    # still fails a request at once (a reset dial, a bounced datagram).
    neighbor_timeout: float = 2.0
    promote_interval: float = 5.0
    # Above the minimum, filling up towards active_size waits this long between tries: a
    # refused NEIGHBOR costs a connection (a process here) on both ends.
    fill_interval: float = 30.0
    # A round that gained nothing since the last one doubles the wait, up to this many
    # times fill_interval; a new link resets it. In a full office the few nodes left
    # below active_size were refused every 30 s, each a connection at both ends.
    fill_backoff_max: float = 4.0
    # A fill-up round above the minimum asks up to this many passive peers, each after
    # the last one refused (only free slots are taken, so most refuse): two nodes with
    # room find each other in a round, not by luck over minutes (seen: two nodes of a
    # 10-node office, each with a free slot and the other in its passive view, asking
    # one random full node every 30 s-2 min, a connection at both ends each time).
    fill_tries: int = 3
    join_retry_min: float = 0.25  # first retry of a JOIN whose contact was not up
    join_retry_max: float = 10.0
    reconnect_interval: float = 10.0
    reconnect_size: int = 16  # how many failed peers to remember for reconnection
    reconnect_timeout: float = 3600.0  # forget a failed peer after this long


@dataclass(slots=True)
class _Pending:
    """An outstanding NEIGHBOR request."""

    attempt: int
    high_priority: bool
    reconnect: bool
    join: bool = False


@dataclass(slots=True)
class HyParView:
    """One node's membership state. Drive it with :meth:`handle`."""

    me: Peer
    rng: random.Random
    incarnation: int = 0
    config: Config = field(default_factory=Config)
    # peer -> the incarnation it had when the link was made
    active_view: dict = field(default_factory=dict)
    passive_view: list = field(default_factory=list)
    _passive_set: set = field(default_factory=set)
    _pending: dict = field(default_factory=dict)  # peer -> _Pending
    _attempts: int = 0
    # peers lost to failure, oldest first: peer -> time of failure (Serf's "failed members")
    failed: dict = field(default_factory=dict)
    contacts: list = field(default_factory=list)  # who we joined through: retried when alone
    known: list = field(default_factory=list)  # the office's members, from its state (KnownPeers)
    _tried: set = field(default_factory=set)  # rejected us since we last gained a link
    _asked_alone: set = field(default_factory=set)  # lost peers asked since we were left alone
    _join_failures: int = 0  # failed JOINs in a row, for the retry backoff
    _last_shuffle: tuple = ()  # what our last SHUFFLE carried, dropped first on its reply
    _awaiting_reply: Peer | None = None  # the passive peer of our last direct SHUFFLE
    _last_fill: float | None = None  # when a PromoteTick last tried to fill up
    _fill_backoff: float = 1.0  # times fill_interval until the next fill-up round
    _filled_to: int = -1  # the active view's size at the last fill-up round
    _fill_left: int = 0  # more peers this fill-up round may ask after a refusal
    _started: bool = False

    # -- entry point ----------------------------------------------------------------------

    def handle(self, now: float, event: object) -> list:
        """Apply one event; return the effects the host must carry out."""
        out: list = []
        if not self._started:
            self._started = True
            c = self.config
            # Spread the first shuffles so nodes started together do not shuffle in lockstep.
            out.append(SetTimer(c.shuffle_interval * (0.5 + self.rng.random()), ShuffleTick()))
            out.append(SetTimer(c.reconnect_interval * (0.5 + self.rng.random()), ReconnectTick()))
            out.append(SetTimer(c.promote_interval * (0.5 + self.rng.random()), PromoteTick()))
        kind = type(event)
        if kind is Receive:
            handler = _DISPATCH.get(type(event.message))
            if handler is not None:
                handler(self, now, event.peer, event.message, out)
        elif kind is TimerFired:
            self._on_timer(now, event.timer, out)
        elif kind is PeerFailed:
            known = self.active_view.get(event.peer)
            if event.incarnation is None or known is None or event.incarnation >= known:
                self._on_peer_failed(now, event.peer, out)
        elif kind is JoinVia:
            self._join(event.contact, out)
        elif kind is KnownPeers:
            self._on_known(now, event.peers, out)
        return out

    # -- views ----------------------------------------------------------------------------

    def depends_on(self, peer: Peer) -> bool:
        """Whether a broken connection to ``peer`` is news: it is an active peer, or we
        are waiting for its answer. (A link we closed ourselves after a DISCONNECT is not:
        the peer stays a good passive candidate.)"""
        return peer in self.active_view or peer in self._pending

    def waiting_on(self, peer: Peer) -> bool:
        """Whether we wait for ``peer``'s answer to a NEIGHBOR request: a request that
        bounced (its datagram came back undeliverable) is then a failure of that peer."""
        return peer in self._pending

    def _add_passive(self, peer: Peer, prefer_drop: tuple = ()) -> None:
        if peer == self.me or peer in self.active_view or peer in self._passive_set:
            return
        if len(self.passive_view) >= self.config.passive_size:
            # Paper, SHUFFLE: drop first what we just sent away, so the sample is an exchange.
            victim = None
            for candidate in prefer_drop:
                if candidate in self._passive_set:
                    victim = candidate
                    break
            if victim is None:
                victim = self.passive_view[self.rng.randrange(len(self.passive_view))]
            self._remove_passive(victim)
        self.passive_view.append(peer)
        self._passive_set.add(peer)

    def _remove_passive(self, peer: Peer) -> None:
        if peer in self._passive_set:
            self._passive_set.discard(peer)
            self.passive_view.remove(peer)

    def _add_active(self, peer: Peer, incarnation: int, out: list) -> None:
        if peer == self.me:
            return
        if peer in self.active_view:
            if incarnation > self.active_view[peer]:
                # The peer restarted: its old link is gone, this is a new one.
                self.active_view[peer] = incarnation
                out.append(NeighborDown(peer))
                out.append(NeighborUp(peer))
            return
        if len(self.active_view) >= self.config.active_size:
            self._drop_random_active(out)
        self._remove_passive(peer)
        self._pending.pop(peer, None)
        self.failed.pop(peer, None)
        self._tried.clear()
        self._asked_alone.clear()
        self._join_failures = 0
        self._fill_backoff, self._filled_to = 1.0, -1  # the view changed: fill up as usual
        self.active_view[peer] = incarnation
        out.append(NeighborUp(peer))

    def _drop_random_active(self, out: list) -> None:
        peers = list(self.active_view)
        victim = peers[self.rng.randrange(len(peers))]
        self._remove_active(victim, out)
        self._goodbye(victim, out)
        self._add_passive(victim)

    def _goodbye(self, peer: Peer, out: list) -> None:
        """Tell ``peer`` we dropped the link (it keeps us as a passive peer), then close it."""
        out.append(Send(peer, Disconnect(self.incarnation, True)))
        out.append(CloseLink(peer))

    def _remove_active(self, peer: Peer, out: list) -> bool:
        if peer not in self.active_view:
            return False
        del self.active_view[peer]
        out.append(NeighborDown(peer))
        self._fill_backoff, self._filled_to = 1.0, -1  # the view changed: fill up as usual
        return True

    # -- join -----------------------------------------------------------------------------

    def _join(self, contact: Peer, out: list) -> None:
        if contact == self.me:
            return
        if contact not in self.contacts:
            self.contacts.append(contact)
        self._attempts += 1
        self._pending[contact] = _Pending(self._attempts, True, False, join=True)
        out.append(Send(contact, Join(self.incarnation)))
        out.append(SetTimer(self.config.neighbor_timeout, NeighborTimeout(contact, self._attempts)))

    def _on_join(self, now: float, peer: Peer, msg: Join, out: list) -> None:
        self._add_active(peer, msg.incarnation, out)
        # Answer so the joiner has the contact in its active view too (the paper leaves
        # this to TCP; an accepted NEIGHBOR_REPLY makes the link symmetric explicitly).
        out.append(Send(peer, NeighborReply(self.incarnation, True)))
        for other in self.active_view:
            if other != peer:
                out.append(Send(other, ForwardJoin(peer, msg.incarnation, self.config.arwl)))

    def _on_forward_join(self, now: float, peer: Peer, msg: ForwardJoin, out: list) -> None:
        joiner = msg.joiner
        if joiner == self.me:
            return
        if msg.ttl == 0 or len(self.active_view) <= 1:
            if joiner not in self.active_view:
                self._add_active(joiner, msg.incarnation, out)
                out.append(Send(joiner, Neighbor(self.incarnation, True)))
            return
        if msg.ttl == self.config.prwl:
            self._add_passive(joiner)
        candidates = [p for p in self.active_view if p != peer and p != joiner]
        if not candidates:
            if joiner not in self.active_view:
                self._add_active(joiner, msg.incarnation, out)
                out.append(Send(joiner, Neighbor(self.incarnation, True)))
            return
        nxt = candidates[self.rng.randrange(len(candidates))]
        out.append(Send(nxt, ForwardJoin(joiner, msg.incarnation, msg.ttl - 1)))

    def _on_known(self, now: float, peers: tuple, out: list) -> None:
        """The office's members (a restarted node has them from its stored state at once):
        kept, and put in the passive view while it has room. A node whose seeds are gone
        then still finds the office, as Serf rejoins the members in its snapshot."""
        self.known = [p for p in dict.fromkeys(peers) if p != self.me]
        self._recall_known()
        if not self.active_view and not self._pending:
            self._fill_active(now, out)

    def _recall_known(self) -> None:
        # Only into free room: what a shuffle brought is fresher than what the state says.
        # A random sample of them: every node of a big office knows the same list, and
        # its first entries would be everyone's first choice when alone.
        room = self.config.passive_size - len(self.passive_view)
        if room <= 0:
            return
        candidates = [
            p for p in self.known if p not in self._passive_set and p not in self.active_view
        ]
        for peer in self._sample(candidates, room):
            self._add_passive(peer)

    # -- neighbor -------------------------------------------------------------------------

    def _on_neighbor(self, now: float, peer: Peer, msg: Neighbor, out: list) -> None:
        if peer in self.active_view:
            self._add_active(peer, msg.incarnation, out)  # refreshes the incarnation
            out.append(Send(peer, NeighborReply(self.incarnation, True)))
            return
        accept = msg.high_priority or len(self.active_view) < self.config.active_size
        if accept:
            self._add_active(peer, msg.incarnation, out)
        else:
            self._add_passive(peer)
        out.append(Send(peer, NeighborReply(self.incarnation, accept)))

    def _on_neighbor_reply(self, now: float, peer: Peer, msg: NeighborReply, out: list) -> None:
        pending = self._pending.pop(peer, None)
        if msg.accepted:
            if pending is None:
                if peer not in self.active_view:
                    # We gave up on this request (timeout) or dropped the link since:
                    # tell the peer, or it would keep a one-sided link.
                    out.append(Send(peer, Disconnect(self.incarnation, True)))
                return
            self._add_active(peer, msg.incarnation, out)
            if pending is not None and pending.reconnect:
                # The peer is back: others lost at the same time probably are too. Let the
                # normal machinery pick them up from the passive view instead of forcing more.
                for lost in list(self.failed):
                    self._add_passive(lost)
                self.failed.clear()
            return
        if pending is None:
            return
        # Rejected: keep it as a passive candidate. Below the minimum, try another one at
        # once (each refuser once); above it, another while the fill-up round has tries
        # left, then the next round.
        self._tried.add(peer)
        self._add_passive(peer)
        if len(self.active_view) < self.config.active_min:
            self._fill_active(now, out)
        elif self._fill_left > 0 and not pending.reconnect:
            self._fill_left -= 1
            self._fill_active(now, out)

    def _request_neighbor(
        self, peer: Peer, out: list, *, high: bool, reconnect: bool = False
    ) -> None:
        self._attempts += 1
        self._pending[peer] = _Pending(self._attempts, high, reconnect)
        out.append(Send(peer, Neighbor(self.incarnation, high)))
        out.append(SetTimer(self.config.neighbor_timeout, NeighborTimeout(peer, self._attempts)))

    def _fill_active(self, now: float, out: list, exclude: set = frozenset()) -> None:
        """Promote passive peers until the active view plus outstanding requests is full."""
        wanted = self.config.active_size - len(self.active_view) - self._ordinary_pending()
        if wanted <= 0:
            return
        # Who refused a low-priority request may not refuse a high-priority one.
        tried = self._tried if self.active_view else ()
        candidates = [p for p in self.passive_view if p not in self._pending and p not in tried]
        if self.active_view or any(p not in exclude for p in candidates):
            # Do not ask straight back whoever just let go of us, unless it is all we know.
            candidates = [p for p in candidates if p not in exclude]
        self.rng.shuffle(candidates)
        for peer in candidates[:wanted]:
            # Only a node with no neighbour at all asks with high priority (paper), and one
            # such request at a time: each one makes its receiver evict a neighbour.
            high = not self.active_view and not any(
                p.high_priority and not p.reconnect for p in self._pending.values()
            )
            self._request_neighbor(peer, out, high=high)

    def _ordinary_pending(self) -> int:
        return sum(1 for p in self._pending.values() if not p.reconnect)

    # -- disconnect and failure -----------------------------------------------------------

    def _on_disconnect(self, now: float, peer: Peer, msg: Disconnect, out: list) -> None:
        known = self.active_view.get(peer)
        if known is None or msg.incarnation < known:
            return  # a late DISCONNECT from before the peer restarted: not about this link
        self._remove_active(peer, out)
        out.append(CloseLink(peer))
        if msg.alive:
            self._add_passive(peer)
        else:
            self._remove_passive(peer)
        # A peer that let go of us is not a failure: refill only below the minimum (the
        # paper does not refill here at all; an emptied view must not stay empty).
        if len(self.active_view) < self.config.active_min:
            self._fill_active(now, out, exclude={peer})

    def _on_peer_failed(self, now: float, peer: Peer, out: list) -> None:
        was_active = self._remove_active(peer, out)
        if was_active:
            # Failure detection can be wrong on one side only (a timeout of an older
            # attempt, a keepalive lost in a partition): say goodbye, best effort, so a
            # peer that is alive after all does not keep a one-sided link.
            self._goodbye(peer, out)
        pending = self._pending.pop(peer, None)
        self._remove_passive(peer)
        if was_active:
            # (A reconnect attempt that fails keeps the peer's original time of failure,
            # so it is forgotten reconnect_timeout after it was lost.)
            self._remember_failed(now, peer)
        if was_active or pending is not None:
            self._fill_active(now, out)
        if pending is not None and pending.join and not self.active_view:
            # The seed is not up yet (nodes of an office often boot together): try it
            # again soon, then less and less often, as Serf's retry_join does.
            c = self.config
            delay = min(c.join_retry_max, c.join_retry_min * 2**self._join_failures)
            self._join_failures += 1
            out.append(SetTimer(delay, JoinRetry(peer)))
        elif not self.active_view and not self._pending and self.contacts:
            # Every link and every passive peer failed (our own connections were all
            # restarted, or the office went down around us): join again at once.
            self._join(self.contacts[0], out)
        if not self.active_view:
            self._ask_lost_peer(peer, out)  # besides the contacts, which may be gone too

    def _ask_lost_peer(self, just_failed: Peer, out: list) -> None:
        """Alone, and nobody left in the passive view to ask: ask a peer we lost earlier
        at once, one at a time, each once until a link stands. Otherwise only the reconnect
        tick asks them: one lost peer every ``reconnect_interval``, picked at random. Two
        nodes of a small office that knew each other only as lost peers (their link broke
        while a third held them together) stayed apart 7.6-24.2 s when the third died (it
        was their only contact, and the ticks asked it as often as each other)."""
        self._asked_alone.add(just_failed)  # it has just failed: the reconnect tick retries it
        if any(not p.join for p in self._pending.values()):
            return  # a passive peer or a lost one is being asked
        peer = self._request_lost_peer(out, skip=self._asked_alone)
        if peer is not None:
            self._asked_alone.add(peer)

    def _request_lost_peer(self, out: list, skip: set | frozenset = frozenset()) -> Peer | None:
        """Ask one lost peer, at random, not already asked nor in ``skip``, to link again
        (high priority: a reconnect); the one asked, or None."""
        candidates = [p for p in self.failed if p not in self._pending and p not in skip]
        if not candidates:
            return None
        peer = candidates[self.rng.randrange(len(candidates))]
        self._request_neighbor(peer, out, high=True, reconnect=True)
        return peer

    def _remember_failed(self, now: float, peer: Peer) -> None:
        self.failed.pop(peer, None)
        self.failed[peer] = now
        while len(self.failed) > self.config.reconnect_size:
            del self.failed[next(iter(self.failed))]

    # -- shuffle --------------------------------------------------------------------------

    def _sample(self, seq, k: int) -> list:
        seq = list(seq)
        return seq if len(seq) <= k else self.rng.sample(seq, k)

    def _shuffle(self, out: list) -> None:
        if not self.active_view:
            return
        c = self.config
        nodes = (
            [self.me]
            + self._sample(self.active_view, c.shuffle_active)
            + self._sample(self.passive_view, c.shuffle_passive)
        )
        if self.passive_view and self.rng.random() < c.shuffle_with_passive:
            # A direct exchange with a passive peer (as Cyclon does): a random walk never
            # leaves the component it starts in, this can; and it weeds out dead entries.
            target = self.passive_view[self.rng.randrange(len(self.passive_view))]
            ttl = 1
            self._awaiting_reply = target
            out.append(SetTimer(c.shuffle_reply_timeout, ShuffleReplyTimeout(target)))
        else:
            peers = list(self.active_view)
            target = peers[self.rng.randrange(len(peers))]
            ttl = c.shuffle_ttl
        out.append(Send(target, Shuffle(self.me, ttl, tuple(nodes))))
        self._last_shuffle = tuple(nodes)

    def _on_shuffle(self, now: float, peer: Peer, msg: Shuffle, out: list) -> None:
        if msg.origin == self.me:
            return
        ttl = msg.ttl - 1
        if ttl > 0 and len(self.active_view) > 1:
            candidates = [p for p in self.active_view if p != peer and p != msg.origin]
            if candidates:
                nxt = candidates[self.rng.randrange(len(candidates))]
                out.append(Send(nxt, Shuffle(msg.origin, ttl, msg.nodes)))
                return
        reply = tuple(self._sample(self.passive_view, len(msg.nodes)))
        # Straight to the origin (the paper: a temporary connection; a node: a datagram).
        out.append(Send(msg.origin, ShuffleReply(reply)))
        for node in msg.nodes:
            self._add_passive(node, prefer_drop=reply)

    def _on_shuffle_reply(self, now: float, peer: Peer, msg: ShuffleReply, out: list) -> None:
        if peer == self._awaiting_reply:
            self._awaiting_reply = None
        for node in msg.nodes:
            self._add_passive(node, prefer_drop=self._last_shuffle)

    # -- timers ---------------------------------------------------------------------------

    def _on_timer(self, now: float, timer: object, out: list) -> None:
        kind = type(timer)
        c = self.config
        if kind is ShuffleTick:
            self._shuffle(out)
            out.append(SetTimer(c.shuffle_interval, timer))
        elif kind is ShuffleReplyTimeout:
            if timer.peer == self._awaiting_reply:
                # Silent: it is gone, or was, for all we can tell (a live one comes back
                # with the next shuffle that names it).
                self._awaiting_reply = None
                self._remove_passive(timer.peer)
        elif kind is NeighborTimeout:
            pending = self._pending.get(timer.peer)
            if pending is not None and pending.attempt == timer.attempt:
                # No answer in time: as good as a rejection from a dead node.
                self._on_peer_failed(now, timer.peer, out)
        elif kind is PromoteTick:
            # Fill up towards active_size, not just the minimum: low-priority requests
            # only take free slots, so this never evicts, but it lets links form between
            # nodes with room, which is what stops a small island from staying one.
            below_min = len(self.active_view) < c.active_min
            wait = c.fill_interval * self._fill_backoff
            due = self._last_fill is None or now - self._last_fill >= wait
            if len(self.active_view) < c.active_size and (below_min or due):
                if not below_min and len(self.active_view) <= self._filled_to:
                    self._fill_backoff = min(c.fill_backoff_max, 2 * self._fill_backoff)
                self._filled_to = len(self.active_view)
                self._last_fill = now
                self._tried.clear()  # a while has passed: those who refused may have room
                self._fill_left = c.fill_tries - 1  # the first ask is this one
                if not self.active_view and not self.passive_view:
                    # Alone, and everyone we knew failed: the office's members again, each
                    # tick (while alone, each one that is down costs a request a tick).
                    self._recall_known()
                self._fill_active(now, out)
                if len(self.active_view) < c.active_min and not self._pending and self.contacts:
                    # Below the minimum and nobody in the passive view to ask: join again,
                    # like Serf's retry_join, through the contacts we were given in turn.
                    # (A pair that only knows each other is an island no other rule breaks.)
                    contact = self.contacts.pop(0)
                    self._join(contact, out)
            out.append(SetTimer(c.promote_interval, timer))
        elif kind is JoinRetry:
            if not self.active_view and timer.contact not in self._pending:
                self._join(timer.contact, out)
        elif kind is ReconnectTick:
            self._reconnect(now, out)
            out.append(SetTimer(c.reconnect_interval, timer))

    def _reconnect(self, now: float, out: list) -> None:
        """Serf-style: retry one peer that failed, in case the failure was a partition."""
        horizon = now - self.config.reconnect_timeout
        for peer, since in list(self.failed.items()):
            if since < horizon or peer in self.active_view:
                del self.failed[peer]
        self._request_lost_peer(out)


_DISPATCH = {
    Join: HyParView._on_join,
    ForwardJoin: HyParView._on_forward_join,
    Neighbor: HyParView._on_neighbor,
    NeighborReply: HyParView._on_neighbor_reply,
    Disconnect: HyParView._on_disconnect,
    Shuffle: HyParView._on_shuffle,
    ShuffleReply: HyParView._on_shuffle_reply,
}
