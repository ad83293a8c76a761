"""The actors that hold the protocols, and the peer connection worker between them.

``Membership`` holds the HyParView object and knows which connection worker reaches
which peer; ``Gossip`` holds the Plumtree object and the client subscriptions;
``PeerWorker`` is one TCP connection to another node. A dropped connection is a
membership event: it becomes HyParView's ``PeerFailed``.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
from collections import Counter, deque
from datetime import timedelta
from itertools import islice
from typing import Any

from loguru import logger
from thespian.actors import WakeupMessage, WatchMessage

from actors.base import SatelliteActor
from actors.connection import (
    SEND_QUEUE_MAX,
    Connection,
    Pipe,
    PipeFor,
    SendFrames,
    WantPipe,
    send_buffered,
    split_addr,
    start_worker,
)
from protocols import hyparview, link, plumtree, wire
from protocols.datagram import MAX_DATAGRAM, DatagramError, Postbox, by_datagram
from protocols.events import (
    Broadcast,
    CloseLink,
    Deliver,
    JoinVia,
    KnownPeers,
    NeighborDown,
    NeighborUp,
    PeerFailed,
    Receive,
    Send,
    SetTimer,
    TimerFired,
)
from protocols.secure import Sealer

HYPARVIEW = frozenset(hyparview.MESSAGES)
# What Gossip keeps of the events it delivered, for ``satellite chaos`` (which reads it
# every second, and publishes 5 a second): bounded in bytes, not in events, so that neither
# many small events (20,000 of 50 bytes held 4.25 MiB) nor fewer large ones (up to 256 KiB
# each) grow a node. About 1,100 small events.
DELIVERY_LOG_BYTES = 256 << 10
# An entry beyond its name and data: the tuple, the number, the str and bytes headers and
# the deque's slot (CPython 3.11-3.13, 64-bit: 64 + 28 + 41 + 33 + 8, rounded up).
DELIVERY_ENTRY_COST = 180
DELIVERY_PAGE_BYTES = 256 << 10  # per answer to ``delivered``, well under a frame (1 MiB)
DELIVERY_PAGE_EVENTS = 2000
# A connection that carries no link and nothing of ours this long is closed: a temporary
# one is written and closed in milliseconds, a NEIGHBOR answered within its 2 s.
STRAY_AFTER = 5.0
# Linux: report datagrams that come back undeliverable on the socket's error queue
# (<linux/in.h>; Python's socket module does not name it), and read that queue.
IP_RECVERR = 11
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)


class PublishDelta:
    """From State: broadcast this StateDelta frame to the office."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame


class DeltaArrived:
    """To State: state deltas that came over Plumtree, in delivery order (all those of
    one Gossip step in one actor message)."""

    def __init__(self, batch: list[bytes]) -> None:
        self.batch = batch


class Deliveries:
    """To a ClientWorker without a pipe: the frames of the events of one Gossip step it
    subscribed to, in order."""

    def __init__(self, frames: bytes) -> None:
        self.frames = frames


class PipeEnd:
    """Gossip's end of one worker's pipe and, once the worker handed it over
    (``link.Handover``), the sending side of the worker's connection."""

    __slots__ = (
        "pipe", "inbox", "peer", "worker", "key", "passed", "sock", "sealer", "out", "closing",
        "waiting",
    )

    def __init__(self, pipe: Pipe, peer: str | None, worker: Any) -> None:
        self.pipe, self.peer, self.worker, self.key = pipe, peer, worker, str(worker)
        self.inbox = bytearray()  # from the pipe, the start of a frame still on its way
        self.passed: list[int] = []  # descriptors come through the pipe, until claimed
        self.sock: socket.socket | None = None  # the connection, once handed over
        self.sealer: Sealer | None = None  # its channel's sending half, with a cluster key
        self.out = bytearray()  # for the connection, what its socket did not take yet
        self.waiting = bytearray()  # our frames for it until the handover, in order
        self.closing = False  # the worker asked to close once ``out`` is written

    @property
    def handed(self) -> bool:
        return self.sock is not None


class DelayedWrite:
    """Gossip's timer payload: frames for a link, held back by ``satellite chaos``."""

    def __init__(self, key: str, frames: bytes) -> None:
        self.key, self.frames = key, frames


class NotifyClients:
    """From State: tell this node's subscribers of ``delivery.name`` (no broadcast)."""

    def __init__(self, delivery: link.Delivery) -> None:
        self.delivery = delivery


class Members:
    """From Membership to State: the member list changed (for the office snapshot)."""

    def __init__(self, members: list[dict]) -> None:
        self.members = members


class EagerPeers:
    """From Gossip to State: Plumtree's eager peers changed (the node's tree links), or
    whether any client here follows the ``data`` stream (no one: State spares the work)."""

    def __init__(self, peers: list[str], data_wanted: bool) -> None:
        self.peers, self.data_wanted = peers, data_wanted


class DeliveryLog:
    """The events this node delivered, numbered from 1, oldest first. The oldest go once
    the names and data kept, each entry counted ``DELIVERY_ENTRY_COST`` more, pass
    ``budget`` bytes; the newest entry always stays."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: deque[tuple[str, bytes]] = deque()
        self.bytes = 0
        self.last = 0  # the number of the newest entry (0: none yet)

    def append(self, name: str, data: bytes) -> None:
        self.entries.append((name, data))
        self.last += 1
        self.bytes += len(name) + len(data) + DELIVERY_ENTRY_COST
        while self.bytes > self.budget and len(self.entries) > 1:
            old_name, old_data = self.entries.popleft()
            self.bytes -= len(old_name) + len(old_data) + DELIVERY_ENTRY_COST

    @property
    def first(self) -> int:
        """The number of the oldest entry kept (``last + 1`` when there is none)."""
        return self.last + 1 - len(self.entries)

    def page(self, since: int, most: int, most_bytes: int) -> list[list]:
        """``[number, name, data]`` of the entries after number ``since``, oldest first:
        at most ``most`` of them and ``most_bytes`` of names and data, but at least one."""
        number = max(since + 1, self.first)
        out: list[list] = []
        size = 0
        for name, data in islice(self.entries, number - self.first, None):
            size += len(name) + len(data)
            if out and (len(out) >= most or size > most_bytes):
                break
            out.append([number, name, data])
            number += 1
        return out


_COUNTER_NAMES: dict[tuple[str, type, str], str] = {}


def counter_name(prefix: str, kind: type, what: str) -> str:
    """``plumtree_graft_sent`` for (``plumtree``, Graft, ``sent``), made once."""
    key = (prefix, kind, what)
    name = _COUNTER_NAMES.get(key)
    if name is None:
        name = _COUNTER_NAMES[key] = f"{prefix}_{kind.__name__.lower()}_{what}"
    return name


def count_messages(counters: Counter, prefix: str, effects: list) -> None:
    """Per message type sent, e.g. ``plumtree_graft_sent``: what /metrics shows."""
    for effect in effects:
        if type(effect) is Send:
            counters[counter_name(prefix, type(effect.message), "sent")] += 1


class ControlRequest:
    """From a ClientWorker to Membership: an operator's ``join`` or ``block``."""

    def __init__(self, command: str, args: Any, token: Any) -> None:
        self.command, self.args, self.token = command, args, token


