"""The State actor: the node's replica of the office state, durable before it answers.

Four spaces, each an OR-map of LWW values ordered by a hybrid logical clock:
``targets`` (``lights`` -> ``"on"``), ``readings`` (node id -> its latest reading),
``network`` (MAC -> IP, who saw it, when) and ``nodes`` (node id -> its addresses and
overlay links, for the dashboard and ``satellite topology --cluster``). A local write
is joined, committed to SQLite, acknowledged, then broadcast as a delta over
Plumtree; deltas from other nodes are joined and committed; anti-entropy with one
neighbour at a time repairs what the tree missed. Every change marks the office
snapshot dirty: this node's clients get it as a ``data`` event, coalesced to at most
one per ``DATA_EVERY`` seconds. A target change is also an event of its own, named
after the target, with an id starting ``t/`` so that an Antenna can patch its copy of
``data.targets`` before the callbacks run.

The replica and the clock are reloaded from the store at start, before the node has
any peer, so a restarted node has its state back and never reissues a dot. Entries of
departed nodes (readings, devices, overlay links not refreshed for ``prune_after``
seconds) are removed by whichever node notices first; the removal is a delta like any
other, and a node that comes back re-adds itself with a fresh dot (add wins).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import msgpack
from loguru import logger
from thespian.actors import WakeupMessage

from actors.base import SatelliteActor
from actors.connection import SendFrames
from actors.overlay import (
    Answer,
    DeltaArrived,
    EagerPeers,
    FromPeer,
    Link,
    Members,
    NotifyClients,
    PublishDelta,
    Query,
)
from actors.sensing import DevicesSeen, NewReading
from actors.store import Store
from protocols import link, wire
from protocols.clocks import HLC, Timestamp
from protocols.crdt import ORMap
from protocols.events import KnownPeers
from protocols.replication import Replica, ReplicationError

SPACES = {"targets": ORMap, "readings": ORMap, "network": ORMap, "nodes": ORMap}
NETWORK = ("network", "all")  # MAC -> {ip_addr, seen_by, at}
TARGETS = ("targets", "all")  # one OR-map holds every target
READINGS = ("readings", "all")  # node id -> its latest reading
NODES = ("nodes", "all")  # node id -> {peer, client, http, active_view, eager_peers, at}
ONLINE_MS = 5 * 60 * 1000  # a device not seen for 5 minutes is not online
ANTI_ENTROPY = 10.0  # seconds between digest exchanges with a random neighbour
DATA_EVERY = 0.5  # at most this often a "data" event to the clients
# Overlay links settle for a second before they are written, and are written at most
# every 10 s: Plumtree's eager set moves with every graft and prune, and a broadcast
# per move would feed the very churn it reports.
NODE_ENTRY_DELAY = 1.0
NODE_ENTRY_EVERY = 10.0
# A change of the eager set alone waits longer: an idle office must go quiet.
NODE_EAGER_EVERY = 60.0


class SetTargetRequest:
    def __init__(self, name: str, value: Any, token: Any) -> None:
        self.name, self.value, self.token = name, value, token


def known_peers(entries: dict, me: str) -> tuple:
    """The peer addresses of the ``nodes`` space's entries but ours, sorted; an entry whose
    address a node could not dial (a bad value from a peer) is left out."""
    return tuple(
        sorted(
            {
                v["peer"]
                for k, v in entries.items()
                if k != me
                and isinstance(v, dict)
                and isinstance(v.get("peer"), str)
                and wire.is_peer_address(v["peer"])
            }
        )
    )


def _ms() -> int:
    return time.time_ns() // 1_000_000


class State(SatelliteActor):
    def init(self, args: dict) -> None:
        self.store = Store(args["data_dir"])
        self.replica = Replica(SPACES)
        for space, cls in SPACES.items():
            for key, value in self.store.items(space):
                self.replica.join(space, key, cls.from_wire(msgpack.unpackb(value)))
        self.read_interval = float(args.get("read_interval", 5.0))
        last = self.store.get_meta("hlc")
        self.hlc = HLC(
            self.node_id, last=Timestamp.from_wire(msgpack.unpackb(last)) if last else None
        )
        self.prune_after = float(args.get("prune_after", 86400.0))
        # A device still seen is written again this often: fresh for "online", and
        # never old enough for another node to prune.
        self.refresh_ms = min(ONLINE_MS // 3, int(self.prune_after * 1000 / 3))
        self.addresses = {k: args.get(k) for k in ("peer", "client", "http")}
        self.changes = 0
        # In the ids of target changes: an Antenna drops an id it has seen, and one
        # attached across a restart of this actor saw the last incarnation's counter.
        self.incarnation = f"{time.time_ns():x}"
        self.counters: Counter = Counter()
        self.links: dict[str, Any] = {}  # neighbour -> connection worker
        self.eager_peers: list[str] = []
        self.members: list[dict] = []
        self.rng = random.Random()
        self.data_timer = False  # a "data" wakeup is pending
        self.data_dirty = False
        self.data_wanted = False  # does any client of this node follow "data"?
        self.data_sent = 0.0  # monotonic time of the last "data" event
        self.entry_due: float | None = None  # when the pending "node" wakeup fires
        self.entry_written = -NODE_ENTRY_EVERY  # monotonic time of the last write
        self.peers_told: tuple | None = None  # the members' peer addresses Membership has
        self.wakeupAfter(timedelta(seconds=ANTI_ENTROPY * (0.5 + self.rng.random())), "ae")
        self.wakeupAfter(timedelta(seconds=self.prune_every()), "prune")
        self.write_node_entry()
        self.tell_known_peers()

    def on_context(self) -> None:
        self.peers_told = None  # Membership may have restarted: tell it again
        self.tell_known_peers()

    def tell_known_peers(self) -> None:
        """Membership learns the office's members from the state (what a restarted node
        loaded from its store, before it has any peer): where to look for the office when
        its seeds are down. Sent at start, and every ``prune_every`` if it changed."""
        membership = self.context.get("membership")
        peers = known_peers(self.replica.get(*NODES).value(), self.node_id)
        if membership is not None and peers != self.peers_told:
            self.peers_told = peers
            self.send(membership, KnownPeers(peers))

    def prune_every(self) -> float:
        return min(60.0, self.prune_after / 4)

    def targets(self) -> dict:
        return self.replica.get(*TARGETS).value()

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, SetTargetRequest):
            self.set_target(msg, sender)
        elif isinstance(msg, DeltaArrived):
            for entries in msg.batch:
                self.merge(entries)
        elif isinstance(msg, Link):
            if msg.worker is None:
                if self.links.pop(msg.peer, None) is not None:
                    self.node_entry_soon()
            else:
                new = msg.peer not in self.links
                self.links[msg.peer] = msg.worker
                if new:
                    # A new neighbour (or we just restarted): compare states at once.
                    self.send_digest(msg.peer, reply=True)
                    self.node_entry_soon()
        elif isinstance(msg, FromPeer):
            for message in msg.messages:
                self.from_peer(msg.peer, message)
        elif isinstance(msg, WakeupMessage):
            self.wakeup(msg.payload)
        elif isinstance(msg, NewReading):
            self.new_reading(msg)
        elif isinstance(msg, DevicesSeen):
            self.devices_seen(msg.devices)
        elif isinstance(msg, Members):
            self.members = msg.members
            self.data_changed()
        elif isinstance(msg, EagerPeers):
            if msg.peers != self.eager_peers:
                self.eager_peers = msg.peers
                self.node_entry_soon(NODE_EAGER_EVERY)
            if msg.data_wanted and not self.data_wanted:
                self.data_changed()
            self.data_wanted = msg.data_wanted
        elif isinstance(msg, Query):
            if msg.what == "metrics":
                body = {"counters": dict(self.counters), "gauges": self.gauges()}
            else:
                body = self.snapshot()
            self.send(sender, Answer(msg.what, msg.token, body))

    def wakeup(self, what: Any) -> None:
        if what == "ae":
            if self.links:
                self.counters["state_anti_entropy_rounds"] += 1
                self.send_digest(self.rng.choice(sorted(self.links)), reply=True)
            self.wakeupAfter(timedelta(seconds=ANTI_ENTROPY), "ae")
        elif what == "data":
            self.data_timer = False
            self.send_data()
        elif isinstance(what, tuple) and what[0] == "node":
            if what[1] == self.entry_due:  # not one that was brought forward
                self.entry_due = None
                self.write_node_entry()
        elif what == "prune":
            self.prune_departed()
            self.write_node_entry()  # a refresh, when a third of prune_after has passed
            self.tell_known_peers()
            self.wakeupAfter(timedelta(seconds=self.prune_every()), "prune")

    def gauges(self) -> dict:
        return {
            **{
                f"state_{space}_entries": len(self.replica.get(space, "all").keys())
                for space in SPACES
            },
            # 1 while a rewrite of our node entry waits (links changed): the office is
            # not at rest until it has gone out (up to NODE_EAGER_EVERY later).
            "state_node_entry_pending": int(self.entry_due is not None),
        }

    # -- the "data" stream: the office snapshot, coalesced ----------------------------------

    def data_changed(self) -> None:
        """The snapshot changed: send it soon."""
        self.data_dirty = True
        if not self.data_timer:
            self.data_timer = True
            wait = max(0.05, DATA_EVERY - (time.monotonic() - self.data_sent))
            self.wakeupAfter(timedelta(seconds=wait), "data")

    def send_data(self) -> None:
        gossip = self.context.get("gossip")
        if not (self.data_dirty and self.data_wanted) or gossip is None:
            return
        self.data_dirty = False
        self.data_sent = time.monotonic()
        self.changes += 1
        self.counters["state_data_events"] += 1
        body = msgpack.packb({**self.snapshot(), "members": self.members}, use_bin_type=True)
        stamp = f"{self.node_id}/{self.changes}".encode()
        self.send(gossip, NotifyClients(link.Delivery("data", body, self.node_id, stamp)))

    def snapshot(self) -> dict:
        readings = self.replica.get(*READINGS).value()
        # A node whose latest reading is older than three intervals is not counted.
        fresh = _ms() - 3_000 * self.read_interval
        temps = [
            r["temperature"]
            for r in readings.values()
            if isinstance(r, dict) and r.get("temperature") is not None and r.get("at", 0) >= fresh
        ]
        network = self.replica.get(*NETWORK).value()
        online = [
            {"mac_addr": mac, **entry}
            for mac, entry in sorted(network.items())
            if isinstance(entry, dict) and entry.get("at", 0) >= _ms() - ONLINE_MS
        ]
        return {
            "targets": self.targets(),
            "online_devices": online,
            "readings": readings,
            "avg_temp": round(sum(temps) / len(temps), 3) if temps else None,
            "nodes": self.replica.get(*NODES).value(),
            # Every target-change event of ours up to this id is in the snapshot: an
            # Antenna drops those that reach it after the snapshot (they took another path).
            "last_change": f"t/{self.node_id}/{self.incarnation}/{self.changes}",
        }

    # -- this node's own entries ------------------------------------------------------------

    def node_entry_soon(self, every: float = NODE_ENTRY_EVERY) -> None:
        """Write our entry soon, but not sooner than ``every`` after the last write. A
        pending write for an eager-set change is brought forward by a link change."""
        since = time.monotonic() - self.entry_written
        wait = max(NODE_ENTRY_DELAY, every - since)
        due = time.monotonic() + wait
        if self.entry_due is not None and self.entry_due <= due:
            return
        self.entry_due = due
        self.wakeupAfter(timedelta(seconds=wait), ("node", due))

    def write_node_entry(self) -> None:
        """Our addresses and overlay links, for whoever draws the office; rewritten when
        the links change, and at least every third of ``prune_after`` so that a quiet
        node is never taken for a departed one."""
        entry = {
            **self.addresses,
            "active_view": sorted(self.links),
            "eager_peers": list(self.eager_peers),
        }
        old = self.replica.get(*NODES).get(self.node_id)
        if isinstance(old, dict):
            unchanged = {k: v for k, v in old.items() if k != "at"} == entry
            if unchanged and _ms() - old.get("at", 0) < self.prune_after * 1000 / 3:
                return
        self.entry_written = time.monotonic()
        self.write(NODES, self.node_id, {**entry, "at": _ms()})

    def write(self, where: tuple[str, str], key: str, value: Any) -> Any:
        """A local write: join, commit, broadcast. Returns the delta."""
        current = self.replica.get(*where).copy()
        delta = current.put(self.node_id, key, value, self.hlc.now(_ms()))
        self.replica.join(*where, delta)
        self.commit([where])
        self.counters["state_local_writes"] += 1
        self.broadcast(delta, where)
        self.data_changed()
        return delta

    def prune_departed(self) -> None:
        """Remove readings, devices and node entries not refreshed for ``prune_after``."""
        horizon = _ms() - self.prune_after * 1000
        for where in (READINGS, NETWORK, NODES):
            current = self.replica.get(*where).copy()
            doomed = [
                key
                for key, value in current.value().items()
                if key != self.node_id and isinstance(value, dict) and value.get("at", 0) < horizon
            ]
            if not doomed:
                continue
            delta = None
            for key in doomed:
                step = current.remove(key)
                delta = step if delta is None else delta.join(step)
            self.replica.join(*where, delta)
            self.commit([where])
            self.counters["state_pruned_entries"] += len(doomed)
            logger.info(
                "[{}] State: pruned {} {} entr{} not refreshed for {:.0f} s: {}",
                self.node_id,
                len(doomed),
                where[0],
                "y" if len(doomed) == 1 else "ies",
                self.prune_after,
                ", ".join(map(str, doomed)),
            )
            self.broadcast(delta, where)
            self.data_changed()

    def devices_seen(self, devices: dict) -> None:
        """Record what this node sees; a device's entry says who saw it and when. Only a
        change (a new device, a new IP) or a refresh due for freshness is written."""
        current = self.replica.get(*NETWORK).copy()
        now = _ms()
        known = current.value()
        delta = None
        for mac, seen in devices.items():
            old = known.get(mac)
            stale = not isinstance(old, dict) or now - old.get("at", 0) > self.refresh_ms
            if stale or old.get("ip_addr") != seen["ip_addr"]:
                value = {**seen, "seen_by": self.node_id, "at": now}
                step = current.put(self.node_id, mac, value, self.hlc.now(now))
                delta = step if delta is None else delta.join(step)
        if delta is not None:
            self.replica.join(*NETWORK, delta)
            self.commit([NETWORK])
            self.counters["state_local_writes"] += 1
            self.broadcast(delta, NETWORK)
            self.data_changed()

    def new_reading(self, msg: NewReading) -> None:
        value = {"at": _ms()}
        for name in ("temperature", "humidity", "pressure"):
            if getattr(msg, name) is not None:
                value[name] = getattr(msg, name)
        self.write(READINGS, self.node_id, value)

    def broadcast(self, delta: Any, where: tuple[str, str]) -> None:
        entries = msgpack.packb([Replica.entry(*where, delta)], use_bin_type=True)
        gossip = self.context.get("gossip")
        if gossip is not None:
            self.send(gossip, PublishDelta(wire.encode(link.StateDelta(entries))))

    def commit(self, changed: list[tuple[str, str]]) -> None:
        """Durable first: only then is a change acknowledged or announced."""
        with self.store.transaction():
            for space, key in changed:
                state = self.replica.get(space, key)
                self.store.put(space, key, msgpack.packb(state.to_wire(), use_bin_type=True))
            self.store.set_meta("hlc", msgpack.packb(self.hlc.last.to_wire()))

    def set_target(self, msg: SetTargetRequest, sender: Any) -> None:
        before = self.targets()
        current = self.replica.get(*TARGETS).copy()
        delta = current.put(self.node_id, msg.name, msg.value, self.hlc.now(_ms()))
        self.replica.join(*TARGETS, delta)
        self.commit([TARGETS])
        self.counters["state_local_writes"] += 1
        # The answer is the write's HLC timestamp: its place in last-writer-wins order.
        self.send(sender, Answer("set", msg.token, self.hlc.last.to_wire()))
        self.broadcast(delta, TARGETS)
        self.data_changed()
        self.announce(before, self.node_id)

    # -- anti-entropy with one neighbour at a time ----------------------------------------

    def send_digest(self, peer: str, reply: bool) -> None:
        digest = msgpack.packb(self.replica.digest(), use_bin_type=True)
        self.send(self.links[peer], SendFrames(wire.encode(link.StateDigest(digest, reply))))

    def from_peer(self, peer: str, msg: Any) -> None:
        worker = self.links.get(peer)
        if type(msg) is link.StateEntries:
            self.merge(msg.entries)
        elif type(msg) is link.StateDigest and worker is not None:
            try:
                remote = msgpack.unpackb(msg.digest, raw=False)
                entries = self.replica.differing(remote)
            except (ValueError, TypeError, AttributeError) as exc:
                logger.warning("[{}] State: bad digest from {}: {}", self.node_id, peer, exc)
                return
            if entries:
                self.counters["state_entries_sent"] += len(entries)
                data = msgpack.packb(entries, use_bin_type=True)
                self.send(worker, SendFrames(wire.encode(link.StateEntries(data))))
            if msg.reply:
                self.send_digest(peer, reply=False)

    def merge(self, entries: bytes) -> None:
        before = self.targets()
        try:
            data = msgpack.unpackb(entries, raw=False, strict_map_key=False)
            changed = self.replica.receive(data)
        except (ValueError, TypeError, ReplicationError) as exc:
            logger.warning("[{}] State: a delta it cannot join: {}", self.node_id, exc)
            return
        self.counters["state_deltas_received"] += 1
        if changed:
            self.counters["state_merges"] += len(changed)
            for space, key in changed:
                for ts in self._timestamps(space, key):
                    self.hlc.update(ts, _ms())
            self.commit(changed)
            self.data_changed()
            self.announce(before, "")

    def _timestamps(self, space: str, key: str) -> list[Timestamp]:
        state = self.replica.get(space, key)
        return [reg.ts for _, reg in state.entries.values() if reg.ts is not None]

    def announce(self, before: dict, origin: str) -> None:
        """Every target whose value changed becomes an event for this node's clients."""
        gossip = self.context.get("gossip")
        after = self.targets()
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                self.changes += 1
                data = msgpack.packb(after.get(name), use_bin_type=True)
                stamp = f"t/{self.node_id}/{self.incarnation}/{self.changes}".encode()
                reg = self.replica.get(*TARGETS).register(name)
                writer = reg.ts.node if reg is not None and reg.ts is not None else origin
                delivery = link.Delivery(name, data, writer or self.node_id, stamp)
                if gossip is not None:
                    self.send(gossip, NotifyClients(delivery))

    def stopping(self) -> None:
        self.store.close()
