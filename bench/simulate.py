"""A deterministic discrete-event simulator of N nodes running the real overlay.

Every simulated node is a ``protocols.stack.Stack``: the same HyParView and
Plumtree objects a Pi runs. The network is modelled as the node's transport
behaves: each pair of nodes has a fixed latency (so a link is FIFO, like a TCP
connection); a message to a node that is down or across a partition is lost
and its sender gets ``PeerFailed`` one latency later (a reset or a timeout),
except one that a node sends as a datagram (a SHUFFLE or its reply, a low-priority
NEIGHBOR or a refusal to a peer it has no connection with, as Membership does:
``protocols.datagram.by_datagram``), which is just lost, but
for a NEIGHBOR to a node that is down: it bounces (ICMP port unreachable), and the
sender takes that as a failure, as Membership does;
when a node crashes, the peers holding a link to it notice after the
keepalive delay. ``--loss`` drops Plumtree messages only: HyParView's travel
on connections whose failure is reported, while broadcast frames can be shed
by a full send queue, which the tree's IHAVE/GRAFT and anti-entropy repair.

A run: N nodes join one after another through a random earlier node, the
overlay settles (shuffles run), a few warm-up broadcasts shape the tree, then
the scenario runs one broadcast per round (``--round`` seconds of simulated
time) and measures each within its round:

  reliability  share of the nodes live for the whole round that delivered
  rmr          m / (n - 1) - 1, m payload messages sent, n nodes that delivered
  ldh          the largest hop count of a delivery
  control_per_payload  IHAVE + GRAFT + PRUNE messages per payload message

    python bench/simulate.py --nodes 1000 --scenario stable --json
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from bench.stats import percentile
from protocols import datagram, hyparview, plumtree
from protocols.events import (
    Broadcast,
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
from protocols.stack import Stack

SCENARIOS = ("stable", "mass-crash", "churn", "partition", "multi-sender", "load")
PLUMTREE_MESSAGES = frozenset(plumtree.MESSAGES)
CONTROL_MESSAGES = (plumtree.IHave, plumtree.Graft, plumtree.Prune)


class Flood:
    """The baseline: every node forwards every new payload to all its active peers."""

    __slots__ = ("me", "peers", "seen")

    def __init__(self, me: int) -> None:
        self.me = me
        self.peers: dict = {}
        self.seen: set = set()

    def handle(self, now: float, event: object) -> list:
        kind = type(event)
        if kind is Receive and type(event.message) is plumtree.Gossip:
            msg = event.message
            if msg.id in self.seen:
                return []
            self.seen.add(msg.id)
            out = [Deliver(msg.id, msg.payload, msg.round)]
            fwd = plumtree.Gossip(msg.id, msg.round + 1, msg.payload, msg.root)
            out.extend(Send(p, fwd) for p in self.peers if p != event.peer)
            return out
        if kind is Broadcast:
            self.seen.add(event.id)
            fwd = plumtree.Gossip(event.id, 1, event.payload, self.me)
            return [Deliver(event.id, event.payload, 0)] + [Send(p, fwd) for p in self.peers]
        if kind is NeighborUp:
            self.peers[event.peer] = None
        elif kind is NeighborDown:
            self.peers.pop(event.peer, None)
        return []


@dataclass
class Record:
    """What one measured broadcast did."""

    sent_at: float
    expected: set  # nodes live at send time (those that crash during the round drop out)
    delivered: set = field(default_factory=set)  # within its round
    eventually: set = field(default_factory=set)  # at any time (repairs, anti-entropy)
    payload_messages: int = 0
    max_round: int = 0
    last_at: float = 0.0  # the last delivery within its round


class Simulation:
    def __init__(
        self,
        nodes: int,
        seed: int = 1,
        loss: float = 0.0,
        latency: tuple[float, float] = (0.001, 0.010),
        detect: float = 1.0,
        broadcast: str = "plumtree",
        round_s: float = 1.0,
        cpu: float = 0.0,
        cores: int = 0,
        plumtree_config: plumtree.Config | None = None,
    ) -> None:
        self.n = nodes
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss = loss
        self.lat_lo, self.lat_span = latency[0], latency[1] - latency[0]
        self.detect = detect
        self.broadcast_kind = broadcast
        self.round_s = round_s  # a broadcast counts as delivered only within its round
        # CPU: each event a node handles takes ``cpu`` seconds, one at a time per node;
        # with ``cores``, the whole office shares that many CPUs (as on one machine).
        self.cpu = cpu
        self.node_free = [0.0] * nodes  # when each node is done with what it has
        self.core_free = [0.0] * cores  # a heap: when each shared CPU is free
        self.grafts = self.prunes = self.broadcasts = 0  # while counting
        self.plumtree_config = plumtree_config
        self.now = 0.0
        self.queue: list = []
        self.seq = 0
        self.stacks: list[Stack | None] = [None] * nodes
        self.incarnation = [0] * nodes  # bumps on every (re)start; stale timers are dropped
        self.group = [0] * nodes  # partition group: nodes talk only within their group
        self.records: dict[bytes, Record] = {}
        self.counting = False  # count control traffic only while measuring
        self.control_messages = 0
        self.payload_messages = 0
        self.events = 0
        self.next_id = 0

    # -- the network ------------------------------------------------------------------------

    def latency(self, a: int, b: int) -> float:
        """Fixed per pair, symmetric, reproducible from the seed, with no N x N table."""
        lo, hi = (a, b) if a < b else (b, a)
        h = (lo * 2654435761 ^ hi * 40503 ^ self.seed * 97531) & 0xFFFFFFFF
        h = (h ^ (h >> 15)) * 2246822519 & 0xFFFFFFFF
        return self.lat_lo + self.lat_span * ((h >> 8) / (1 << 24))

    def reachable(self, a: int, b: int) -> bool:
        return self.stacks[b] is not None and self.group[a] == self.group[b]

    def push(self, at: float, node: int, event: object) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, node, self.incarnation[node], event))

    def apply(self, node: int, effects: list) -> None:
        now = self.now
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                dest = effect.peer
                msg = effect.message
                mkind = type(msg)
                if mkind in PLUMTREE_MESSAGES:
                    if self.counting:
                        if mkind is plumtree.Gossip:
                            self.payload_messages += 1
                            rec = self.records.get(msg.id)
                            if rec is not None:
                                rec.payload_messages += 1
                        else:
                            self.control_messages += 1
                            if mkind is plumtree.Graft:
                                self.grafts += 1
                            elif mkind is plumtree.Prune:
                                self.prunes += 1
                    if self.loss and self.rng.random() < self.loss:
                        continue
                self.push(now + self.latency(node, dest), dest, (node, msg))
            elif kind is SetTimer:
                self.push(now + effect.delay, node, TimerFired(effect.timer))
            elif kind is Deliver:
                rec = self.records.get(effect.id)
                if rec is not None:
                    rec.eventually.add(node)
                if rec is not None and now - rec.sent_at <= self.round_s:
                    rec.delivered.add(node)
                    rec.last_at = max(rec.last_at, now)
                    if effect.round > rec.max_round:
                        rec.max_round = effect.round

    def by_datagram(self, sender: int, node: int, msg: object) -> bool:
        """Whether ``sender``'s node would send ``msg`` to ``node`` as a datagram (actors/
        overlay.py, Membership.apply); a connection stands between active peers."""
        stack = self.stacks[sender]
        if stack is None:
            return False
        hv = stack.hyparview
        return datagram.by_datagram(msg, hv.depends_on(node), node in hv.active_view)

    def run_until(self, until: float) -> None:
        queue = self.queue
        stacks = self.stacks
        incarnation = self.incarnation
        while queue and queue[0][0] <= until:
            at, _, node, inc, event = heapq.heappop(queue)
            self.now = at
            stack = stacks[node]
            if stack is None or inc != incarnation[node]:
                if type(event) is tuple:
                    # A message to a node that is down, or to the process it was before
                    # a restart: the sender's link to that incarnation resets.
                    sender = event[0]
                    if stacks[sender] is not None and (
                        not self.by_datagram(sender, node, event[1])
                        # A datagram to a node that is down comes back undeliverable
                        # (ICMP port unreachable): Membership fails a pending request.
                        or (stack is None and stacks[sender].hyparview.waiting_on(node))
                    ):
                        failed = PeerFailed(node, inc)
                        self.push(at + self.latency(node, sender), sender, failed)
                continue
            if self.cpu:
                # Wait for this node to finish what it is doing, and for a free CPU.
                start = max(at, self.node_free[node])
                if self.core_free:
                    start = max(start, self.core_free[0])
                if start > at:
                    self.seq += 1  # behind what is already waiting: order kept
                    heapq.heappush(queue, (start, self.seq, node, inc, event))
                    continue
                at = self.now = at + self.cpu  # its effects leave when it is done
                self.node_free[node] = at
                if self.core_free:
                    heapq.heapreplace(self.core_free, at)
            self.events += 1
            if type(event) is tuple:
                sender, msg = event
                if self.group[sender] != self.group[node]:
                    # Cut by a partition: lost, and the sender times out.
                    if not self.by_datagram(sender, node, msg):
                        self.push(at + self.detect, sender, PeerFailed(node, inc))
                    continue
                event = Receive(sender, msg)
            self.apply(node, stack.handle(at, event))
        self.now = max(self.now, until)

    # -- nodes ------------------------------------------------------------------------------

    def start(self, node: int, contact: int | None, known: tuple = ()) -> None:
        """``known``: the office's members as the node's stored state lists them (a node
        sends them to its membership at start: actors/state.py)."""
        self.incarnation[node] += 1
        rng = random.Random(self.seed * 1_000_003 + node * 7919 + self.incarnation[node])
        layer = Flood(node) if self.broadcast_kind == "flood" else None
        stack = Stack(
            node,
            rng,
            self.incarnation[node],
            plumtree_config=self.plumtree_config,  # read only: one for all
            broadcast_layer=layer,
        )
        self.stacks[node] = stack
        if contact is not None:
            self.apply(node, stack.handle(self.now, JoinVia(contact)))
        else:
            self.apply(node, stack.handle(self.now, TimerFired(hyparview.PromoteTick())))
        if known:
            self.apply(node, stack.handle(self.now, KnownPeers(tuple(known))))

    def crash(self, node: int) -> None:
        stack = self.stacks[node]
        if stack is None:
            return
        self.stacks[node] = None
        for peer in stack.hyparview.active_view:
            if self.stacks[peer] is not None:
                # The peer's keepalive on the link notices.
                delay = self.detect * (0.5 + self.rng.random())
                self.push(self.now + delay, peer, PeerFailed(node, self.incarnation[node]))

    def restart_links(self, node: int) -> None:
        """The node's connections restart (node_sup restarts its worker supervisor after
        a Gossip crash): it hears of each link's end at once, each peer a little later."""
        stack = self.stacks[node]
        if stack is None:
            return
        for peer in stack.hyparview.active_view:
            self.push(self.now, node, PeerFailed(peer, self.incarnation[peer]))
            if self.stacks[peer] is not None:
                delay = self.latency(node, peer) + 0.2 * self.rng.random()
                self.push(self.now + delay, peer, PeerFailed(node, self.incarnation[node]))

    def cut(self, groups: list[int]) -> None:
        """Partition: links between groups break and are noticed after the keepalive delay."""
        self.group = groups
        for a, stack in enumerate(self.stacks):
            if stack is None:
                continue
            for b in stack.hyparview.active_view:
                if groups[a] != groups[b]:
                    failed = PeerFailed(b, self.incarnation[b])
                    self.push(self.now + self.detect * (0.5 + self.rng.random()), a, failed)

    def heal(self) -> None:
        self.group = [0] * self.n

    def live(self) -> list[int]:
        return [i for i, s in enumerate(self.stacks) if s is not None]

    # -- broadcasts -------------------------------------------------------------------------

    def broadcast(self, sender: int) -> bytes:
        self.next_id += 1
        mid = self.next_id.to_bytes(8, "big")
        group = self.group[sender]
        expected = {i for i in self.live() if self.group[i] == group}
        self.records[mid] = Record(self.now, expected)
        self.broadcasts += self.counting
        stack = self.stacks[sender]
        self.apply(sender, stack.handle(self.now, Broadcast(mid, b"reading")))
        return mid

    def round(self, sender: int) -> Record:
        """One broadcast, then the rest of the round."""
        mid = self.broadcast(sender)
        self.run_until(self.now + self.round_s)
        rec = self.records[mid]
        rec.expected = {i for i in rec.expected if self.stacks[i] is not None}
        return rec

    # -- overlay checks ---------------------------------------------------------------------

    def overlay(self) -> dict:
        live = self.live()
        stacks = self.stacks
        symmetric = True
        empty = 0
        adjacency: dict[int, set] = {i: set() for i in live}
        for a in live:
            view = stacks[a].hyparview.active_view
            if not view:
                empty += 1
            for b in view:
                if stacks[b] is None or a not in stacks[b].hyparview.active_view:
                    symmetric = False
                if stacks[b] is not None:
                    adjacency[a].add(b)
                    adjacency[b].add(a)
        seen = set()
        if live:
            todo = deque([live[0]])
            seen.add(live[0])
            while todo:
                for b in adjacency[todo.popleft()]:
                    if b not in seen:
                        seen.add(b)
                        todo.append(b)
        sizes = [len(stacks[a].hyparview.active_view) for a in live]
        return {
            "connected": len(seen) == len(live),
            "symmetric": symmetric,
            "empty_active_views": empty,
            "active_view_mean": round(sum(sizes) / max(1, len(sizes)), 2),
            "live_nodes": len(live),
        }