class Unreachable:
    """Membership to itself: a blocked peer counts as failed (later, not mid-effects)."""

    def __init__(self, peer: str) -> None:
        self.peer = peer


class Faults:
    """From Membership to every PeerWorker: drop this share of outgoing batches and hold
    the rest back this long (``satellite chaos`` without root or network namespaces)."""

    def __init__(self, loss: float = 0.0, delay_ms: int = 0) -> None:
        self.loss, self.delay_ms = loss, delay_ms

    @property
    def active(self) -> bool:
        return self.loss > 0 or self.delay_ms > 0

    def hold(self, rng: random.Random) -> timedelta | None:
        """What happens to one outgoing batch: None, lost on the way (Plumtree and
        anti-entropy must repair it); else how long it is held back (zero: not)."""
        if rng.random() < self.loss:
            return None
        return timedelta(milliseconds=self.delay_ms)


class WorkerExited:
    """From a connection-worker supervisor (its ``notify`` arg): that worker is gone,
    maybe SIGKILLed, and could not say goodbye itself."""

    def __init__(self, address: Any) -> None:
        self.address = address


PLUMTREE = frozenset(plumtree.MESSAGES)
# A peer worker passes Plumtree's frames to Gossip undecoded, and Gossip checks them: a
# frame decoded in each of them cost twice, the worker's half on the way of every hop.
PLUMTREE_TAGS = wire.tags_of(PLUMTREE)
LOCAL = frozenset({link.Handover, link.Outgoing})  # a worker to Gossip, about its connection


# --- messages between the node's actors -------------------------------------------------------


class PeerUp:
    def __init__(self, peer: str, hello: link.Hello, worker: Any) -> None:
        self.peer, self.hello, self.worker = peer, hello, worker


class PeerGone:
    def __init__(self, peer: str, worker: Any) -> None:
        self.peer, self.worker = peer, worker


class FromPeer:
    """What one read of a peer's socket brought for one actor, in order: one actor
    message per read, not per frame (each actor hop costs about half a millisecond)."""

    def __init__(self, peer: str, messages: list) -> None:
        self.peer, self.messages = peer, messages


class Link:
    """Membership tells Gossip which worker now carries a neighbour (None: gone)."""

    def __init__(self, peer: str, worker: Any) -> None:
        self.peer, self.worker = peer, worker


class Query:
    """A question for an actor; the answer goes back to ``sender`` as ``Answer``."""

    def __init__(self, what: str, token: Any) -> None:
        self.what, self.token = what, token


class Answer:
    def __init__(self, what: str, token: Any, body: Any) -> None:
        self.what, self.token, self.body = what, token, body


class FromClient:
    """From a ClientWorker that closes before its pipe came: the frames (Subscribe,
    Publish) it had for the pipe, to be read as if they came through it."""

    def __init__(self, frames: bytes) -> None:
        self.frames = frames


class Subscribed:
    """From Gossip to a ClientWorker: its client's Subscribe is in effect. The worker
    holds the client's later requests until then: a snapshot (a "state" request, which
    State answers) taken before the subscription took effect could miss a change that
    reached State after the snapshot and Gossip before the Subscribe did (the Subscribe
    waits for the pipe), and the client would never hear of it."""


class ClientGone:
    def __init__(self, worker: Any) -> None:
        self.worker = worker


def timer_delay(effect: SetTimer) -> timedelta:
    return timedelta(seconds=max(0.0, effect.delay))


# --- Membership ----------------------------------------------------------------------------------


