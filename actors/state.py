"""The State actor: the node's replica of the office state, durable before it answers.

First slice (issue 4): the ``targets`` space (``lights`` -> ``"on"``), an OR-map of LWW
values ordered by a hybrid logical clock. A ``set`` is joined, committed to SQLite,
acknowledged, then broadcast as a delta over Plumtree; deltas from other nodes are
joined, committed, and announced to this node's clients as events named after the
target. The replica and the clock are reloaded from the store at start, before the
node has any peer, so a restarted node has its state back and never reissues a dot.
"""

from __future__ import annotations

import random
import time
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
    FromPeer,
    Link,
    NotifyClients,
    PublishDelta,
    Query,
)
from actors.sensing import DevicesSeen, NewReading
from actors.store import Store
from protocols import link, wire
from protocols.clocks import HLC, Timestamp
from protocols.crdt import ORMap
from protocols.replication import Replica, ReplicationError

SPACES = {"targets": ORMap, "readings": ORMap, "network": ORMap}
NETWORK = ("network", "all")  # MAC -> {ip_addr, seen_by, at}
TARGETS = ("targets", "all")  # one OR-map holds every target
READINGS = ("readings", "all")  # node id -> its latest reading
ONLINE_MS = 5 * 60 * 1000  # a device not seen for 5 minutes is not online
ANTI_ENTROPY = 10.0  # seconds between digest exchanges with a random neighbour


class SetTargetRequest:
    def __init__(self, name: str, value: Any, token: Any) -> None:
        self.name, self.value, self.token = name, value, token


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
        self.changes = 0
        self.links: dict[str, Any] = {}  # neighbour -> connection worker
        self.rng = random.Random()
        self.wakeupAfter(timedelta(seconds=ANTI_ENTROPY * (0.5 + self.rng.random())), "ae")

    def targets(self) -> dict:
        return self.replica.get(*TARGETS).value()

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, SetTargetRequest):
            self.set_target(msg, sender)
        elif isinstance(msg, DeltaArrived):
            self.merge(msg.entries)
        elif isinstance(msg, Link):
            if msg.worker is None:
                self.links.pop(msg.peer, None)
            else:
                new = msg.peer not in self.links
                self.links[msg.peer] = msg.worker
                if new:
                    # A new neighbour (or we just restarted): compare states at once.
                    self.send_digest(msg.peer, reply=True)
        elif isinstance(msg, FromPeer):
            self.from_peer(msg.peer, msg.message)
        elif isinstance(msg, WakeupMessage) and msg.payload == "ae":
            if self.links:
                self.send_digest(self.rng.choice(sorted(self.links)), reply=True)
            self.wakeupAfter(timedelta(seconds=ANTI_ENTROPY), "ae")
        elif isinstance(msg, NewReading):
            self.new_reading(msg)
        elif isinstance(msg, DevicesSeen):
            self.devices_seen(msg.devices)
        elif isinstance(msg, Query):
            self.send(sender, Answer(msg.what, msg.token, self.snapshot()))

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
        }

    def devices_seen(self, devices: dict) -> None:
        """Record what this node sees; a device's entry says who saw it and when. Only a
        change (a new device, a new IP) or a refresh due for freshness is written."""
        current = self.replica.get(*NETWORK).copy()
        now = _ms()
        known = current.value()
        delta = None
        for mac, seen in devices.items():
            old = known.get(mac)
            stale = not isinstance(old, dict) or now - old.get("at", 0) > ONLINE_MS // 3
            if stale or old.get("ip_addr") != seen["ip_addr"]:
                value = {**seen, "seen_by": self.node_id, "at": now}
                step = current.put(self.node_id, mac, value, self.hlc.now(now))
                delta = step if delta is None else delta.join(step)
        if delta is not None:
            self.replica.join(*NETWORK, delta)
            self.commit([NETWORK])
            self.broadcast(delta, NETWORK)

    def new_reading(self, msg: NewReading) -> None:
        value = {"at": _ms()}
        for name in ("temperature", "humidity", "pressure"):
            if getattr(msg, name) is not None:
                value[name] = getattr(msg, name)
        current = self.replica.get(*READINGS).copy()
        delta = current.put(self.node_id, self.node_id, value, self.hlc.now(_ms()))
        self.replica.join(*READINGS, delta)
        self.commit([READINGS])
        self.broadcast(delta, READINGS)

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
        self.send(sender, Answer("set", msg.token, True))
        self.broadcast(delta, TARGETS)
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
        if changed:
            for space, key in changed:
                for ts in self._timestamps(space, key):
                    self.hlc.update(ts, _ms())
            self.commit(changed)
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
                stamp = f"{self.node_id}/{self.changes}".encode()
                reg = self.replica.get(*TARGETS).register(name)
                writer = reg.ts.node if reg is not None and reg.ts is not None else origin
                delivery = link.Delivery(name, data, writer or self.node_id, stamp)
                if gossip is not None:
                    self.send(gossip, NotifyClients(delivery))

    def stopping(self) -> None:
        self.store.close()