def summarise(records: list[Record]) -> dict:
    """The papers' figures over a list of measured broadcasts."""
    if not records:
        return {"broadcasts": 0}
    reliabilities = []
    missed = 0
    rmrs = []
    to_all = []  # for broadcasts that reached every node expected, within their round
    for rec in records:
        if rec.expected <= rec.delivered:
            to_all.append(rec.last_at - rec.sent_at)
        got = rec.delivered & rec.expected
        reliabilities.append(len(got) / max(1, len(rec.expected)))
        missed += len(rec.expected) - len(got)
        n = len(rec.delivered)
        if n > 1:
            rmrs.append(rec.payload_messages / (n - 1) - 1)
    return {
        "broadcasts": len(records),
        "reliability": round(sum(reliabilities) / len(reliabilities), 6),
        "missed": missed,
        "rmr": round(sum(rmrs) / len(rmrs), 4) if rmrs else None,
        "ldh": max(rec.max_round for rec in records),
        **_time_to_all(to_all),
    }


def _time_to_all(times: list[float]) -> dict:
    """Median and 99th percentile time-to-all, ms (meaningful with ``--cpu``: without it,
    only the links' latencies add up)."""
    if not times:
        return {}
    p50, p99 = (percentile(times, q) for q in (0.5, 0.99))
    return {"time_to_all_p50_ms": round(1000 * p50, 2), "time_to_all_p99_ms": round(1000 * p99, 2)}