class Membership(SatelliteActor):
    def init(self, args: dict) -> None:
        self.me = args["peer"]
        self.incarnation = args["incarnation"]
        self.hv = hyparview.HyParView(self.me, random.Random(), self.incarnation)
        self.workers: dict[str, list] = {}  # peer -> connection workers, first one sends
        self.names: dict[str, str] = {}  # peer -> node id, from its Hello
        self.outbox: dict[str, bytearray] = {}  # frames for peers we are connecting to
        self.dialled: set[str] = set()  # outbox peers a worker was asked to dial
        self.one_shot: set[str] = set()  # outbox peers whose connection closes once written
        self.closing: set[str] = set()  # workers told to close: their goodbye is no news
        self.up_since: dict[str, float] = {}  # str(worker) -> when its Hello came
        self.dialer_seen = str(self.context.get("peer_workers"))
        self.counters: Counter = Counter()
        self.members_told: list | None = None  # what State last heard
        self.blocked: set[str] = set()  # peers cut off by an operator (a partition drill)
        self.faults = Faults()  # loss and delay injected on our outgoing peer traffic
        self.rng = random.Random()
        # One-shot messages (SHUFFLE replies to non-neighbours, direct SHUFFLEs with a
        # passive peer) go by datagram, on the peer port's number (protocols/datagram.py
        # says why). Injected loss applies to them too; injected delay only to links.
        self.postbox = Postbox(self.context.get("keyring"))
        self.udp = self._open_udp(args.get("bind") or self.me)
        self.watching = [self.udp.fileno()] if self.udp is not None else []
        self.apply(self.hv.handle(time.monotonic(), TimerFired(hyparview.PromoteTick())))
        for seed in args.get("join", []):
            if seed != self.me:
                self.apply(self.hv.handle(time.monotonic(), JoinVia(seed)))

    def _open_udp(self, bind: str) -> socket.socket | None:
        """A UDP socket on the peer port's address, or None (one-shot messages then take a
        temporary connection, as before): a node still works without it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(split_addr(bind))
        except OSError as exc:
            sock.close()
            logger.warning(
                "[{}] Membership: no datagrams on UDP {} ({}); shuffles and their replies "
                "take temporary connections",
                self.node_id,
                bind,
                exc.strerror or exc,
            )
            return None
        sock.setblocking(False)
        try:
            # Datagrams that come back undeliverable (ICMP port unreachable: the node
            # is down) are queued for us to read, as a dial would be reset.
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        except OSError:  # not Linux: a request to a dead node waits its timeout
            pass
        return sock

    def stopping(self) -> None:
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        self.watching = []

    def read_datagrams(self, now: float) -> None:
        for _ in range(64):  # then Thespian's loop has a turn; the rest wait in the socket
            try:
                data, addr = self.udp.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # one of ours came back (the error is reported once)
                self.read_bounces(now)
                continue
            try:
                sender, message = self.postbox.open(data, int(time.time() * 1000))
            except DatagramError as exc:
                self.counters["datagrams_refused"] += 1
                logger.warning(
                    "[{}] Membership: datagram from {}:{} refused: {}", self.node_id, *addr, exc
                )
                continue
            if sender in self.blocked or sender == self.me:
                continue
            self.counters["datagrams_received"] += 1
            self.receive(now, sender, message)

    def read_bounces(self, now: float) -> None:
        """Datagrams of ours that came back undeliverable: a NEIGHBOR request among them
        failed as a dial to a crashed node does (reset), not after ``neighbor_timeout``
        (protocols/datagram.py, ``by_datagram``, says what that cost). Anything else
        bounced is left alone: a link notices for itself, and a shuffle is best effort."""
        while True:
            try:
                _, _, _, address = self.udp.recvmsg(1, 1024, MSG_ERRQUEUE)
            except OSError:  # the queue is empty (or there is none)
                return
            if not (isinstance(address, tuple) and len(address) >= 2):
                continue
            self.counters["datagrams_bounced"] += 1
            peer = f"{address[0]}:{address[1]}"
            if self.hv.waiting_on(peer):
                self.apply(self.hv.handle(now, PeerFailed(peer)))

    def receive(self, now: float, peer: str, message: Any) -> None:
        """One HyParView message from ``peer``, by link or by datagram."""
        self.counters[f"hyparview_{type(message).__name__.lower()}_received"] += 1
        self.apply(self.hv.handle(now, Receive(peer, message)))

    def post(self, peer: str, message: Any) -> bool:
        """Send ``message`` to ``peer`` as a datagram; False if it must take a connection."""
        if self.udp is None or peer in self.blocked:
            return False
        try:
            data = self.postbox.seal(self.me, message, int(time.time() * 1000), os.urandom(12))
        except ValueError:
            return False
        if self.faults.loss and self.rng.random() < self.faults.loss:
            self.counters["datagrams_dropped_by_faults"] += 1
            return True
        try:
            self.udp.sendto(data, split_addr(peer))
        except OSError as exc:  # lost, as a datagram may be: the next shuffle makes up
            self.counters["datagrams_unsent"] += 1
            logger.debug("[{}] Membership: datagram to {}: {}", self.node_id, peer, exc)
            return True
        self.counters["datagrams_sent"] += 1
        return True

    def on_context(self) -> None:
        dialer = self.context.get("peer_workers")
        if dialer is not None and str(dialer) != self.dialer_seen:
            # A new worker supervisor: the old one took its workers down with it, and
            # what we asked it to dial is lost. Every link of ours is gone.
            first = self.dialer_seen == "None"
            self.dialer_seen = str(dialer)
            self.dialled.clear()
            if not first:
                now = time.monotonic()
                for peer, workers in list(self.workers.items()):
                    for worker in list(workers):
                        self._peer_gone(now, PeerGone(peer, worker))
        for peer in list(self.outbox):
            if peer not in self.dialled:
                self._dial(peer)
        # Gossip or State restarted: tell them every link we hold, and State the members.
        for peer in self.hv.active_view:
            if peer in self.workers:
                self._tell_link(peer, self.workers[peer][0])
        self.members_told = None
        self._tell_members()

    def _tell_members(self) -> None:
        members = self.answer("members")
        state = self.context.get("state")
        if members != self.members_told and state is not None:
            self.members_told = members
            self.send(state, Members(members))

    def _tell_link(self, peer: str, worker: Any) -> None:
        """The actors that talk to neighbours (Gossip, State) learn which worker reaches
        ``peer`` (None: the link is gone)."""
        for name in ("gossip", "state"):
            target = self.context.get(name)
            if target is not None:
                self.send(target, Link(peer, worker))

    def handle(self, msg: Any, sender: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, FromPeer):
            for message in msg.messages:
                if type(message) in HYPARVIEW:
                    self.receive(now, msg.peer, message)
        elif isinstance(msg, WakeupMessage):
            timer = msg.payload
            asked = timer.peer if type(timer) is hyparview.NeighborTimeout else None
            timing_out = asked is not None and self.hv.waiting_on(asked)
            self.apply(self.hv.handle(now, TimerFired(timer)))
            if timing_out and not self.hv.waiting_on(asked):
                # Given up as unanswered (a timer of an older request to the same peer
                # leaves the newer one pending: not counted).
                self.counters["hyparview_neighbor_timeouts"] += 1
            if type(timer) is hyparview.PromoteTick:  # every 5 s
                self._close_strays(now)
        elif isinstance(msg, WatchMessage):
            if self.udp is not None:
                self.read_datagrams(now)
        elif isinstance(msg, Query):
            self.send(sender, Answer(msg.what, msg.token, self.answer(msg.what)))
            return
        elif isinstance(msg, PeerUp):
            self._peer_up(msg)
        elif isinstance(msg, PeerGone):
            self._peer_gone(now, msg)
        elif isinstance(msg, WorkerExited):
            self._worker_exited(now, msg.address)
        elif isinstance(msg, ControlRequest):
            self.send(sender, Answer("control", msg.token, self.control(now, msg)))
        elif isinstance(msg, KnownPeers):  # from State
            self.apply(self.hv.handle(now, msg))
        elif isinstance(msg, Unreachable):
            if msg.peer in self.blocked:
                self.apply(self.hv.handle(now, PeerFailed(msg.peer)))
        self._tell_members()

    def control(self, now: float, msg: ControlRequest) -> Any:
        """``join`` [addr...]: contact these seeds (as ``serf join``). ``block`` [addr...]:
        drop every link to these peers and refuse new ones until the next ``block``
        (an empty list heals): a partition without root or network namespaces."""
        if msg.command == "faults":
            return self.set_faults(msg.args)
        peers = msg.args if isinstance(msg.args, list) else None
        if peers is None or not all(isinstance(p, str) and wire.is_peer_address(p) for p in peers):
            return {"error": f"{msg.command} takes a list of HOST:PORT peer addresses"}
        if msg.command == "join":
            for seed in peers:
                if seed != self.me:
                    self.apply(self.hv.handle(now, JoinVia(seed)))
            return {"joining": peers}
        if msg.command == "block":
            self.blocked = set(peers) - {self.me}
            blocked = sorted(self.blocked) or "none"
            logger.info("[{}] Membership: blocking {}", self.node_id, blocked)
            for peer in self.blocked:
                linked = peer in self.workers
                for worker in list(self.workers.get(peer, [])):
                    self._close_worker(peer, worker)
                if linked:
                    self.send(self.myAddress, Unreachable(peer))
                if self.outbox.pop(peer, None) is not None:
                    self.dialled.discard(peer)
                    self.send(self.myAddress, Unreachable(peer))
            return {"blocked": sorted(self.blocked)}
        return {"error": f"unknown command {msg.command!r}"}

    def set_faults(self, args: Any) -> dict:
        try:
            loss, delay_ms = float(args.get("loss", 0)), int(args.get("delay_ms", 0))
        except (AttributeError, TypeError, ValueError):
            return {"error": 'faults takes {"loss": 0..1, "delay_ms": 0..10000}'}
        if not (0 <= loss <= 1 and 0 <= delay_ms <= 10_000):
            return {"error": 'faults takes {"loss": 0..1, "delay_ms": 0..10000}'}
        self.faults = Faults(loss, delay_ms)
        logger.info("[{}] Membership: faults loss {} delay {} ms", self.node_id, loss, delay_ms)
        for workers in self.workers.values():
            for worker in workers:
                self.send(worker, self.faults)
        gossip = self.context.get("gossip")
        if gossip is not None:  # it writes the links handed over to it
            self.send(gossip, self.faults)
        return {"loss": loss, "delay_ms": delay_ms}

    def answer(self, what: str) -> Any:
        if what in ("members", "state"):
            out = [{"node": self.node_id, "addr": self.me, "status": "self"}]
            for peer in self.hv.active_view:
                out.append({"node": self.names.get(peer, "?"), "addr": peer, "status": "alive"})
            for peer in self.hv.passive_view:
                out.append({"node": self.names.get(peer, "?"), "addr": peer, "status": "known"})
            return out
        if what == "metrics":
            gauges = {
                "hyparview_active_view_size": len(self.hv.active_view),
                "hyparview_passive_view_size": len(self.hv.passive_view),
                "hyparview_connections": sum(len(w) for w in self.workers.values()),
            }
            return {"counters": dict(self.counters), "gauges": gauges}
        return {
            "peer": self.me,
            "incarnation": self.incarnation,
            "active_view": list(self.hv.active_view),
            "passive_view": list(self.hv.passive_view),
            "failed": list(self.hv.failed),  # lost peers the reconnect retries, oldest first
        }

    def _peer_up(self, msg: PeerUp) -> None:
        peer = msg.peer
        if peer in self.blocked:
            self.send(msg.worker, SendFrames(b"", close=True))
            return
        self.names[peer] = msg.hello.node
        workers = self.workers.setdefault(peer, [])
        if msg.worker not in workers:
            workers.append(msg.worker)
            self.up_since[str(msg.worker)] = time.monotonic()
            if self.faults.active:
                self.send(msg.worker, self.faults)
                if self.context.get("gossip") is not None:  # a restarted Gossip too
                    self.send(self.context["gossip"], self.faults)
        pending = self.outbox.pop(peer, None)
        self.dialled.discard(peer)
        one_shot = peer in self.one_shot and not self.hv.depends_on(peer)
        self.one_shot.discard(peer)
        if pending and one_shot:
            self._close_worker(peer, msg.worker, bytes(pending))
            return
        if pending:
            self.send(workers[0], SendFrames(bytes(pending)))
        if peer in self.hv.active_view:
            self._tell_link(peer, workers[0])

    def _worker_exited(self, now: float, address: Any) -> None:
        self.closing.discard(str(address))
        for peer, workers in list(self.workers.items()):
            if address in workers:
                self._peer_gone(now, PeerGone(peer, address))

    def _close_strays(self, now: float) -> None:
        """Close, with a DISCONNECT, each connection that has stood STRAY_AFTER seconds
        to a peer that is neither a neighbour nor being asked, with nothing of ours
        waiting for it. The other end may take it for a link: a dial of its own that
        came up after we had dropped it (seen at start-up, one node in four: a one-sided
        link kept up by keepalives alone, for as long as both ran)."""
        live = set()
        for peer, workers in list(self.workers.items()):
            live.update(str(w) for w in workers)
            if self.hv.depends_on(peer) or peer in self.outbox or peer in self.one_shot:
                continue
            for worker in list(workers):
                if now - self.up_since.get(str(worker), now) >= STRAY_AFTER:
                    self.counters["hyparview_stray_connections_closed"] += 1
                    goodbye = hyparview.Disconnect(self.hv.incarnation, True)
                    self._close_worker(peer, worker, wire.encode(goodbye))
        for key in [k for k in self.up_since if k not in live]:
            del self.up_since[key]

    def _close_worker(self, peer: str, worker: Any, last: bytes = b"") -> None:
        """Write ``last`` and close: from now on the worker carries nothing for anyone
        (an actor message to it after its exit would stall us in Thespian's retries)."""
        workers = self.workers.get(peer, [])
        if worker in workers:
            workers.remove(worker)
            if not workers:
                del self.workers[peer]
            if peer in self.hv.active_view:
                self._tell_link(peer, workers[0] if workers else None)
        self.closing.add(str(worker))
        self.send(worker, SendFrames(last, close=True))

    def _peer_gone(self, now: float, msg: PeerGone) -> None:
        if str(msg.worker) in self.closing:
            self.closing.discard(str(msg.worker))  # we closed it: no news
            return
        workers = self.workers.get(msg.peer, [])
        if msg.worker in workers:
            workers.remove(msg.worker)
        elif msg.peer not in self.outbox:
            return  # already heard of (the worker's own goodbye, then its exit notice)
        if workers:
            # Another connection to the same peer still stands (both dialled at once).
            if msg.peer in self.hv.active_view:
                self._tell_link(msg.peer, workers[0])
            return
        self.workers.pop(msg.peer, None)
        self.one_shot.discard(msg.peer)
        dialling = self.outbox.pop(msg.peer, None) is not None
        self.dialled.discard(msg.peer)
        if dialling or self.hv.depends_on(msg.peer):
            self.apply(self.hv.handle(now, PeerFailed(msg.peer)))

    def apply(self, effects: list) -> None:
        count_messages(self.counters, "hyparview", effects)
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                # A SHUFFLE, its reply, a low-priority NEIGHBOR and a refusal go by
                # datagram when they may (``by_datagram`` says when, and why); what waits
                # in the outbox for a dial stays behind what is queued there. Else a
                # message to a peer that is neither a neighbour nor being asked to become
                # one goes over a temporary connection, as the paper has it: closed once
                # written, or links would pile up.
                peer = effect.peer
                depends = self.hv.depends_on(peer)
                connected = bool(self.workers.get(peer))
                if (
                    peer not in self.outbox
                    and by_datagram(effect.message, depends, connected)
                    and self.post(peer, effect.message)
                ):
                    continue
                one_shot = not depends
                self._send(peer, wire.encode(effect.message), one_shot)
            elif kind is SetTimer:
                self.wakeupAfter(timer_delay(effect), payload=effect.timer)
            elif kind is CloseLink:
                for worker in list(self.workers.get(effect.peer, [])):
                    self._close_worker(effect.peer, worker)
            elif kind is NeighborUp:
                workers = self.workers.get(effect.peer)
                if workers:
                    self._tell_link(effect.peer, workers[0])
            elif kind is NeighborDown:
                self._tell_link(effect.peer, None)

    def _send(self, peer: str, frame: bytes, one_shot: bool = False) -> None:
        if peer in self.blocked:
            self.send(self.myAddress, Unreachable(peer))
            return
        workers = self.workers.get(peer)
        if workers:
            if one_shot:
                self._close_worker(peer, workers[0], frame)
            else:
                self.send(workers[0], SendFrames(frame))
            return
        pending = self.outbox.get(peer)
        if pending is None:
            # No connection yet: dial one; the frames wait for its Hello.
            self.outbox[peer] = bytearray(frame)
            if one_shot:
                self.one_shot.add(peer)
            self._dial(peer)
        elif len(pending) < (1 << 20):
            pending += frame
            if not one_shot:
                self.one_shot.discard(peer)

    def _dial(self, peer: str) -> None:
        dialer = self.context.get("peer_workers")
        if dialer is None:
            return  # started before the worker supervisor: on_context dials
        self.dialled.add(peer)
        start_worker(self, dialer, {"connect": peer})


# --- Gossip ------------------------------------------------------------------------------------


class Gossip(SatelliteActor):
    threaded_io = True  # the workers' pipes are served by a thread (actors/iothread.py)

    def init(self, args: dict) -> None:
        self.pt = plumtree.Plumtree(args["peer"], random.Random())
        self.links: dict[str, Any] = {}  # peer -> its worker's address
        self.link_keys: dict[str, str] = {}  # peer -> str() of it, the key of its pipe
        self.subscribers: dict[str, tuple[Any, frozenset]] = {}  # str(addr) -> (addr, names)
        self.data_wanted = False  # does a subscriber follow the office state ("data")?
        self.counter = 0
        self.counters: Counter = Counter()
        # The events delivered here, numbered, for ``satellite chaos`` to check delivery
        # at the node (not at a client, which may be reconnecting). Bounded; a new
        # epoch after a restart tells a reader that the numbering started again.
        self.epoch = os.urandom(4).hex()
        self.log = DeliveryLog(DELIVERY_LOG_BYTES)
        self.eager_told: tuple | None = None  # what State last heard
        self.deltas: list[bytes] = []  # this step's state deltas, for State
        self.for_clients: dict[str, tuple[Any, list]] = {}  # this step's, per subscriber
        self.pipes: dict[int, PipeEnd] = {}  # fd -> a worker's pipe
        self.pipe_of: dict[str, int] = {}  # str(worker address) -> fd of its pipe
        self.unflushed: set[int] = set()  # fds of pipes with output waiting, or closing
        self.flush_armed = False
        limits = self.context.get("limits") or {}
        self.send_buffer = limits.get("send_buffer", SEND_QUEUE_MAX)
        self.max_frame = limits.get("max_frame", wire.MAX_FRAME)  # as the workers read
        self.faults = Faults()  # ``satellite chaos``: on the links we write (handed over)
        self.rng = random.Random()
        self.apply(self.pt.handle(time.monotonic(), TimerFired(plumtree.AntiEntropyTick())))

    def on_context(self) -> None:
        self.eager_told = None  # State may have restarted
        self._tell_eager()

    def _tell_eager(self) -> None:
        state = self.context.get("state")
        if state is None:
            return
        eager = self.pt.eager_peers
        told = self.eager_told  # (eager peers, data wanted)
        if told is not None and told[1] == self.data_wanted and eager.keys() == told[0]:
            return
        self.eager_told = (set(eager), self.data_wanted)
        self.send(state, EagerPeers(sorted(eager), self.data_wanted))

    def _subscribers_changed(self) -> None:
        self.data_wanted = any("data" in names for _, names in self.subscribers.values())

    def handle(self, msg: Any, sender: Any) -> None:
        now = time.monotonic()
        self.on_message(now, msg, sender)
        self._tell_eager()
        self._pass_on()
        self._flush_pipes()

    def _pass_on(self) -> None:
        """What this step delivered goes on in one write or message per recipient."""
        if self.deltas:
            state = self.context.get("state")
            if state is not None:
                self.send(state, DeltaArrived(self.deltas))
            self.deltas = []
        if self.for_clients:
            for key, (worker, frames) in self.for_clients.items():
                self.to_worker(worker, b"".join(frames), Deliveries, key)
            self.for_clients = {}

    # -- pipes: the data path to and from the connection workers ----------------------------

    def add_pipe(self, end: PipeEnd) -> None:
        old = self.pipe_of.get(end.key)
        if old is not None:
            self.drop_pipe(old)
        fd = end.pipe.fileno()
        self.pipes[fd] = end
        self.pipe_of[end.key] = fd
        self.watching.append(fd)

    def drop_pipe(self, fd: int) -> None:
        """Close a worker's pipe (and our side of its connection): the worker sees the
        pipe close and closes the connection."""
        end = self.pipes.pop(fd, None)
        if end is None:
            return
        self.pipe_of.pop(end.key, None)
        self.unflushed.discard(fd)
        self.watching.remove(fd)
        end.pipe.close()
        if end.sock is not None:
            end.sock.close()
            end.sock = None
        for passed in end.passed:
            os.close(passed)
        end.passed = []

    def to_worker(
        self, worker: Any, frames: bytes, wrap: Any = SendFrames, key: str | None = None
    ) -> None:
        """Frames for a worker's connection: written here if the worker handed it over,
        else through its pipe, else as an actor message (its pipe is not here yet).
        ``key``: ``str(worker)``, when the caller has it."""
        fd = self.pipe_of.get(str(worker) if key is None else key)
        if fd is None:
            self.send(worker, wrap(frames))
            return
        end = self.pipes[fd]
        if end.peer is not None and self.faults.active:
            later = self.faults.hold(self.rng)
            if later is None:
                return
            if later:
                self.wakeupAfter(later, payload=DelayedWrite(end.key, frames))
                return
        self.write_link(fd, end, frames)

    def write_link(self, fd: int, end: PipeEnd, frames: bytes) -> None:
        """Frames onto a worker's connection, sealed if it has a key. Until the worker
        hands it over (it does as soon as its pipe comes), they wait here, in order:
        had they gone through the pipe for the worker to write, the worker, handed
        over meanwhile, would pass them back behind frames written here since."""
        if end.closing or not frames:
            return
        if not end.handed:
            end.waiting += frames
            if len(end.waiting) > self.send_buffer:
                logger.warning("[{}] Gossip: no handover from a worker; closing", self.node_id)
                self.drop_pipe(fd)
            return
        end.out += end.sealer.seal(frames) if end.sealer is not None else frames
        if len(end.out) > self.send_buffer:
            logger.warning(
                "[{}] Gossip: {}: send queue full, the other end does not read; closing",
                self.node_id,
                end.peer or "a client",
            )
            self.drop_pipe(fd)
        elif not self.flush_link(end):
            self.drop_pipe(fd)
        elif end.out:
            self.unflushed.add(fd)  # the rest when the socket takes it (``_flush_pipes``)

    @staticmethod
    def flush_link(end: PipeEnd) -> bool:
        """Write what waits for a handed-over connection; False once it failed."""
        return send_buffered(end.sock, end.out)

    def take_over(self, fd: int, end: PipeEnd, msg: link.Handover) -> None:
        """The worker handed us its connection's sending side (the socket came along,
        on the frame's first byte)."""
        if end.handed or not end.passed:
            logger.error("[{}] Gossip: a handover without its socket", self.node_id)
            self.drop_pipe(fd)
            return
        end.sock = socket.socket(fileno=end.passed.pop(0))
        end.sock.setblocking(False)
        end.sealer = Sealer(msg.key, msg.sealed) if msg.key else None
        if end.waiting:
            frames, end.waiting = bytes(end.waiting), bytearray()
            self.write_link(fd, end, frames)

    def read_pipes(self, now: float, ready: list, gone: bool = False) -> None:
        """Read the pipes ``ready`` (file descriptors); ``gone``: of a worker that left."""
        effects: list = []  # applied together: one batch per link for everything read
        for fd in ready:
            end = self.pipes.get(fd)
            if end is None:
                continue
            # Until the handover, a descriptor may come along (on its frame's first byte).
            data = end.pipe.read(None if end.handed else end.passed)
            messages = self.from_worker(end, data)
            if any(type(m) in LOCAL for m in messages):
                messages = self.from_own_worker(fd, end, messages)
                if fd not in self.pipes:
                    continue
            if end.peer is not None:
                effects += self.from_peer(now, end.peer, messages)
            else:
                effects += self.from_client(now, end.worker, messages, ack=not gone)
            if end.pipe.broken:
                self.drop_pipe(fd)
        self.apply(effects)

    def from_own_worker(self, fd: int, end: PipeEnd, messages: list) -> list:
        """Act on what a worker says to us about its connection (``link.Handover``,
        ``link.Outgoing``) and pass the rest on, in order."""
        rest = []
        for message in messages:
            kind = type(message)
            if kind is link.Handover:
                self.take_over(fd, end, message)
            elif kind is link.Outgoing:
                if end.handed:
                    self.write_link(fd, end, message.frames)
                    end.closing = end.closing or message.close
                    if end.closing:
                        self.unflushed.add(fd)  # closed once written (``_flush_pipes``)
            else:
                rest.append(message)
            if fd not in self.pipes:
                return []
        return rest

    def from_worker(self, end: PipeEnd, data: bytes) -> list:
        """The messages in ``data`` from a worker's pipe, after what came before of an
        unfinished frame. A peer's Plumtree frames come as the peer wrote them, and are
        checked here (``PLUMTREE_TAGS``); the rest the worker checked, or wrote itself. At
        a frame that fails, the pipe is closed (the worker then closes the connection),
        with one line in the log."""
        end.inbox += data
        checked = PLUMTREE_TAGS if end.peer is not None else frozenset()
        messages, error = wire.decode_piped(end.inbox, checked, self.max_frame)
        if error is not None:
            if end.peer is not None:
                why = f"bad frame ({type(error).__name__}: {error})"
                logger.warning("[{}] Gossip: {}: {}; closing", self.node_id, end.peer, why)
            else:
                logger.error("[{}] Gossip: bad frame from a worker: {}", self.node_id, error)
            end.pipe.close()
        return messages

    def from_peer(self, now: float, peer: str, messages: list) -> list:
        """A peer's Plumtree messages, in order; the effects (applied together: one batch
        per link for everything read)."""
        effects: list = []
        for message in messages:
            if type(message) in PLUMTREE:
                self.counters[counter_name("plumtree", type(message), "received")] += 1
                effects += self.pt.handle(now, Receive(peer, message))
        return effects

    def from_client(self, now: float, worker: Any, messages: list, ack: bool = True) -> list:
        """A client's Subscribe and Publish requests (checked by its worker), in its
        order; the effects of its broadcasts. ``ack``: tell the worker each Subscribe is
        in effect (not to a worker that closed)."""
        effects: list = []
        for message in messages:
            if type(message) is link.Publish:
                effects += self.publish(now, message.name, message.data)
            elif type(message) is link.Subscribe:
                self.subscribers[str(worker)] = (worker, frozenset(message.names))
                self._subscribers_changed()
                if ack:
                    self.send(worker, Subscribed())
        return effects

    def _flush_pipes(self) -> None:
        if not self.unflushed:
            return
        waiting = False
        for fd in list(self.unflushed):
            end = self.pipes.get(fd)
            if end is None or not (end.out or end.closing):
                self.unflushed.discard(fd)
                continue
            if end.out:
                if not self.flush_link(end):
                    self.drop_pipe(fd)
                    continue
                waiting = waiting or bool(end.out)
            if end.closing and not end.out:
                self.drop_pipe(fd)  # written: the worker closes the connection
            elif not end.out:
                self.unflushed.discard(fd)
        if waiting and not self.flush_armed:
            self.flush_armed = True
            self.wakeupAfter(timedelta(milliseconds=5), payload="flush-pipes")

    def publish(self, now: float, name: str, data: bytes) -> list:
        """Broadcast an event from one of our clients; the effects to apply."""
        return self.broadcast(now, wire.encode(link.Event(name, data, self.node_id)))

    def broadcast(self, now: float, payload: bytes, kind: str = "") -> list:
        """Broadcast ``payload`` under a new id (``kind`` keeps the ids of state deltas
        apart from events'); the effects to apply."""
        self.counters["plumtree_broadcasts"] += 1
        self.counter += 1
        seed = f"{self.node_id}/{os.getpid()}/{time.time_ns()}/{kind}{self.counter}".encode()
        mid = hashlib.blake2b(seed, digest_size=16).digest()
        return self.pt.handle(now, Broadcast(mid, payload))

    def on_message(self, now: float, msg: Any, sender: Any) -> None:
        if isinstance(msg, FromPeer):
            self.apply(self.from_peer(now, msg.peer, msg.messages))
        elif isinstance(msg, WatchMessage):
            self.read_pipes(now, msg.ready)
        elif isinstance(msg, WakeupMessage):
            if msg.payload == "flush-pipes":
                self.flush_armed = False  # handle() flushes after every message
            elif isinstance(msg.payload, DelayedWrite):
                fd = self.pipe_of.get(msg.payload.key)
                if fd is not None:
                    self.write_link(fd, self.pipes[fd], msg.payload.frames)
            else:
                self.apply(self.pt.handle(now, TimerFired(msg.payload)))
        elif isinstance(msg, Link):
            if msg.worker is None:
                self.links.pop(msg.peer, None)
                self.link_keys.pop(msg.peer, None)
                self.apply(self.pt.handle(now, NeighborDown(msg.peer)))
            else:
                new = msg.peer not in self.links
                self.links[msg.peer] = msg.worker
                self.link_keys[msg.peer] = str(msg.worker)
                if new:
                    self.apply(self.pt.handle(now, NeighborUp(msg.peer)))
        elif isinstance(msg, WantPipe):
            pipe, handle = Pipe.pair()
            self.add_pipe(PipeEnd(pipe, msg.peer, msg.worker))
            self.send(msg.worker, PipeFor(handle))
        elif isinstance(msg, FromClient):
            messages, error = wire.decode_piped(bytearray(msg.frames))
            if error is not None:
                logger.error("[{}] Gossip: bad frame from a worker: {}", self.node_id, error)
            self.apply(self.from_client(now, sender, messages, ack=False))
        elif isinstance(msg, (ClientGone, WorkerExited)):
            key = str(msg.worker if isinstance(msg, ClientGone) else msg.address)
            fd = self.pipe_of.get(key)
            if fd is not None:
                self.read_pipes(now, [fd], gone=True)  # what it wrote before it left counts
                self.drop_pipe(fd)
            if self.subscribers.pop(key, None) is not None:
                self._subscribers_changed()
        elif isinstance(msg, Faults):
            self.faults = msg
        elif isinstance(msg, PublishDelta):
            self.counters["plumtree_state_deltas"] += 1
            self.apply(self.broadcast(now, msg.frame, "d"))
        elif isinstance(msg, NotifyClients):
            self.notify(msg.delivery)
        elif isinstance(msg, ControlRequest):
            self.send(sender, Answer("control", msg.token, self.deliveries(msg.args)))
        elif isinstance(msg, Query):
            if msg.what == "metrics":
                gauges = {
                    "plumtree_eager_peers": len(self.pt.eager_peers),
                    "plumtree_lazy_peers": len(self.pt.lazy_peers),
                    "clients": len(self.subscribers),
                    # connections whose worker handed their sending side to us
                    "links_written_by_gossip": sum(e.handed for e in self.pipes.values()),
                }
                body: Any = {"counters": dict(self.counters), "gauges": gauges}
            else:
                body = {
                    "eager_peers": list(self.pt.eager_peers),
                    "lazy_peers": list(self.pt.lazy_peers),
                }
            self.send(sender, Answer(msg.what, msg.token, body))

    def apply(self, effects: list) -> None:
        count_messages(self.counters, "plumtree", effects)
        # One actor message per connection for this whole step, and a message pushed to
        # several peers is encoded once: actor hops are what a broadcast costs here.
        batches: dict[str, tuple[Any, bytearray]] = {}
        encoded: dict[int, bytes] = {}
        deliveries = []
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                worker = self.links.get(effect.peer)
                if worker is not None:
                    frame = encoded.get(id(effect.message))
                    if frame is None:
                        frame = encoded[id(effect.message)] = wire.encode(effect.message)
                    batch = batches.get(effect.peer)
                    if batch is None:
                        batches[effect.peer] = (worker, bytearray(frame))
                    else:
                        batch[1].extend(frame)
            elif kind is SetTimer:
                self.wakeupAfter(timer_delay(effect), payload=effect.timer)
            elif kind is Deliver:
                deliveries.append(effect)
        for peer, (worker, frames) in batches.items():
            self.to_worker(worker, bytes(frames), key=self.link_keys[peer])
        # After the pushes: the next hop's nodes start on them while we read the payload.
        for effect in deliveries:
            self.deliver(effect)

    def deliver(self, effect: Deliver) -> None:
        self.counters["plumtree_delivered"] += 1
        try:
            event = wire.decode_frame(effect.payload)
        except wire.WireError as exc:
            logger.warning(
                "[{}] Gossip: broadcast {} is not an event: {}", self.node_id, effect.id.hex(), exc
            )
            return
        if type(event) is link.StateDelta:
            if effect.round > 0:
                self.deltas.append(event.entries)
            return
        if type(event) is not link.Event:
            return
        self.log.append(event.name, event.data)
        self.notify(link.Delivery(event.name, event.data, event.origin, effect.id))

    def deliveries(self, args: Any) -> dict:
        """``{"since": n}`` -> the events delivered after number n: a page of at most
        2000 of them and 256 KiB of their names and data (one, however large)."""
        since = args.get("since", 0) if isinstance(args, dict) else 0
        if not isinstance(since, int):
            return {"error": 'delivered takes {"since": N}'}
        events = self.log.page(since, DELIVERY_PAGE_EVENTS, DELIVERY_PAGE_BYTES)
        log = self.log
        return {"epoch": self.epoch, "first": log.first, "last": log.last, "events": events}

    def notify(self, delivery: link.Delivery) -> None:
        # "*" is every event, but not the office-state stream "data" (ask for it by name).
        wildcard = delivery.name != "data"
        frame = None  # encoded once for all who want it
        for key, (worker, names) in self.subscribers.items():
            if delivery.name in names or (wildcard and "*" in names):
                self.counters["client_deliveries"] += 1
                if frame is None:
                    frame = wire.encode(delivery)
                self.for_clients.setdefault(key, (worker, []))[1].append(frame)


# --- PeerWorker ------------------------------------------------------------------------------


class PeerWorker(Connection):
    """One TCP connection to another node."""

    # A crashed node's links break at once (its kernel closes them), a vanished Pi's within
    # about 11 s (TCP keepalive, see connection.py); these pings, every 15 s on an idle
    # link and dead after 45 s of silence, find a node that hangs (OTP's net_ticktime is
    # 60 s for the same job).
    keepalive = 15.0

    def connected(self) -> None:
        # Both ends introduce themselves at once.
        self.write(self.context["hello"])

    def init(self, args: dict) -> None:
        self.init_args = args
        self.dialled = args.get("connect")
        self.peer: str | None = None
        self.faults = Faults()
        self.rng = random.Random()
        self.inbox: dict[str, list] = {}  # actor name -> messages of this read for it
        self.for_gossip = bytearray()  # Plumtree frames of this read, for the pipe
        super().init(args)

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, PipeFor):
            self.pipe_for(msg.handle)
        elif isinstance(msg, Faults):
            self.faults = msg
        elif isinstance(msg, SendFrames) and self.faults.active and msg.frames and not msg.close:
            self.write_with_faults(msg.frames)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, tuple):
            self.write(msg.payload[1])  # a delayed batch, in the order it was sent
        else:
            super().handle(msg, sender)

    def write_with_faults(self, data: bytes) -> None:
        """Membership's frames for the peer, through ``satellite chaos``'s faults."""
        later = self.faults.hold(self.rng)
        if later is None:
            return
        if later:
            self.wakeupAfter(later, payload=("delayed", data))
            return
        self.write(data)

    def connect_failed(self, exc: OSError) -> None:
        membership = self.context.get("membership")
        if membership is not None:
            self.send(membership, PeerGone(self.init_args["connect"], self.myAddress))
        self.exit_normally()

    def on_frame(self, msg: Any, frame: bytes) -> None:
        if msg is None:  # a Plumtree frame, for Gossip to check (``undecoded``)
            self.for_gossip += frame
            return
        kind = type(msg)
        if self.peer is None:
            if kind is not link.Hello or msg.version != link.PEER_PROTOCOL_VERSION:
                got = f"version {msg.version}" if kind is link.Hello else kind.__name__
                self.close(
                    f"expected a Hello (version {link.PEER_PROTOCOL_VERSION}), got {got}",
                    bad=True,
                )
                return
            if self.dialled and msg.peer != self.dialled:
                self.close(f"dialled {self.dialled} but {msg.peer} answered", bad=True)
                return
            self.peer = msg.peer
            self.remote = msg.peer
            self.greeted = True
            self.send(self.context["membership"], PeerUp(msg.peer, msg, self.myAddress))
            self.want_pipe(msg.peer)
            if self.pipe_wanted:  # from now on Plumtree's frames go to Gossip's pipe
                self.undecoded = PLUMTREE_TAGS
        elif kind in HYPARVIEW:
            self.inbox.setdefault("membership", []).append(msg)
        elif kind in PLUMTREE:
            if self.pipe_wanted:
                self.for_gossip += frame  # as it came: Gossip decodes it once more
            else:
                self.inbox.setdefault("gossip", []).append(msg)
        elif kind in (link.StateDigest, link.StateEntries):
            self.inbox.setdefault("state", []).append(msg)
        elif kind is not link.Ping:
            self.close(f"{kind.__name__} has no business on a peer link", bad=True)

    def frames_read(self) -> None:
        if self.for_gossip:
            self.to_pipe(bytes(self.for_gossip))
            self.for_gossip.clear()
        for name, messages in self.inbox.items():
            target = self.context.get(name)
            if target is not None:
                self.send(target, FromPeer(self.peer, messages))
        self.inbox = {}

    def on_idle(self) -> None:
        if time.monotonic() - self.last_tx >= self.keepalive:
            self.write(wire.encode(link.Ping()))

    def closed(self, reason: str) -> None:
        gossip = self.context.get("gossip")
        unpiped = self.take_pipe_pending()
        if unpiped and gossip is not None:
            # Undecoded frames among them (``undecoded``): checked now, as Gossip would.
            messages, error = wire.decode_piped(bytearray(unpiped), PLUMTREE_TAGS)
            if error is not None:
                why = f"{type(error).__name__}: {error}"
                logger.warning("[{}] PeerWorker {}: bad frame ({})", self.node_id, self.remote, why)
            self.send(gossip, FromPeer(self.peer, messages))
        membership = self.context.get("membership")
        peer = self.peer or self.init_args.get("connect")
        if membership is not None and peer is not None:
            self.send(membership, PeerGone(peer, self.myAddress))