def run(args: argparse.Namespace) -> dict:
    wall = time.perf_counter()
    sim = Simulation(
        args.nodes,
        seed=args.seed,
        loss=args.loss,
        latency=tuple(args.latency),
        detect=args.detect,
        broadcast=args.broadcast,
        round_s=args.round,
        cpu=args.cpu,
        cores=args.cores,
        # The paper's rules for every copy, to stand beside ours for copies that crossed
        # a PRUNE (protocols/plumtree.py, Plumtree._crossed).
        plumtree_config=plumtree.Config(keep_crossed=False) if args.paper_prunes else None,
    )
    rng = random.Random(args.seed ^ 0x5EED)
    n = args.nodes

    # Build: one join every 10 ms through a random earlier node, then let shuffles mix.
    sim.start(0, None)
    for i in range(1, n):
        sim.run_until(sim.now + 0.01)
        sim.start(i, rng.randrange(i))
    sim.run_until(sim.now + args.settle)
    sender = rng.randrange(n)
    for _ in range(args.warmup):
        sim.round(sender)

    out: dict = {
        "scenario": args.scenario,
        "broadcast": args.broadcast,
        "nodes": n,
        "seed": args.seed,
        "loss": args.loss,
    }
    sim.counting = True
    sim.control_messages = sim.payload_messages = 0
    sim.grafts = sim.prunes = sim.broadcasts = 0
    records: list[Record] = []
    scenario = args.scenario

    def pick_sender() -> int:
        if scenario == "stable" and sim.stacks[sender] is not None:
            return sender
        return rng.choice(sim.live())

    if scenario in ("stable", "multi-sender"):
        for _ in range(args.broadcasts):
            records.append(sim.round(pick_sender()))
    elif scenario == "load":
        # One sender at --rate broadcasts a second, as bench/compare.py's publisher:
        # with --cpu, each broadcast's work can queue behind the last one's.
        mids = []
        for _ in range(args.broadcasts):
            mids.append(sim.broadcast(sender))
            sim.run_until(sim.now + 1.0 / args.rate)
        sim.run_until(sim.now + args.round)
        records = [sim.records[mid] for mid in mids]
    elif scenario == "mass-crash":
        victims = rng.sample(range(n), int(n * args.fail))
        for v in victims:
            sim.crash(v)
        for _ in range(args.broadcasts):
            records.append(sim.round(pick_sender()))
        rel = [summarise([r])["reliability"] for r in records]
        out["reliability_first"] = rel[0]
        healed = next((i for i, r in enumerate(rel) if r == 1.0), None)
        out["heal_rounds"] = None if healed is None else healed + 1
        after = records[healed:] if healed is not None else []
        out["missed_after_heal"] = summarise(after).get("missed") if after else None
    elif scenario == "churn":
        # Each round, a share --fail of the nodes crash and as many crashed ones come
        # back (same identity, new incarnation, as a rebooted Pi), joining a live node.
        down: list[int] = []
        per_round = max(1, int(n * args.fail))
        for _ in range(args.broadcasts):
            live = sim.live()
            for v in rng.sample(live, min(per_round, len(live) - 1)):
                sim.crash(v)
                down.append(v)
            rng.shuffle(down)
            for _ in range(min(per_round, len(down))):
                back = down.pop()
                sim.start(back, rng.choice(sim.live()))
            records.append(sim.round(pick_sender()))
        out["during"] = summarise(records)
        sim.run_until(sim.now + args.settle)
        records = [sim.round(pick_sender()) for _ in range(args.warmup)]
        out["after"] = summarise(records)
    elif scenario == "partition":
        groups = [rng.randrange(2) for _ in range(n)]
        sim.cut(groups)
        during = [sim.round(pick_sender()) for _ in range(args.broadcasts // 2)]
        out["during"] = summarise(during)
        out["overlay_during"] = sim.overlay()
        sim.heal()
        sim.run_until(sim.now + args.settle)
        records = [sim.round(pick_sender()) for _ in range(args.broadcasts - len(during))]
        out["after"] = summarise(records)

    out.update(summarise(records))
    out["control_per_payload"] = round(sim.control_messages / max(1, sim.payload_messages), 4)
    # over every broadcast since counting began (churn and partition measure a part)
    out["grafts_per_broadcast"] = round(sim.grafts / max(1, sim.broadcasts), 3)
    out["prunes_per_broadcast"] = round(sim.prunes / max(1, sim.broadcasts), 3)
    # Let the overlay quiesce before judging its shape: in-flight joins and repairs land.
    sim.run_until(sim.now + args.quiesce)
    # What the repairs (GRAFTs, anti-entropy) never brought, even given the quiesce.
    out["missed_after_quiesce"] = sum(len(r.expected - r.eventually) for r in records)
    out.update(sim.overlay())
    out["events"] = sim.events
    out["wall_seconds"] = round(time.perf_counter() - wall, 2)
    return out


def parse_args(argv: list[str] | None, prog: str = "simulate.py") -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run N nodes of the real HyParView + Plumtree code over a simulated network.",
    )
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--scenario", choices=SCENARIOS, default="stable")
    p.add_argument(
        "--fail",
        type=float,
        default=None,
        help="mass-crash: share of nodes that crash at once (default 0.8); "
        "churn: share that crash and restart each round (default 0.01)",
    )
    p.add_argument("--loss", type=float, default=0.0, help="drop Plumtree messages with this p")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--broadcasts", type=int, default=50, help="measured broadcasts")
    p.add_argument("--broadcast", choices=("plumtree", "flood"), default="plumtree")
    p.add_argument("--round", type=float, default=1.0, help="simulated seconds per broadcast")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured broadcasts first")
    p.add_argument("--settle", type=float, default=30.0, help="simulated seconds to settle")
    p.add_argument("--quiesce", type=float, default=10.0)
    p.add_argument(
        "--latency",
        type=float,
        nargs=2,
        default=(0.001, 0.010),
        metavar=("LO", "HI"),
        help="per-link latency range, seconds",
    )
    p.add_argument("--detect", type=float, default=1.0, help="keepalive failure detection, s")
    p.add_argument("--rate", type=float, default=20.0, help="load: broadcasts per second")
    p.add_argument(
        "--cpu",
        type=float,
        default=0.0,
        help="seconds of CPU each event a node handles takes, one at a time (default 0)",
    )
    p.add_argument(
        "--cores", type=int, default=0, help="CPUs the whole office shares (default: one a node)"
    )
    p.add_argument(
        "--paper-prunes",
        action="store_true",
        help="Plumtree takes a payload that crossed its PRUNE as any other, as the paper does",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.fail is None:
        args.fail = 0.8 if args.scenario == "mass-crash" else 0.01
    problems = []
    if args.nodes < 2:
        problems.append("--nodes must be at least 2")
    if not 0.0 <= args.fail < 1.0:
        problems.append("--fail must be in [0, 1)")
    if not 0.0 <= args.loss < 1.0:
        problems.append("--loss must be in [0, 1)")
    if args.broadcasts < 1:
        problems.append("--broadcasts must be at least 1")
    if not 0 <= args.latency[0] <= args.latency[1]:
        problems.append("--latency needs 0 <= LO <= HI")
    if args.round <= 0 or args.detect <= 0 or args.rate <= 0:
        problems.append("--round, --detect and --rate must be positive")
    if args.cpu < 0 or args.cores < 0:
        problems.append("--cpu and --cores cannot be negative")
    if args.warmup < 0 or args.settle < 0 or args.quiesce < 0:
        problems.append("--warmup, --settle and --quiesce cannot be negative")
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None, prog: str = "simulate.py") -> int:
    args = parse_args(argv, prog)
    result = run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:>22}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
