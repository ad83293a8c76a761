"""``satellite chaos``: the crash-injection harness (issue 6).

    satellite chaos [--nodes N | --attach HOST:PORT] [--duration SECONDS] [--seed S]
                    [--kill-actors RATE] [--kill-nodes RATE] [--partition] [--loss P]
                    [--delay MS] [--net {auto,netns,hooks}] [--report FILE]

It starts N real nodes on 127.0.0.1, or each in a network namespace of its own (below)
(``bench.cluster``; data dirs and logs in a temporary directory), or attaches to a running
office, and for ``--duration`` seconds runs a workload while it injects faults on a
schedule drawn from ``random.Random(seed)``:

- the workload: events published from random nodes (5/s, name ``chaos``), target writes
  from random nodes (1/s over three ``chaos-*`` names), sensor readings (the nodes do that);
  each acknowledged publish and each write's HLC stamp is recorded;
- ``--kill-actors RATE``: SIGKILL a random actor process of a random live node, any role,
  supervisors included (the root node_sup too, when the harness started the node: its
  launcher then exits and is restarted, as systemd would);
- ``--kill-nodes RATE``: SIGKILL every process of a node and restart it on the same data
  dir 1-5 s later, at most ceil(N/3) nodes down at once;
- ``--partition``: about every 20 s, two random halves cut apart for 5-10 s;
- ``--loss P`` / ``--delay MS``: every node drops that share of what it sends to its
  peers and delays the rest, for the whole fault phase.

Where the machine allows it (root, ``ip netns``, ``tc``; ``--net auto``, the default, or
``--net netns``) and the harness starts the nodes, the network faults are the kernel's:
each node runs in a network namespace of its own on a bridge (``NetLab``), a partition
is unreachable routes between the halves plus ``ss -K`` on their live links, and loss and
delay are ``tc netem`` on each node's link (loss by nftables where the kernel has no
netem). Elsewhere (``--attach``, not root, ``--net hooks``) they go through the node's
own hooks: a partition through Membership's block list (``antenna.block``), loss and
delay in the PeerWorkers' send path (``antenna.faults``); the report says which, and why.

Then it heals everything, waits for convergence and checks: every acknowledged event was
delivered by every node that stayed up from its publication on (read from each node's
delivery log, ``antenna.delivered``, polled every second: at the node, not at a client;
an event that never left its origin because the origin went down within ORIGIN_GRACE
seconds after acknowledging it is reported apart, since a publish is acknowledged once
the node's Gossip has it in its mailbox, at most once; ``--strict`` counts it as lost);
every node has the same office state; every target ends with its last acknowledged write
(or with a write whose acknowledgement was lost, which may have won); and, when it
started the nodes, that none of their processes outlives the run. Exit status 0 when all
hold, 1 otherwise (one line on stderr says why), 130 on Ctrl-C (the nodes it started are
stopped first, by pid).

The schedule (``make_schedule``) and the checks (``find_lost``, ``check_targets``,
``compare_states``) are pure functions, tested on synthetic data.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from satellite.antenna import Antenna, AntennaError, parse_node

DEFAULT_NODES = 5
DEFAULT_DURATION = 60.0
EVENT_NAME = "chaos"
TARGET_NAMES = ("chaos-lights", "chaos-blinds", "chaos-fan")
PUBLISH_RATE = 5.0  # events per second over the whole cluster
SET_RATE = 1.0  # target writes per second
POLL_INTERVAL = 1.0  # seconds between two reads of a node's delivery log
# Seconds a node gets to answer one of our requests. Generous: on a starved machine a
# request that times out closes its connection, and the next one costs the node a new
# ClientWorker process, which is slower still to start. So every thread keeps one
# connection per node and waits rather than churns.
REQUEST_TIMEOUT = 10.0
POLL_TIMEOUT = 20.0  # a delivery log: its reader has nothing better to do than wait
# A topology asks every actor of the node (each gets a second): more on a loaded machine.
TOPOLOGY_TIMEOUT = 15.0
KILL_TOPOLOGY_TIMEOUT = 5.0  # then the process table (a kill must come on time)
QUICK_POLL = 3.0  # the read of a delivery log just before a kill: no longer than this
NODE_DOWN = (1.0, 5.0)  # seconds a killed node stays down before its restart
# How long a restarted node may take to answer again (a loaded 2-core machine takes
# several seconds to start a node's dozen processes): the schedule counts a killed node as
# down this much longer than its planned down time when it keeps ceil(N/3) nodes up.
RESTART_ALLOWANCE = 10.0
PARTITION_GAP = (15.0, 25.0)  # seconds between the starts of two partitions ("every ~20 s")
PARTITION_FIRST = (5.0, 15.0)
PARTITION_LENGTH = (5.0, 10.0)
# A Gossip kill: within this long the supervisor has a new Gossip, and the node's clients
# send to it again. (Membership has no process of its own to kill: node_sup hosts it.)
GOSSIP_RESTART = 5.0
GOSSIP_ROLES = ("gossip", "node_sup")
# An acknowledged event that never left its origin is put down to the origin's crash only
# if the crash came this soon after it (on a starved machine a Gossip's mailbox can hold
# it that long, or a node just restarted can take that long to find a peer); later, the
# origin had its chance and the event counts as lost.
ORIGIN_GRACE = 10.0
SYSTEMD_RESTART = 1.0  # seconds before a node whose launcher exited is started again
INTENSITY = (4, 30.0)  # attach mode: at most this many kills per node per window (node_sup
# gives up at 6 restarts in 30 s, and in attach mode nobody would restart the node)
TEMPORARY = ("peer_worker", "client_worker")  # not restarted by design: HyParView redials
PARTITION_METHOD = "block-hook"
RNG_STREAMS = ("kill_actor", "kill_node", "partition")


# --- the schedule (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule. ``at`` is in seconds from the start of the fault phase.

    ``node`` is the index of the node to hit (at run time, the next live one when that one
    is down); ``pick`` (in [0, 1)) chooses the actor among the node's live ones for
    ``kill_actor``; ``duration`` is the down time of ``kill_node`` and the length of a
    ``partition``, whose ``halves`` are two disjoint tuples of node indices."""

    at: float
    kind: str  # "kill_actor" | "kill_node" | "partition"
    node: int = -1
    pick: float = 0.0
    duration: float = 0.0
    halves: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())


@dataclass(frozen=True)
class Schedule:
    seed: int
    nodes: int
    duration: float
    faults: tuple[Fault, ...]
    max_down: int

    def count(self, kind: str) -> int:
        return sum(1 for f in self.faults if f.kind == kind)


def max_down_for(nodes: int) -> int:
    """At most this many nodes down at once: ceil(N/3)."""
    return max(1, math.ceil(nodes / 3))


def _poisson_times(rng: random.Random, rate: float, duration: float) -> list[float]:
    """Arrival times of a Poisson process of ``rate`` per second on [0, duration)."""
    times: list[float] = []
    if rate <= 0:
        return times
    t = rng.expovariate(rate)
    while t < duration:
        times.append(round(t, 3))
        t += rng.expovariate(rate)
    return times


def make_schedule(
    seed: int,
    nodes: int,
    duration: float,
    kill_actors: float = 0.0,
    kill_nodes: float = 0.0,
    partition: bool = False,
    max_down: int | None = None,
) -> Schedule:
    """The faults of a run, from the seed alone. Each kind draws from its own
    ``random.Random(f"{seed}:{kind}")``, so changing one rate leaves the other kinds'
    faults where they were."""
    max_down = max_down_for(nodes) if max_down is None else max_down
    rngs = {kind: random.Random(f"{seed}:{kind}") for kind in RNG_STREAMS}
    faults: list[Fault] = []

    rng = rngs["kill_actor"]
    for t in _poisson_times(rng, kill_actors, duration):
        faults.append(Fault(t, "kill_actor", node=rng.randrange(nodes), pick=rng.random()))

    # Node kills: a Poisson process thinned so that, counting a restart as taking
    # RESTART_ALLOWANCE more than the planned down time, at most max_down are down at once.
    rng = rngs["kill_node"]
    busy: list[tuple[float, int]] = []  # (planned back at, node)
    for t in _poisson_times(rng, kill_nodes, duration):
        down = round(rng.uniform(*NODE_DOWN), 3)
        choice = rng.random()
        busy = [(until, n) for until, n in busy if until > t]
        free = [n for n in range(nodes) if n not in {b for _, b in busy}]
        if len(busy) >= max_down or not free:
            continue
        node = free[int(choice * len(free))]
        busy.append((t + down + RESTART_ALLOWANCE, node))
        faults.append(Fault(t, "kill_node", node=node, duration=down))

    rng = rngs["partition"]
    if partition and nodes >= 2:
        t = rng.uniform(*PARTITION_FIRST)
        while t < duration:
            length = rng.uniform(*PARTITION_LENGTH)
            order = list(range(nodes))
            rng.shuffle(order)
            half = nodes // 2
            halves = (tuple(sorted(order[:half])), tuple(sorted(order[half:])))
            if t + length > duration:
                break  # a partition lies wholly inside the fault phase
            faults.append(Fault(round(t, 3), "partition", duration=round(length, 3), halves=halves))
            t += rng.uniform(*PARTITION_GAP)

    faults.sort(key=lambda f: (f.at, f.kind))
    return Schedule(seed, nodes, duration, tuple(faults), max_down)


# --- what happened (records) --------------------------------------------------------------------


@dataclass
class Publish:
    id: int
    node: str
    at: float  # seconds from the start of the fault phase, when the request was sent
    acked: bool = False


@dataclass
class Write:
    name: str
    value: Any
    node: str
    at: float
    stamp: tuple | None = None  # the HLC stamp of an acknowledged write, else None


@dataclass(frozen=True)
class Lost:
    id: int
    node: str  # where it was not delivered
    origin: str  # where it was published
    at: float  # when


# --- the checks (pure) --------------------------------------------------------------------------


def expected_at(at: float, downtimes: Iterable[tuple[float, float | None]]) -> bool:
    """Whether a node with these down intervals (``(start, end)``, ``end`` None: still down)
    was up from ``at`` to the end: only then must it have delivered what was published at
    ``at``. (A node killed later, or down at that time, is let off.)"""
    return all(end is not None and end <= at for _, end in downtimes)


@dataclass
class DeliveryCheck:
    lost: list[Lost]  # (event, node) pairs owed and never delivered
    # Events that never left their origin, which crashed (the node, or its Gossip) at or
    # after their publication: a publish is acknowledged once the node's Gossip has it in
    # its mailbox, so these went down with it (at most once). Lost too under ``strict``.
    with_origin: list[dict]
    expected: int  # (event, node) deliveries owed


def find_lost(
    publishes: Iterable[Publish],
    delivered: Mapping[str, set[int]],
    downtimes: Mapping[str, list],
    nodes: Iterable[str],
    crashes: Mapping[str, list[float]] | None = None,
    strict: bool = False,
) -> DeliveryCheck:
    """The acknowledged events some node should have delivered and did not.

    ``crashes[node]``: the times by which that node had lost what its Gossip held (a
    node or Gossip kill, the end of its restart)."""
    crashes = crashes or {}
    nodes = list(nodes)
    lost: list[Lost] = []
    with_origin: list[dict] = []
    expected = 0
    for p in publishes:
        if not p.acked:
            continue
        owed = [n for n in nodes if expected_at(p.at, downtimes.get(n, []))]
        missing = [n for n in owed if p.id not in delivered.get(n, set())]
        left = any(p.id in delivered.get(n, set()) for n in nodes if n != p.node)
        crash = min((c for c in crashes.get(p.node, []) if c >= p.at), default=None)
        if crash is not None and crash - p.at > ORIGIN_GRACE:
            crash = None  # it had all that time to pass it on
        if missing and not left and crash is not None and not strict:
            with_origin.append(
                {
                    "id": p.id,
                    "origin": p.node,
                    "at": round(p.at, 3),
                    "origin_crash_s": round(crash - p.at, 3),
                    "owed_at": len(missing),
                }
            )
            continue
        expected += len(owed)
        lost.extend(Lost(p.id, n, p.node, p.at) for n in missing)
    return DeliveryCheck(lost, with_origin, expected)


def check_targets(writes: Iterable[Write], final: Mapping[str, Any]) -> list[str]:
    """Problems with the final targets: for each name written, the final value must be
    that of the acknowledged write with the highest HLC stamp, unless a write whose
    acknowledgement never came (values are unique per attempt) may have won instead.
    An acknowledged write that is not the winner is fine: it was superseded."""
    by_name: dict[str, list[Write]] = {}
    for w in writes:
        by_name.setdefault(w.name, []).append(w)
    problems = []
    for name, ws in sorted(by_name.items()):
        acked = [w for w in ws if w.stamp is not None]
        unacked = [w for w in ws if w.stamp is None]
        present = name in final
        value = final.get(name)
        if not acked:
            if present and not any(w.value == value for w in unacked):
                problems.append(f"{name} is {value!r}, which none of our writes set")
            continue
        best = max(acked, key=lambda w: tuple(w.stamp))
        if present and value == best.value:
            continue
        if present and any(w.value == value for w in unacked):
            continue  # a write whose acknowledgement was lost won: allowed
        if not present:
            problems.append(
                f"{name} is missing; its last acknowledged write {best.value!r} "
                f"(stamp {list(best.stamp)}, at {best.node}) is lost"
            )
        elif any(w.value == value for w in acked):
            problems.append(
                f"{name} ends {value!r}, an older acknowledged write, where the last "
                f"acknowledged one was {best.value!r} (stamp {list(best.stamp)}, at {best.node})"
            )
        else:
            problems.append(
                f"{name} ends {value!r}, which none of our writes set (the last "
                f"acknowledged one was {best.value!r})"
            )
    return problems


def comparable(state: Mapping) -> dict:
    """The parts of a node's office state that every node must agree on once healed:
    the targets, and which nodes, readings and devices there are (their values move:
    readings are read every second, and a node's links and last-seen times change)."""
    devices = state.get("online_devices") or []
    return {
        "targets": dict(state.get("targets") or {}),
        "nodes": sorted(state.get("nodes") or {}),
        "readings": sorted(state.get("readings") or {}),
        "online_devices": sorted(str(d.get("mac_addr")) for d in devices if isinstance(d, Mapping)),
    }


def compare_states(states: Mapping[str, Mapping | None]) -> list[str]:
    """Where the nodes' states differ, one line per difference ([] when identical).
    ``None`` stands for a node that did not answer."""
    problems = [f"{node} did not answer" for node, s in sorted(states.items()) if s is None]
    views = {node: comparable(s) for node, s in sorted(states.items()) if s is not None}
    if len(views) < 2:
        return problems
    names = sorted({t for v in views.values() for t in v["targets"]})
    missing = object()
    for name in names:
        values: dict[str, list[str]] = {}
        for node, v in views.items():
            value = v["targets"].get(name, missing)
            key = "(absent)" if value is missing else json.dumps(value, sort_keys=True)
            values.setdefault(key, []).append(node)
        if len(values) > 1:
            parts = "; ".join(f"{','.join(ns)}: {val}" for val, ns in sorted(values.items()))
            problems.append(f"target {name} differs: {parts}")
    for part in ("nodes", "readings", "online_devices"):
        groups: dict[str, list[str]] = {}
        for node, v in views.items():
            groups.setdefault(json.dumps(v[part]), []).append(node)
        if len(groups) > 1:
            parts = "; ".join(f"{','.join(ns)}: {val}" for val, ns in sorted(groups.items()))
            problems.append(f"{part} differ: {parts}")
    return problems


def role_of(row_id: str) -> str:
    """A tree row's role: ``peer_worker-3`` -> ``peer_worker``."""
    return re.sub(r"-\d+$", "", str(row_id))


def actor_rows(tree: Mapping) -> list[dict]:
    """Every actor of a topology tree with a pid, the root first, in tree order."""
    out = []
    if tree.get("pid"):
        out.append({"id": tree.get("id"), "pid": tree["pid"], "restarts": 0})
    for child in tree.get("children") or []:
        out.extend(_rows(child))
    return out


def _rows(row: Mapping) -> list[dict]:
    out = []
    if row.get("pid"):
        out.append({"id": row.get("id"), "pid": row["pid"], "restarts": row.get("restarts", 0)})
    for child in row.get("children") or []:
        out.extend(_rows(child))
    return out


# Process titles (``satellite[<node>] <Role>``) -> the tree's ids, for local_actor_rows.
TITLES = {
    "Supervisor:node_sup": "node_sup",
    "Gossip": "gossip",
    "PeerWorker": "peer_worker",
    "ClientWorker": "client_worker",
    "Dashboard": "dashboard",
}


def local_actor_rows(node: str) -> list[dict]:
    """The node's actor processes on this machine, by their titles, the root first (in
    tree order, as ``actor_rows``): for when the node is too slow to tell its tree."""
    order = list(TITLES.values())
    rows = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or []).strip()  # setproctitle pads with NULs
        prefix = f"satellite[{node}] "
        if title.startswith(prefix) and title[len(prefix) :] in TITLES:
            role = TITLES[title[len(prefix) :]]
            rows.append({"id": role, "pid": proc.info["pid"], "restarts": 0})
    rows.sort(key=lambda r: (order.index(r["id"]), r["pid"]))
    return rows


def restarts_by_role(trees: Iterable[Mapping]) -> dict[str, int]:
    """The supervisors' restart counts, summed by role over every row of these trees."""
    total: Counter = Counter()
    for tree in trees:
        for child in tree.get("children") or []:
            for row in _all_rows(child):
                total[role_of(row.get("id"))] += int(row.get("restarts") or 0)
    return {role: n for role, n in sorted(total.items()) if n}


def _all_rows(row: Mapping) -> list[Mapping]:
    out = [row]
    for child in row.get("children") or []:
        out.extend(_all_rows(child))
    return out


# --- the report ----------------------------------------------------------------------------------


@dataclass
class Report:
    mode: str  # "cluster" (started here) or "attach"
    nodes: list[str]
    seed: int
    duration: float
    options: dict
    partition_method: str = PARTITION_METHOD  # "netns" (the kernel) or "block-hook"
    net_mode: str = "hooks"  # where network faults go: "netns" or "hooks"
    net_reason: str = ""  # one line: why hooks, or what the kernel does
    loss_method: str = "hook"  # "netem", "nftables" or "hook"
    network: dict = field(default_factory=dict)  # netns mode: bridge, subnet, namespaces
    net_leftovers: list = field(default_factory=list)  # this run's namespaces/links still there
    faults: dict = field(default_factory=dict)  # kind -> how many were injected
    skipped: dict = field(default_factory=dict)  # kind -> how many the run could not inject
    actor_kills_by_role: dict = field(default_factory=dict)
    pid_sources: dict = field(default_factory=dict)  # where the killed pids were read
    restarts_by_role: dict = field(default_factory=dict)
    recovery_s: dict = field(default_factory=dict)
    node_exits: list = field(default_factory=list)
    events: dict = field(default_factory=dict)
    lost: list = field(default_factory=list)
    lost_with_origin: list = field(default_factory=list)
    unverified: list = field(default_factory=list)  # nodes whose delivery log was unreadable
    targets: dict = field(default_factory=dict)
    converge_s: float | None = None  # from the heal to one state everywhere
    delivery_complete_s: float | None = None  # from the heal to every expected delivery
    state_identical: bool = False
    differences: list = field(default_factory=list)
    leftovers: list = field(default_factory=list)
    work_dir: str | None = None
    polls: dict = field(default_factory=dict)  # node -> reads of its delivery log
    timeline: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def reason(self) -> str:
        return "; ".join(self.failures)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["reason"] = self.reason() or None
        return out

    def text(self) -> str:
        kinds = ("kill_actor", "kill_node", "partition")
        planned = self.options.get("planned", {})
        injected = ", ".join(
            f"{k} {self.faults.get(k, 0)}/{planned.get(k, self.faults.get(k, 0))}" for k in kinds
        )
        injected += " (done/planned"
        if self.skipped:
            injected += f"; skipped: {_counts(self.skipped)}"
        late = sum(planned.values()) - sum(self.faults.values()) - sum(self.skipped.values())
        if late > 0:
            injected += f"; {late} still queued at the end"
        injected += ")"
        loss, delay = self.options.get("loss", 0), self.options.get("delay_ms", 0)
        ev, tg = self.events, self.targets
        exits = Counter(e["cause"] for e in self.node_exits)
        rec = self.recovery_s
        lines = [
            f"satellite chaos: {len(self.nodes)} nodes ({self.mode}: {', '.join(self.nodes)}), "
            f"{self.duration:g} s, seed {self.seed}",
            f"  faults injected    {injected}",
            f"  network faults     loss {loss:g}, delay {delay} ms"
            + (f" (by {self.loss_method})" if loss or delay else "")
            + f"; partitions by {self.partition_method}",
            f"  injected through   {self.net_mode}: {self.net_reason or 'as asked'}",
            f"  actor kills        {_counts(self.actor_kills_by_role) or 'none'}"
            + (
                f" (pids from: {_counts(self.pid_sources)})"
                if self.pid_sources.get("process table")
                else ""
            ),
            f"  restarts by role   {_counts(self.restarts_by_role) or 'none'}",
        ]
        if rec.get("count"):
            lines.append(
                f"  actor recovery     {rec['count']} permanent actors seen back within median "
                f"{rec['median']:.2f} s, max {rec['max']:.2f} s"
                + (f"; NOT back: {rec['not_recovered']}" if rec.get("not_recovered") else "")
            )
        if exits:
            lines.append(f"  node exits         {_counts(exits)} (each restarted on its data dir)")
        lines += [
            f"  events             published {ev.get('published', 0)}, acknowledged "
            f"{ev.get('acknowledged', 0)}, delivered {ev.get('delivered', 0)} of "
            f"{ev.get('expected', 0)} expected (event, node) pairs, lost {len(self.lost)}",
        ]
        if ev.get("redelivered_after_restart") or ev.get("duplicates_same_epoch"):
            lines.append(
                f"                     delivered again after a Gossip restart "
                f"{ev.get('redelivered_after_restart', 0)}, duplicates within one Gossip "
                f"lifetime {ev.get('duplicates_same_epoch', 0)}"
            )
        for item in self.lost[:20]:
            where = ", ".join(item.get("delivered_at") or []) or "nowhere"
            lines.append(
                f"    LOST: event {item['id']} (from {item['origin']} at "
                f"{item['at']:.1f} s) never delivered at {item['node']} (delivered at: {where})"
            )
        if len(self.lost) > 20:
            lines.append(f"    ... and {len(self.lost) - 20} more (see --report)")
        if self.lost_with_origin:
            gone = self.lost_with_origin
            held = max(x["origin_crash_s"] for x in gone)
            lines.append(
                f"  died with origin   {len(gone)} acknowledged events never left a node that "
                f"went down (or lost its Gossip) within {held:.1f} s after acknowledging them "
                f"(publish is at most once; --strict counts them as lost): ids "
                + ", ".join(str(x["id"]) for x in gone[:15])
                + (" ..." if len(gone) > 15 else "")
            )
        if self.unverified:
            lines.append(
                f"  UNVERIFIED         the delivery logs of {', '.join(self.unverified)} could "
                "not be read at the end"
            )
        for restart in ev.get("unexplained_gossip_restarts") or []:
            lines.append(f"  WARNING            a Gossip restarted with no kill of ours: {restart}")
        lines.append(
            f"  target writes      {tg.get('attempted', 0)} attempted, {tg.get('acknowledged', 0)} "
            f"acknowledged; final values " + ("ok" if not tg.get("problems") else "WRONG")
        )
        for problem in tg.get("problems") or []:
            lines.append(f"    {problem}")
        conv = f"{self.converge_s:.2f} s after the heal" if self.converge_s is not None else "NO"
        lines.append(
            f"  state identical    {'yes' if self.state_identical else 'NO'} (converged: {conv}; "
            f"targets, nodes, readings, devices)"
        )
        for diff in self.differences[:10]:
            lines.append(f"    {diff}")
        if self.delivery_complete_s is not None:
            lines.append(f"  deliveries done    {self.delivery_complete_s:.2f} s after the heal")
        if self.mode == "cluster":
            left = ", ".join(str(p) for p in self.leftovers) if self.leftovers else "none"
            lines.append(f"  processes left     {left}")
            if self.net_mode == "netns":
                net_left = ", ".join(self.net_leftovers) if self.net_leftovers else "none"
                lines.append(f"  namespaces left    {net_left}")
        if self.work_dir:
            lines.append(f"  data dirs and logs {self.work_dir}")
        verdict = "PASS" if self.ok else f"FAIL: {self.reason()}"
        if self.interrupted:
            verdict = "INTERRUPTED"
        lines.append(f"  result             {verdict}")
        return "\n".join(lines)


def _counts(counts: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- network namespaces: faults in the kernel ----------------------------------------------------

NET_CHOICES = ("auto", "netns", "hooks")
NET_COMMAND_TIMEOUT = 20.0  # one ip, tc, nft or ss command, on a loaded machine
NFT_TABLE = "satellite_chaos"
NODE_HOST_OFFSET = 10  # node i gets .10+i of the run's /24; the bridge is .1
# The first token of an `ip route show table all` line when it is the route's type.
ROUTE_TYPES = {
    "unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit",
    "blackhole", "nat", "anycast",
}  # fmt: skip


class NetError(RuntimeError):
    """An ip, tc, nft or ss command failed (the message is one line)."""


def net_command(argv: list[str], stdin: str | None = None) -> str:
    """Run one network command; its output, or NetError with its complaint on one line."""
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=NET_COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetError(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise NetError(f"{' '.join(argv)}: {why}")
    return done.stdout


def _quiet(argv: list[str], stdin: str | None = None) -> bool:
    try:
        net_command(argv, stdin)
        return True
    except NetError:
        return False


@dataclass(frozen=True)
class NetSupport:
    """What this machine allows for faults in the kernel (``detect_netns``)."""

    namespaces: bool  # root, ip, tc and ss; a namespace with a veth and a bridge can be made
    netem: bool = False  # sch_netem: loss and delay on a link
    nft_loss: bool = False  # nftables drops a random share of packets (loss without netem)
    sock_kill: bool = False  # `ss -K` closes live TCP sockets (a partition breaks links)
    reason: str = ""  # why not, or what is missing (one line)


def nft_loss_rules(device: str, loss: float) -> str:
    """An nftables table dropping ``loss`` of what leaves through ``device``, at random
    per packet, as netem's loss does."""
    share = round(loss * 10_000)
    return (
        f"table inet {NFT_TABLE} {{\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f'    oifname "{device}" numgen random mod 10000 < {share} drop\n'
        "  }\n"
        "}\n"
    )


def _sockets_can_be_killed() -> bool:
    """Whether `ss -K` closes a live TCP connection (the kernel needs INET_DIAG_DESTROY).
    Tried on a connection of our own on loopback, named by both its ports."""
    server = socket.socket()
    client = None
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=5)
        accepted, _ = server.accept()
        with accepted:
            ends = [f"127.0.0.1:{client.getsockname()[1]}", f"127.0.0.1:{server.getsockname()[1]}"]
            net_command(["ss", "-K", "-t", "-n", "src", ends[0], "dst", ends[1]])
            client.setblocking(False)  # `ss -K` is done when it returns: no need to wait
            try:
                client.recv(1)
            except BlockingIOError:
                return False  # still open: this kernel cannot close it
            except OSError:
                return True  # ECONNABORTED: closed under us, as a partition needs
            return True
    except (OSError, NetError):
        return False
    finally:
        server.close()
        if client is not None:
            client.close()


def detect_netns() -> NetSupport:
    """Whether nodes can be put in network namespaces of their own and faults injected
    between them in the kernel: root, `ip`, `tc` and `ss` on PATH, and a throwaway
    namespace (with a veth pair and a bridge in it) that can be made and removed; then
    which faults the kernel has: sch_netem (loss and delay), else nftables (loss only),
    and `ss -K` (a partition that breaks live links)."""
    if os.geteuid() != 0:
        return NetSupport(False, reason="not root (network namespaces need root)")
    for tool in ("ip", "tc", "ss"):
        if shutil.which(tool) is None:
            return NetSupport(False, reason=f"`{tool}` is not on PATH (iproute2)")
    name = f"satprobe-{os.urandom(3).hex()}"
    try:
        net_command(["ip", "netns", "add", name])
    except NetError as exc:
        return NetSupport(False, reason=f"cannot create a network namespace ({exc})")
    try:
        try:
            net_command(["ip", "-n", name, "link", "set", "lo", "up"])
            net_command(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "p1"])
            net_command(["ip", "-n", name, "link", "add", "pb", "type", "bridge"])
        except NetError as exc:
            return NetSupport(False, reason=f"cannot make links in a namespace ({exc})")
        missing = []
        try:
            argv = ["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
            net_command(argv)
            netem = True
        except NetError as exc:
            netem = False
            complaint = str(exc).rpartition(": ")[2].rstrip(".")
            missing.append(f"no sch_netem in this kernel (tc: {complaint})")
        nft = False
        if not netem:
            nft = shutil.which("nft") is not None and _quiet(
                ["ip", "netns", "exec", name, "nft", "-f", "-"], nft_loss_rules("lo", 0.5)
            )
            if not nft:
                missing.append("no nftables to drop packets with")
        kill = _sockets_can_be_killed()
        if not kill:
            missing.append("`ss -K` cannot close sockets (no INET_DIAG_DESTROY)")
        return NetSupport(True, netem, nft, kill, "; ".join(missing))
    finally:
        _quiet(["ip", "netns", "del", name])


@dataclass(frozen=True)
class NetPlan:
    mode: str  # "netns" or "hooks"
    why: str  # one line: why hooks, or what the kernel does
    support: NetSupport | None = None
    loss_by: str = "hook"  # "netem", "nftables" or "hook"


def choose_net(
    net: str,
    attach: bool,
    partition: bool,
    loss: float,
    delay: int,
    detect: Callable[[], NetSupport] = detect_netns,
) -> NetPlan:
    """Where the network faults go: the kernel between namespaces ("netns"), or the
    nodes' hooks. ``net`` is --net (auto, netns, hooks); the machine is probed only
    when namespaces could be used."""
    if net == "hooks":
        return NetPlan("hooks", "--net hooks")
    if attach:
        return NetPlan("hooks", "--attach: the office's nodes are not in namespaces of ours")
    if net == "auto" and not (partition or loss or delay):
        return NetPlan("hooks", "no partition, loss or delay asked")
    support = detect()
    if not support.namespaces:
        return NetPlan("hooks", support.reason, support)
    if partition and not support.sock_kill:
        return NetPlan("hooks", f"partitions need `ss -K`: {support.reason}", support)
    if delay and not support.netem:
        return NetPlan("hooks", f"--delay needs sch_netem: {support.reason}", support)
    if loss and not (support.netem or support.nft_loss):
        return NetPlan("hooks", f"--loss needs sch_netem or nftables: {support.reason}", support)
    loss_by = ("netem" if support.netem else "nftables") if loss else "hook"
    why = "one namespace per node (root, ip netns and tc allow it)"
    if loss:
        why += f"; loss by {loss_by}" + (f": {support.reason}" if support.reason else "")
    return NetPlan("netns", why, support, loss_by if loss else "none")


def pick_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no route of this machine covers (the default route aside)."""
    rng = rng or random.SystemRandom()
    used = []
    for line in net_command(["ip", "-4", "-o", "route", "show", "table", "all"]).splitlines():
        words = line.split()
        if words and words[0] in ROUTE_TYPES:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            used.append(ipaddress.ip_network(words[0], strict=False))
        except ValueError:
            continue
    for _ in range(1000):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(100, 255)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    raise NetError("no free 10.x.y.0/24 for the nodes' bridge")


class NetLab:
    """One network namespace per node, on a bridge in ours: partitions, loss and delay
    in the kernel. Every name carries the run's random suffix, so runs side by side
    never clash and whatever a run left is found by it.

    Node i: namespace ``satchaos-<suffix>-<i>`` with ``lo`` up (Thespian's sockets bind
    its 127.0.0.1) and one end of a veth pair, ``sc<suffix>n<i>``, at 10.x.y.(10+i)/24;
    the other end, ``sc<suffix>h<i>``, on the bridge ``sc<suffix>b`` at 10.x.y.1/24, from
    where the harness reaches every node's client port. No default route: every peer,
    and the harness, are on the /24, and nothing a node sends can leave the machine."""

    def __init__(self, count: int, loss_by: str = "netem", suffix: str | None = None) -> None:
        self.count = count
        self.loss_by = loss_by  # how loss is injected: "netem" (with delay) or "nftables"
        self.suffix = suffix or os.urandom(3).hex()
        self.bridge = f"sc{self.suffix}b"  # interface names: 15 characters at most
        self.subnet: ipaddress.IPv4Network | None = None
        self.impaired = False

    def namespace(self, i: int) -> str:
        return f"satchaos-{self.suffix}-{i}"

    def host_end(self, i: int) -> str:
        return f"sc{self.suffix}h{i}"

    def node_end(self, i: int) -> str:
        return f"sc{self.suffix}n{i}"

    def address(self, i: int) -> str:
        assert self.subnet is not None, "create() first"
        return str(self.subnet.network_address + NODE_HOST_OFFSET + i)

    def create(self) -> None:
        """The bridge, the namespaces and their links (undo with ``destroy``)."""
        self.subnet = pick_subnet()
        gateway = f"{self.subnet.network_address + 1}/24"
        net_command(["ip", "link", "add", self.bridge, "type", "bridge"])
        net_command(["ip", "addr", "add", gateway, "dev", self.bridge])
        net_command(["ip", "link", "set", self.bridge, "up"])
        for i in range(self.count):
            ns, host, node = self.namespace(i), self.host_end(i), self.node_end(i)
            net_command(["ip", "netns", "add", ns])
            net_command(["ip", "link", "add", host, "type", "veth", "peer", node, "netns", ns])
            net_command(["ip", "link", "set", host, "master", self.bridge, "up"])
            batch = (
                f"link set lo up\naddr add {self.address(i)}/24 dev {node}\nlink set {node} up\n"
            )
            net_command(["ip", "-n", ns, "-batch", "-"], batch)

    def _each(
        self, commands: Mapping[int, list[tuple[list[str], str | None]]]
    ) -> dict[int, list[str]]:
        """Run each namespace's commands in order, the namespaces side by side (the
        schedule waits on this): their outputs, or NetError with the first complaint."""
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="chaos-net") as pool:
            futures = {
                i: pool.submit(lambda cmds: [net_command(a, s) for a, s in cmds], cmds)
                for i, cmds in commands.items()
            }
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
        if errors:
            raise NetError(str(errors[0]))
        return {i: f.result() for i, f in futures.items()}

    def cut(self, halves: tuple[Iterable[int], Iterable[int]]) -> int:
        """Partition: neither half reaches the other. An unreachable route in each
        namespace for every address of the other half makes new connections fail at
        once (EHOSTUNREACH); live TCP links would not notice a silent cut for a long time
        (keepalive probes only an idle link, and ours carry gossip several times a
        second; app pings are 45 s apart), so `ss -K` then closes them, on both ends.
        Returns how many sockets it closed (each link counts at both ends)."""
        a, b = (list(h) for h in halves)
        commands: dict[int, list[tuple[list[str], str | None]]] = {}
        for mine, theirs in ((a, b), (b, a)):
            if not theirs:
                continue
            addresses = [self.address(j) for j in theirs]
            routes = "".join(f"route replace unreachable {x}/32\n" for x in addresses)
            match = " or ".join(f"dst {x}" for x in addresses)
            for i in mine:
                ns = self.namespace(i)
                commands[i] = [
                    (["ip", "-n", ns, "-batch", "-"], routes),
                    (["ip", "netns", "exec", ns, "ss", "-K", "-t", "-n", *match.split()], None),
                ]
        outputs = self._each(commands)
        # `ss -K` lists what it closed under a header line.
        return sum(max(0, len(out[1].strip().splitlines()) - 1) for out in outputs.values())

    def mend(self) -> None:
        """Heal a partition: the unreachable routes go (links are then dialled again)."""
        argv = ["route", "flush", "type", "unreachable"]
        self._each({i: [(["ip", "-n", self.namespace(i), *argv], None)] for i in range(self.count)})

    def impair(self, loss: float, delay_ms: int) -> None:
        """Loss and delay on every packet a node sends (each crosses one such link)."""
        commands: dict[int, list[tuple[list[str], str | None]]] = {}
        for i in range(self.count):
            ns, dev = self.namespace(i), self.node_end(i)
            if self.loss_by == "nftables":
                argv = ["ip", "netns", "exec", ns, "nft", "-f", "-"]
                commands[i] = [(argv, nft_loss_rules(dev, loss))]
            else:
                argv = ["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"]
                argv += ["loss", f"{loss * 100:g}%", "delay", f"{delay_ms}ms"]
                commands[i] = [(argv, None)]
        self.impaired = True
        self._each(commands)

    def unimpair(self) -> None:
        if not self.impaired:
            return
        for i in range(self.count):
            ns = self.namespace(i)
            if self.loss_by == "nftables":
                _quiet(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE])
            else:
                _quiet(["tc", "-n", ns, "qdisc", "del", "dev", self.node_end(i), "root"])
        self.impaired = False

    def leftovers(self) -> list[str]:
        """This run's namespaces and interfaces still on the machine."""
        left = []
        try:
            for line in net_command(["ip", "netns", "list"]).splitlines():
                name = line.split()[0] if line.split() else ""
                if self.suffix in name:
                    left.append(f"netns {name}")
            for line in net_command(["ip", "-o", "link", "show"]).splitlines():
                parts = line.split(":")
                name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
                if self.suffix in name:
                    left.append(f"link {name}")
        except NetError as exc:
            left.append(f"unknown ({exc})")
        return sorted(left)

    def destroy(self, timeout: float = 15.0) -> list[str]:
        """Remove every namespace and interface of this run (the nodes' processes must
        be gone: a process keeps its namespace alive); returns what is still there."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not left or time.monotonic() > deadline:
                return left
            for item in left:
                kind, _, name = item.partition(" ")
                if kind == "netns":
                    _quiet(["ip", "netns", "del", name])
                elif kind == "link":
                    _quiet(["ip", "link", "del", name])  # a veth's peer goes with it
            # A namespace's interfaces go a moment after the namespace itself.
            time.sleep(0.2)


# --- running -------------------------------------------------------------------------------------


@dataclass
class Member:
    """One node of the office under test, and what the harness knows of it."""

    name: str
    host: str
    client_port: int
    peer: str
    node: Any = None  # a bench.cluster.Node when the harness started it (and can restart it)
    state: str = "up"  # "up", "down" (killed, or its launcher exited) or "starting"
    downtimes: list = field(default_factory=list)  # [[start, end or None], ...] (run seconds)
    last_ok: float = 0.0  # when its delivery log last answered
    restart_at: float | None = None
    # Its block list and faults: the version wanted, the version it acknowledged (a new
    # Membership, after a restart, holds neither: then they are applied again).
    wanted: int = 0
    applied: int = 0
    settling: bool = False
    polls: Counter = field(default_factory=Counter)  # "ok", "failed"
    poll_error: str = ""
    poll_max: float = 0.0  # the slowest answer of its delivery log, in seconds
    poll_lock: threading.Lock = field(default_factory=threading.Lock)
    poll_antenna: Antenna | None = None
    control_lock: threading.Lock = field(default_factory=threading.Lock)
    control: Antenna | None = None  # the connection for everything but the workload and polls
    kills: list = field(default_factory=list)  # times of our actor kills (attach-mode guard)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during the run."""


class Chaos:
    def __init__(
        self, args: argparse.Namespace, keyring: list[bytes], plan: NetPlan | None = None
    ) -> None:
        self.args = args
        self.keyring = keyring
        self.plan = plan or NetPlan("hooks", "--net hooks")
        self.net: NetLab | None = None  # the namespaces, once made (netns mode)
        self.net_left: list[str] = []  # what of them outlived the run
        self.members: list[Member] = []
        self.lock = threading.RLock()  # members' states, the records
        self.t0 = time.monotonic()
        self.run_id = os.urandom(4).hex()  # tags our events, in case the office has others
        self.quiet = args.format == "json"
        self.cluster: Any = None
        self.work_dir: Path | None = None
        self.publishes: list[Publish] = []
        self.writes: list[Write] = []
        self.delivered: dict[str, set[int]] = {}
        self.epoch_seen: dict[tuple[str, str], set[int]] = {}
        self.cursors: dict[str, tuple[str | None, int]] = {}
        self.redelivered = 0
        self.unverified: list[str] = []  # nodes whose delivery log could not be read at the end
        self.crashes: dict[str, list[float]] = {}  # node -> when its Gossip's memory was lost
        self.kill_times: dict[str, list[float]] = {}  # node -> our kills that restart Gossip
        self.epoch_changes: list[tuple[str, float, float]] = []  # (node, after, seen at)
        self.duplicates = 0
        self.duplicate_ids: list[list] = []  # [node, event id] delivered twice by one Gossip
        self.gaps: list[str] = []
        self.timeline: list[dict] = []
        self.injected: Counter = Counter()
        self.skipped: Counter = Counter()
        self.kills_by_role: Counter = Counter()
        self.recoveries: list[float] = []
        self.not_recovered: list[str] = []
        self.pending_recovery: list[tuple[Member, str, int, float, int]] = []
        self.node_exits: list[dict] = []
        self.block: dict[str, list[str]] = {}  # node -> peers it must refuse (a partition)
        self.net_faults: tuple[float, int] | None = None
        self.stop_workload = threading.Event()
        self.phase_over = threading.Event()  # no fault after the fault phase
        self.pid_sources: Counter = Counter()
        self.last_epoch_change: dict[str, float] = {}
        self.stop_poller = threading.Event()
        self.workload: list[threading.Thread] = []
        self.watchers: list[threading.Thread] = []
        # Requests that may take seconds on a loaded machine run off the main thread, which
        # keeps the schedule (and is the only one to start node processes: see start_cluster).
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chaos-request")
        self.killer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-killer")

    # -- small helpers ------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.now():7.1f}] {message}", flush=True)

    def note(self, kind: str, at: float | None = None, **fields: Any) -> None:
        entry = {"t": round(self.now() if at is None else at, 3), "kind": kind, **fields}
        with self.lock:
            self.timeline.append(entry)

    def antenna(self, m: Member, timeout: float = REQUEST_TIMEOUT) -> Antenna:
        return Antenna(
            m.host, m.client_port, timeout=timeout, client="satellite-chaos", key=self.keyring
        )

    def ask(
        self, m: Member, call: Callable[[Antenna], Any], timeout: float = REQUEST_TIMEOUT
    ) -> Any:
        """One request on the node's control connection (kept open: see REQUEST_TIMEOUT)."""
        with m.control_lock:
            try:
                if m.control is None:
                    m.control = self.antenna(m, timeout).connect()
                m.control.timeout = timeout
                return call(m.control)
            except (AntennaError, OSError):
                if m.control is not None:
                    m.control.close()
                m.control = None
                raise

    def live(self) -> list[Member]:
        with self.lock:
            return [m for m in self.members if m.state == "up"]

    def mark_down(self, m: Member, since: float) -> None:
        with self.lock:
            if m.state != "down":
                m.state = "down"
                if not (m.downtimes and m.downtimes[-1][1] is None):  # not still restarting
                    m.downtimes.append([since, None])

    def mark_up(self, m: Member, at: float) -> None:
        with self.lock:
            if m.state == "starting":
                m.state = "up"
                if m.downtimes and m.downtimes[-1][1] is None:
                    m.downtimes[-1][1] = at
                m.wanted += 1
                down = at - m.downtimes[-1][0] if m.downtimes else 0.0
                self.note("node_up", node=m.name, down_s=round(down, 3))
                self.say(f"{m.name} answers again ({down:.1f} s after it went down)")

    # -- setting up ---------------------------------------------------------------------------

    def start_cluster(self) -> None:
        from bench.cluster import Cluster

        args = self.args
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"satellite-{args.prefix}-"))
        # Readings every second by default, so the state keeps moving while faults land.
        flags: tuple = ("--read-interval", f"{args.read_interval:g}")
        where: dict[str, Any] = {}
        if self.plan.mode == "netns":
            self.net = NetLab(args.nodes, self.plan.loss_by)
            self.net.create()
            self.say(
                f"{args.nodes} network namespaces on bridge {self.net.bridge} "
                f"({self.net.subnet}), suffix {self.net.suffix}"
            )
            # Listening beyond loopback takes a cluster key; our antennas hold it too.
            flags += ("--key-file", str(self._write_key()))
            where = {"host": self.net.address, "netns": self.net.namespace}
        self.cluster = Cluster(
            self.work_dir, args.nodes, prefix=args.prefix, extra=lambda i: flags, **where
        )
        if self.net is not None:
            self.keyring = self.cluster.nodes[0].keyring
        self.say(f"starting {args.nodes} nodes ({args.prefix}0..) in {self.work_dir}")
        for node in self.cluster.nodes:
            # Detached: a terminal's Ctrl-C reaches only us, and we stop them in order.
            # (Started from the main thread, which lives as long as the process: a node's
            # parent-death signal follows the thread that started it.)
            node.start(detach=True)
            self.members.append(
                Member(node.name, node.host, node.client_port, node.peer, node=node)
            )
        deadline = time.monotonic() + max(90.0, 15.0 * args.nodes)
        for m in self.members:
            self._wait(
                lambda m=m: self.ask(m, lambda a: a.members()),
                deadline,
                f"{m.name} to answer on its client port",
            )
        self._wait(self.overlay_connected, deadline, "the overlay to connect every node")

    def _write_key(self) -> Path:
        """A new cluster key (as ``satellite keygen`` makes one), readable by root only."""
        import secrets

        from protocols.secure import KEY_BYTES, format_key

        assert self.work_dir is not None
        path = self.work_dir / "cluster.key"
        key = format_key(secrets.token_bytes(KEY_BYTES))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        return path

    def attach(self) -> None:
        host, port = self.args.attach
        entry = Member("?", host, port, "")
        state = self.ask(entry, lambda a: a.state(), timeout=self.args.timeout)
        if entry.control is not None:
            entry.control.close()
        for name, info in sorted((state.get("nodes") or {}).items()):
            client = info.get("client") if isinstance(info, Mapping) else None
            if not client:
                continue
            chost, cport = parse_node(client)
            if chost in ("0.0.0.0", "::", ""):
                chost = host  # listening on every interface: reach it where we reached the first
            self.members.append(Member(name, chost, cport, str(info.get("peer", ""))))
        if not self.members:
            raise AntennaError(f"{host}:{port} lists no nodes with a client address")
        self.say(
            f"attached to {len(self.members)} nodes: {', '.join(m.name for m in self.members)}"
        )

    def _wait(self, condition: Callable[[], Any], deadline: float, what: str) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = condition()
                if last:
                    return
            except (AntennaError, OSError) as exc:
                last = exc
            time.sleep(0.3)
        raise AntennaError(f"timed out waiting for {what} (last: {last})")

    def overlay_connected(self) -> bool:
        # Through members() (Membership answers alone), not topology() (every actor).
        views = {}
        for m in self.members:
            members = self.ask(m, lambda a: a.members())
            views[m.peer] = {x["addr"] for x in members if x.get("status") == "alive"}
        from bench.cluster import connected

        return connected(views)

    # -- the workload (threads) ---------------------------------------------------------------

    def publisher(self) -> None:
        rng = random.Random(f"{self.args.seed}:publish")
        antennas: dict[str, Antenna] = {}
        k = 0
        while not self.stop_workload.wait(self._pace(PUBLISH_RATE, rng)):
            m = self.members[rng.randrange(len(self.members))]
            k += 1
            record = Publish(k, m.name, self.now())
            try:
                antenna = antennas.get(m.name) or self.antenna(m).connect()
                antennas[m.name] = antenna
                antenna.publish(EVENT_NAME, {"id": k, "from": m.name, "run": self.run_id})
                record.acked = True
            except (AntennaError, OSError):
                # Its node is down or restarting: not acknowledged, which is no error.
                antennas.pop(m.name, None)
            with self.lock:
                self.publishes.append(record)
        for antenna in antennas.values():
            antenna.close()

    def setter(self) -> None:
        rng = random.Random(f"{self.args.seed}:set")
        antennas: dict[str, Antenna] = {}
        k = 0
        while not self.stop_workload.wait(self._pace(SET_RATE, rng)):
            m = self.members[rng.randrange(len(self.members))]
            name = TARGET_NAMES[rng.randrange(len(TARGET_NAMES))]
            k += 1
            value = f"{k}@{m.name}/{self.run_id}"  # unique per attempt: says which write won
            record = Write(name, value, m.name, self.now())
            try:
                antenna = antennas.get(m.name) or self.antenna(m).connect()
                antennas[m.name] = antenna
                record.stamp = tuple(antenna.set(name, value))
            except (AntennaError, OSError):
                antennas.pop(m.name, None)
            with self.lock:
                self.writes.append(record)
        for antenna in antennas.values():
            antenna.close()

    @staticmethod
    def _pace(rate: float, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.5) / rate

    # -- reading the nodes' delivery logs (the poller thread, and before an actor kill) --------

    def poll(self, m: Member, quick: bool = False) -> bool:
        """Read what ``m`` delivered since the last read; False if it did not answer.
        ``quick`` (just before a kill): give up soon rather than hold the kill back."""
        started = time.monotonic()
        if not m.poll_lock.acquire(timeout=QUICK_POLL if quick else -1):
            return False
        try:
            if m.poll_antenna is None:
                m.poll_antenna = self.antenna(m, POLL_TIMEOUT).connect()
            m.poll_antenna.timeout = QUICK_POLL if quick else POLL_TIMEOUT
            self._read_log(m, m.poll_antenna)
        except (AntennaError, OSError) as exc:
            if m.poll_antenna is not None:
                m.poll_antenna.close()
            m.poll_antenna = None
            m.polls["failed"] += 1
            m.poll_error = f"{self.now():.1f} s: {exc}"
            return False
        finally:
            m.poll_lock.release()
        with self.lock:
            m.last_ok = self.now()
            m.polls["ok"] += 1
            m.poll_max = max(m.poll_max, time.monotonic() - started)
        return True

    def _read_log(self, m: Member, antenna: Antenna) -> None:
        epoch, since = self.cursors.get(m.name, (None, 0))
        for _ in range(1000):  # pages of at most 2000 events, 256 KiB
            body = antenna.delivered(since)
            if body["epoch"] != epoch:
                # Its Gossip restarted: a new numbering, read it from the start.
                if epoch is not None:
                    now = self.now()
                    with self.lock:
                        after = self.last_epoch_change.get(m.name, 0.0)
                        self.last_epoch_change[m.name] = now
                        self.epoch_changes.append((m.name, after, now))
                        self.crashes.setdefault(m.name, []).append(now)
                epoch, since = body["epoch"], 0
                continue
            events = body["events"]
            if body["first"] > since + 1 and body["last"] >= body["first"]:
                self.gaps.append(f"{m.name} forgot deliveries {since + 1}..{body['first'] - 1}")
            with self.lock:
                seen = self.delivered.setdefault(m.name, set())
                mine = self.epoch_seen.setdefault((m.name, epoch), set())
                for _n, name, payload in events:
                    if name != EVENT_NAME or not isinstance(payload, Mapping):
                        continue
                    if payload.get("run") != self.run_id:
                        continue
                    ident = payload.get("id")
                    if ident in mine:
                        self.duplicates += 1
                        if len(self.duplicate_ids) < 100:
                            self.duplicate_ids.append([m.name, ident])
                    elif ident in seen:
                        self.redelivered += 1
                    mine.add(ident)
                    seen.add(ident)
            since = events[-1][0] if events else body["last"]
            self.cursors[m.name] = (epoch, since)
            if since >= body["last"]:
                return

    def poller(self, m: Member) -> None:
        """One thread per node: read its delivery log every second."""
        while not self.stop_poller.is_set():
            started = time.monotonic()
            if m.state != "down" and self.poll(m) and m.state == "starting":
                self.mark_up(m, self.now())
            self.stop_poller.wait(max(0.05, POLL_INTERVAL - (time.monotonic() - started)))

    def _thread(self, target: Callable, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name="chaos-worker", daemon=True)
        thread.start()
        return thread

    def observer(self) -> None:
        # Its own thread: a topology can take seconds on a loaded machine, and must not
        # slow the reading of the delivery logs.
        while not self.stop_poller.wait(5 * POLL_INTERVAL):
            self.check_recoveries()

    def check_recoveries(self, final: bool = False) -> None:
        """Whether the permanent actors we killed are back (a new pid, running); with
        ``final`` (once the office converged), those still not back are failures."""
        from bench.cluster import find

        with self.lock:
            pending = list(self.pending_recovery)
        trees: dict[str, Any] = {}
        for item in pending:
            m, row_id, old_pid, at, downs = item
            done = None
            if m.state == "up":
                if m.name not in trees:
                    try:
                        trees[m.name] = self.ask(
                            m, lambda a: a.topology()["tree"], TOPOLOGY_TIMEOUT
                        )
                    except (AntennaError, OSError):
                        trees[m.name] = None
                tree = trees[m.name]
                row = find(tree, row_id) if tree else None
                if (
                    row
                    and row.get("pid") not in (None, old_pid)
                    and row.get("state", "running") == "running"
                ):
                    done = self.now() - at
            gone = len(m.downtimes) > downs  # the whole node went down since
            with self.lock:
                if done is not None:
                    self.recoveries.append(done)
                    self.pending_recovery.remove(item)
                elif gone:
                    self.pending_recovery.remove(item)
                elif final:
                    self.not_recovered.append(f"{m.name}/{row_id}")
                    self.pending_recovery.remove(item)

    # -- faults (the main thread) -------------------------------------------------------------

    def pick_member(self, index: int) -> Member | None:
        """The node of that index, or the next live one after it."""
        n = len(self.members)
        for i in range(n):
            m = self.members[(index + i) % n]
            if m.state == "up":
                return m
        return None

    def kill_actor(self, fault: Fault) -> None:
        m = self.pick_member(fault.node)
        if m is None:
            self.skip("kill_actor", "no live node")
            return
        attached = m.node is None
        if attached:
            now = self.now()
            m.kills = [t for t in m.kills if now - t < INTENSITY[1]]
            if len(m.kills) >= INTENSITY[0]:
                self.skip("kill_actor", f"{m.name} near its restart intensity")
                return
        try:
            tree = self.ask(m, lambda a: a.topology()["tree"], KILL_TOPOLOGY_TIMEOUT)
            rows, source = actor_rows(tree), "topology"
        except (AntennaError, OSError) as exc:
            # A starved node can take many seconds to gather its tree: rather than kill
            # late (or not at all), read its actors from the process table, by title.
            rows, source = local_actor_rows(m.name), "process table"
            if not rows:
                self.skip("kill_actor", f"{m.name}: no topology ({exc})")
                return
        if self.phase_over.is_set():
            return  # the fault phase ended while we asked
        if attached:
            rows = rows[1:]  # not the root: nobody would restart the node
        if not rows:
            self.skip("kill_actor", f"{m.name}: no actor with a pid")
            return
        row = rows[min(len(rows) - 1, int(fault.pick * len(rows)))]
        pid, role = int(row["pid"]), role_of(row["id"])
        try:
            cmdline = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            cmdline = ""
        if f"satellite[{m.name}]" not in cmdline:
            # Never a pid that is not this node's actor (gone since, or on another machine).
            self.skip("kill_actor", f"{m.name}: pid {pid} is not its {role} here")
            return
        # Read its delivery log up to now: a Gossip restart starts a new, empty one (killing
        # the root takes the node down).
        polled = self.poll(m, quick=True) if role in GOSSIP_ROLES else True
        if self.phase_over.is_set():
            return  # the fault phase ended while we asked: no fault during the heal
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.skip("kill_actor", f"{m.name}: {role} already gone")
            return
        at = self.now()
        if role in GOSSIP_ROLES and not polled:
            # What it delivered since its last read is gone unread: count the node as
            # down for a moment, so it owes nothing published before (as after a kill).
            with self.lock:
                m.downtimes.append([m.last_ok, at + GOSSIP_RESTART])
            self.note("unread_log", node=m.name, since=round(m.last_ok, 3))
        m.kills.append(at)
        self.injected["kill_actor"] += 1
        self.kills_by_role[role] += 1
        self.note("kill_actor", node=m.name, role=role, pid=pid, source=source)
        self.pid_sources[source] += 1
        if role in GOSSIP_ROLES:
            with self.lock:
                self.kill_times.setdefault(m.name, []).append(at)
                self.crashes.setdefault(m.name, []).append(at + GOSSIP_RESTART)
        self.say(f"SIGKILL {m.name} {role} (pid {pid})")
        if role == "node_sup":
            # The launcher sees its tree gone and exits: the node is down until restarted.
            self.mark_down(m, at)
            m.restart_at = at + SYSTEMD_RESTART
            self.node_exits.append({"node": m.name, "at": round(at, 3), "cause": "node_sup killed"})
            return
        if role not in TEMPORARY:
            with self.lock:
                self.pending_recovery.append((m, str(row["id"]), pid, at, len(m.downtimes)))

    def kill_node(self, fault: Fault) -> None:
        with self.lock:
            down = sum(1 for m in self.members if m.state != "up")
        m = self.pick_member(fault.node)
        if m is None or down >= max_down_for(len(self.members)):
            self.skip("kill_node", f"{down} nodes already down")
            return
        at = self.now()
        self.mark_down(m, at)
        with self.lock:
            self.kill_times.setdefault(m.name, []).append(at)
        m.node.kill()
        m.restart_at = at + fault.duration
        self.injected["kill_node"] += 1
        self.note("kill_node", at=at, node=m.name, down_s=fault.duration)
        self.say(f"SIGKILL every process of {m.name}; restart in {fault.duration:.1f} s")

    def restart(self, m: Member) -> None:
        m.restart_at = None
        m.node.kill()  # whatever of it is left (a launcher still exiting), by pid
        with self.lock:
            self.crashes.setdefault(m.name, []).append(self.now())  # all of it gone by now
        m.node.start(detach=True)
        with self.lock:
            m.state = "starting"
        self.note("restart", node=m.name)
        self.say(f"restarting {m.name} on its data dir")

    def watchdog(self) -> None:
        """A launcher that exited by itself (its tree gave up): restart it, as systemd would."""
        for m in self.members:
            proc = m.node.proc if m.node is not None else None
            if m.state == "down" or proc is None or proc.poll() is None:
                continue
            with self.lock:
                since = m.last_ok if m.state == "up" else self.now()
            self.mark_down(m, min(since, self.now()))
            with self.lock:
                self.kill_times.setdefault(m.name, []).append(self.now())
            m.restart_at = self.now() + SYSTEMD_RESTART
            cause = f"launcher exited with status {proc.returncode}"
            self.node_exits.append({"node": m.name, "at": round(self.now(), 3), "cause": cause})
            self.note("node_exit", node=m.name, status=proc.returncode)
            self.say(f"{m.name}: {cause}; restarting it in {SYSTEMD_RESTART:g} s")

    def partition(self, fault: Fault) -> None:
        a, b = ([self.members[i] for i in half] for half in fault.halves)
        closed = 0
        if self.net is not None:
            # In the kernel: it holds for a node restarted meanwhile, with nothing to re-apply.
            try:
                closed = self.net.cut(fault.halves)
            except NetError as exc:
                self.skip("partition", str(exc))
                try:
                    self.net.mend()
                except NetError:
                    pass  # the heal tries again
                return
        else:
            with self.lock:
                for mine, theirs in ((a, b), (b, a)):
                    for m in mine:
                        self.block[m.name] = [t.peer for t in theirs]
                        m.wanted += 1
        self.injected["partition"] += 1
        names = [[m.name for m in a], [m.name for m in b]]
        if self.net is not None:
            self.note("partition", halves=names, length_s=fault.duration, sockets_closed=closed)
            self.say(
                f"partition {names[0]} | {names[1]} for {fault.duration:.1f} s "
                f"(unreachable routes; {closed} live sockets closed)"
            )
        else:
            self.note("partition", halves=names, length_s=fault.duration)
            self.say(f"partition {names[0]} | {names[1]} for {fault.duration:.1f} s")
        self.settle()

    def unpartition(self) -> None:
        if self.net is not None:
            self.net.mend()
        with self.lock:
            self.block = {}
            for m in self.members:
                m.wanted += 1
        self.note("partition_healed")
        self.say("partition healed")
        self.settle()

    def settle(self) -> None:
        """Tell every live node whose Membership needs it the block list and faults, each
        in a thread of its own (a slow node must not hold up the schedule)."""
        if self.net is not None:
            # The faults are the kernel's: the nodes' hooks stay off, nothing to tell them.
            with self.lock:
                for m in self.members:
                    m.applied = m.wanted
            return
        for m in self.live():
            with self.lock:
                if m.settling or m.applied == m.wanted:
                    continue
                m.settling = True
            self.pool.submit(self._settle, m)

    def _settle(self, m: Member) -> None:
        try:
            with self.lock:
                wanted = m.wanted
                block = list(self.block.get(m.name, []))
                faults = self.net_faults
            self.ask(m, lambda a: a.block(*block))
            if faults is not None:
                self.ask(m, lambda a: a.faults(loss=faults[0], delay_ms=faults[1]))
            elif self.args.loss or self.args.delay:
                self.ask(m, lambda a: a.faults())  # (never set otherwise: nothing to lift)
            with self.lock:
                m.applied = wanted
        except (AntennaError, OSError):
            pass  # again on the next turn of the main loop
        finally:
            with self.lock:
                m.settling = False

    def settled(self) -> bool:
        with self.lock:
            return all(m.applied == m.wanted for m in self.members if m.state == "up")

    def skip(self, kind: str, why: str) -> None:
        self.skipped[kind] += 1
        self.note(f"skipped_{kind}", why=why)
        self.say(f"skipped {kind}: {why}")

    def inject(self, schedule: Schedule) -> None:
        """The fault phase: the schedule's faults, restarts and heals, in time order."""
        actions: list = []
        seq = 0
        for fault in schedule.faults:
            heapq.heappush(actions, (fault.at, seq, "fault", fault))
            seq += 1
        end = self.args.duration
        while self.now() < end:
            now = self.now()
            while actions and actions[0][0] <= now:
                _, _, what, fault = heapq.heappop(actions)
                if what == "heal":
                    self.unpartition()
                elif fault.kind == "kill_actor":
                    self.killer.submit(self.kill_actor, fault)
                elif fault.kind == "kill_node":
                    self.kill_node(fault)
                elif fault.kind == "partition":
                    self.partition(fault)
                    heapq.heappush(actions, (fault.at + fault.duration, seq, "heal", fault))
                    seq += 1
            self.turn()
            nxt = actions[0][0] if actions else end
            time.sleep(max(0.0, min(0.25, nxt - self.now(), end - self.now())))

    def turn(self) -> None:
        """Housekeeping on every turn of the main loop."""
        if self.cluster is not None:
            self.watchdog()
            for m in self.members:
                if m.state == "down" and m.restart_at is not None and m.restart_at <= self.now():
                    self.restart(m)
        self.settle()

    # -- the end: heal, converge, check -------------------------------------------------------

    def heal(self) -> float:
        if self.net is not None:
            self.net.mend()
            self.net.unimpair()
        with self.lock:
            self.block = {}
            self.net_faults = None
            for m in self.members:
                m.wanted += 1
                if m.state == "down" and m.node is not None:
                    m.restart_at = self.now()
        self.say("healing: no partition, no network faults, every node up")
        self.note("heal")
        healed = self.now()
        self.turn()
        return healed

    def converge(self, healed: float, report: Report) -> dict[str, Any]:
        """Wait until every node is up, has the same state, and delivered every expected
        event, or the deadline; returns the last states read."""
        deadline = healed + self.args.converge_timeout
        states: dict[str, Any] = {}
        while True:
            self.turn()
            states = {}
            for m in self.members:
                try:
                    states[m.name] = self.ask(m, lambda a: a.state()) if m.state == "up" else None
                except (AntennaError, OSError):
                    states[m.name] = None
            diffs = compare_states(states)
            if any(m.state != "up" for m in self.members):
                diffs = [f"{m.name} is not up" for m in self.members if m.state != "up"] + diffs
            elif not self.settled():
                diffs.append("the partition or network faults are not lifted everywhere yet")
            if not diffs and report.converge_s is None:
                report.converge_s = round(self.now() - healed, 3)
                self.say(f"one state on every node, {report.converge_s:.2f} s after the heal")
            lost = self.lost().lost
            if not lost and report.delivery_complete_s is None:
                report.delivery_complete_s = round(self.now() - healed, 3)
            report.differences = diffs
            report.state_identical = not diffs
            if (not diffs and not lost) or self.now() > deadline:
                return states
            time.sleep(POLL_INTERVAL)

    def final_reads(self) -> None:
        """The last word of every node's delivery log. A node whose log cannot be read
        is unverified (its deliveries are not judged) rather than taken to have lost
        what it may well have delivered."""
        for m in self.members:
            ok = False
            for _ in range(3):
                if m.state == "up" and self.poll(m):
                    ok = True
                    break
                time.sleep(POLL_INTERVAL)
            if not ok:
                self.unverified.append(m.name)

    def lost(self) -> DeliveryCheck:
        with self.lock:
            publishes = list(self.publishes)
            delivered = {k: set(v) for k, v in self.delivered.items()}
            downtimes = {m.name: [tuple(d) for d in m.downtimes] for m in self.members}
            crashes = {k: list(v) for k, v in self.crashes.items()}
        names = [m.name for m in self.members if m.name not in self.unverified]
        return find_lost(publishes, delivered, downtimes, names, crashes, self.args.strict)

    def unexplained_restarts(self) -> list[str]:
        """Gossip restarts (a new delivery-log epoch) that none of our kills caused: a
        Gossip that crashed by itself, which is a bug to look into."""
        out = []
        with self.lock:
            for node, after, seen in self.epoch_changes:
                kills = self.kill_times.get(node, [])
                if not any(after <= k <= seen for k in kills):
                    out.append(f"{node} between {after:.1f} s and {seen:.1f} s")
        return out

    def stop_everything(self) -> list[int]:
        """Stop the nodes we started (SIGTERM, then SIGKILL by pid) and list what is left;
        then remove our namespaces, veths and bridge (what of them is left: ``net_left``)."""
        try:
            return self._stop_nodes()
        finally:
            if self.net is not None:
                self.net_left = self.net.destroy()

    def _stop_nodes(self) -> list[int]:
        if self.cluster is None:
            return []
        from bench.cluster import stop_nodes

        nodes = [m.node for m in self.members]
        stop_nodes(nodes)
        pattern = re.compile(r"satellite\[" + re.escape(self.args.prefix) + r"\d+\]")
        deadline = time.monotonic() + 10
        while True:
            left = set()
            for node in nodes:
                left |= node.pids()
            for p in psutil.process_iter(["pid", "cmdline"]):
                if pattern.search(" ".join(p.info["cmdline"] or [])):
                    try:
                        if p.status() != psutil.STATUS_ZOMBIE:
                            left.add(p.info["pid"])
                    except psutil.Error:
                        pass
            if not left or time.monotonic() > deadline:
                return sorted(left)
            time.sleep(0.2)

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> Report:
        args = self.args
        if args.attach:
            self.attach()
        else:
            self.start_cluster()
        names = [m.name for m in self.members]
        schedule = make_schedule(
            args.seed,
            len(self.members),
            args.duration,
            kill_actors=args.kill_actors,
            kill_nodes=args.kill_nodes,
            partition=args.partition,
        )
        options = {
            "kill_actors": args.kill_actors,
            "kill_nodes": args.kill_nodes,
            "partition": args.partition,
            "loss": args.loss,
            "delay_ms": args.delay,
            "publish_rate": PUBLISH_RATE,
            "read_interval": None if args.attach else args.read_interval,
            "set_rate": SET_RATE,
            "planned": {k: schedule.count(k) for k in RNG_STREAMS},
        }
        report = Report(
            "attach" if args.attach else "cluster", names, args.seed, args.duration, options
        )
        report.work_dir = str(self.work_dir) if self.work_dir else None
        report.net_mode, report.net_reason = self.plan.mode, self.plan.why
        if self.net is not None:
            report.partition_method = "netns"
            report.loss_method = self.plan.loss_by
            report.network = {
                "bridge": self.net.bridge,
                "subnet": str(self.net.subnet),
                "suffix": self.net.suffix,
                "namespaces": [self.net.namespace(i) for i in range(self.net.count)],
                "peers": {m.name: m.peer for m in self.members},
            }
        self.report = report
        self.t0 = time.monotonic()  # the fault phase starts: every time is from here
        for m in self.members:
            m.last_ok = 0.0
        self.say(
            f"seed {args.seed}: {schedule.count('kill_actor')} actor kills, "
            f"{schedule.count('kill_node')} node kills, {schedule.count('partition')} "
            f"partitions planned over {args.duration:g} s"
        )

        if (args.loss or args.delay) and self.net is not None:
            self.net.impair(args.loss, args.delay)
            self.say(
                f"network faults on every node's link ({self.plan.loss_by}): loss "
                f"{args.loss:g}, delay {args.delay} ms"
            )
        elif args.loss or args.delay:
            with self.lock:
                self.net_faults = (args.loss, args.delay)
                for m in self.members:
                    m.wanted += 1
            self.settle()
            self.say(f"network faults on every node: loss {args.loss:g}, delay {args.delay} ms")
        for m in self.members:
            self.watchers.append(self._thread(self.poller, m))
        self.watchers.append(self._thread(self.observer))
        self.workload = [self._thread(self.publisher), self._thread(self.setter)]

        self.inject(schedule)

        self.phase_over.set()
        self.stop_workload.set()
        self.killer.shutdown(wait=True, cancel_futures=True)  # kills due after the end: not
        for thread in self.workload:
            thread.join(REQUEST_TIMEOUT * 3)
        healed = self.heal()
        states = self.converge(healed, report)
        self.stop_poller.set()
        for thread in self.watchers:
            thread.join(TOPOLOGY_TIMEOUT * 3)
        self.final_reads()
        self.check_recoveries(final=True)
        self.finish(report, states)
        return report

    def finish(self, report: Report, states: Mapping[str, Any]) -> None:
        check = self.lost()
        lost, expected = check.lost, check.expected
        with self.lock:
            acked = sum(1 for p in self.publishes if p.acked)
            acked_ids = {p.id for p in self.publishes if p.acked}
            delivered_pairs = sum(len(v & acked_ids) for v in self.delivered.values())
            unacked_delivered = len({i for v in self.delivered.values() for i in v} - acked_ids)
            report.events = {
                "published": len(self.publishes),
                "acknowledged": acked,
                "expected": expected,
                "delivered": expected - len(lost),
                "delivered_pairs_total": delivered_pairs,
                "lost": len(lost),
                "lost_with_origin": len(check.with_origin),
                "unexplained_gossip_restarts": self.unexplained_restarts(),
                "unacknowledged_but_delivered": unacked_delivered,
                "redelivered_after_restart": self.redelivered,
                "duplicates_same_epoch": self.duplicates,
                "duplicates": list(self.duplicate_ids),
                "log_gaps": list(self.gaps),
            }
            # Where each lost event did arrive: says whether it ever left its origin.
            report.lost = [
                asdict(x)
                | {
                    "at": round(x.at, 3),
                    "delivered_at": sorted(n for n, ids in self.delivered.items() if x.id in ids),
                }
                for x in lost
            ]
            report.lost_with_origin = check.with_origin
            report.unverified = list(self.unverified)
            writes = list(self.writes)
        final = {}
        for s in states.values():
            if s is not None:
                final = dict(s.get("targets") or {})
                break
        problems = check_targets(writes, final)
        report.targets = {
            "attempted": len(writes),
            "acknowledged": sum(1 for w in writes if w.stamp is not None),
            "final": {k: v for k, v in final.items() if k in TARGET_NAMES},
            "problems": problems,
        }
        trees = []
        for m in self.live():
            try:
                trees.append(self.ask(m, lambda a: a.topology()["tree"], TOPOLOGY_TIMEOUT))
            except (AntennaError, OSError):
                pass
        report.restarts_by_role = restarts_by_role(trees)
        report.actor_kills_by_role = dict(sorted(self.kills_by_role.items()))
        report.pid_sources = dict(self.pid_sources)
        report.faults = dict(self.injected)
        report.skipped = dict(self.skipped)
        report.node_exits = list(self.node_exits)
        rec = sorted(self.recoveries)
        report.recovery_s = {
            "count": len(rec),
            "median": round(statistics.median(rec), 3) if rec else None,
            "max": round(rec[-1], 3) if rec else None,
            "not_recovered": list(self.not_recovered),
        }
        report.timeline = list(self.timeline)
        with self.lock:
            report.polls = {
                m.name: {
                    "ok": m.polls["ok"],
                    "failed": m.polls["failed"],
                    "last_error": m.poll_error or None,
                    "slowest_s": round(m.poll_max, 3),
                    "delivered": len(self.delivered.get(m.name, ())),
                    "gossip_epochs": sum(1 for node, _ in self.epoch_seen if node == m.name),
                }
                for m in self.members
            }

    def verdict(self, report: Report) -> None:
        failures = []
        if report.lost:
            first = report.lost[0]
            failures.append(
                f"{len(report.lost)} event deliveries lost (first: event {first['id']} "
                f"from {first['origin']} never delivered at {first['node']})"
            )
        if report.unverified:
            failures.append(f"delivery logs unreadable at the end: {report.unverified}")
        if not report.state_identical:
            first = report.differences[0] if report.differences else "unknown"
            failures.append(f"state not identical after {self.args.converge_timeout:g} s: {first}")
        if report.targets.get("problems"):
            failures.append(f"target writes: {report.targets['problems'][0]}")
        if report.leftovers:
            failures.append(f"processes left behind: {report.leftovers}")
        if report.net_leftovers:
            failures.append(f"namespaces or interfaces left behind: {report.net_leftovers}")
        if report.recovery_s.get("not_recovered"):
            failures.append(f"actors not restarted: {report.recovery_s['not_recovered']}")
        report.failures = failures

    def cleanup(self) -> None:
        """Leave the office as we found it: attached, heal; started, stop every process."""
        self.stop_workload.set()
        self.stop_poller.set()
        self.killer.shutdown(wait=False, cancel_futures=True)
        for m in self.members:
            for antenna in (m.poll_antenna, m.control):
                if antenna is not None:
                    antenna.close()
        if self.cluster is None and self.members:
            with self.lock:
                self.block, self.net_faults = {}, None
                for m in self.members:
                    m.wanted += 1
            self.settle()
            deadline = time.monotonic() + 2 * REQUEST_TIMEOUT
            while not self.settled() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.pool.shutdown(wait=False, cancel_futures=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--nodes",
        metavar="N",
        type=_count,
        default=DEFAULT_NODES,
        help=f"start N nodes on 127.0.0.1 (default {DEFAULT_NODES})",
    )
    where.add_argument(
        "--attach",
        metavar="HOST:PORT",
        type=_address,
        help="run against a running office through this node's client port instead "
        "(actor kills, partitions and network faults only: no node kills)",
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=_positive,
        default=DEFAULT_DURATION,
        help=f"length of the fault phase (default {DEFAULT_DURATION:g})",
    )
    parser.add_argument(
        "--seed", metavar="S", type=int, default=None, help="the schedule's seed (default: random)"
    )
    parser.add_argument(
        "--kill-actors",
        metavar="RATE",
        type=_rate,
        default=0.0,
        help="actor processes SIGKILLed per second over the cluster (default 0)",
    )
    parser.add_argument(
        "--kill-nodes",
        metavar="RATE",
        type=_rate,
        default=0.0,
        help="whole nodes SIGKILLed per second, restarted 1-5 s later (default 0)",
    )
    parser.add_argument(
        "--partition",
        action="store_true",
        help="about every 20 s, cut the office in two halves for 5-10 s",
    )
    parser.add_argument(
        "--loss",
        metavar="P",
        type=_share,
        default=0.0,
        help="share of outgoing peer messages every node drops (default 0)",
    )
    parser.add_argument(
        "--delay",
        metavar="MS",
        type=_delay,
        default=0,
        help="milliseconds every outgoing peer message is held (default 0)",
    )
    parser.add_argument(
        "--net",
        choices=NET_CHOICES,
        default="auto",
        help="where partitions, loss and delay go: netns (each node in a network namespace "
        "of its own, faults in the kernel: needs root, ip and tc, and nodes it starts), hooks "
        "(the nodes' own fault hooks), or auto (netns where the machine allows it; default)",
    )
    parser.add_argument("--report", metavar="FILE", help="also write the report there as JSON")
    parser.add_argument(
        "--prefix",
        default="chaos",
        type=_prefix,
        help="node-name prefix of the cluster it starts (default chaos: chaos0, chaos1, ...)",
    )
    parser.add_argument(
        "--converge-timeout",
        metavar="SECONDS",
        type=_positive,
        default=60.0,
        help="how long after the heal the office gets to converge (default 60)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dirs and logs even when it passes"
    )
    parser.add_argument(
        "--read-interval",
        metavar="SECONDS",
        type=_positive,
        default=1.0,
        help="the started nodes' --read-interval: each reading is a state delta broadcast "
        "(default 1)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="count as lost the events that never left a node killed right after it "
        "acknowledged them (by default reported apart: publish is at most once)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"expected a number of nodes from 1 to 30, got {text!r}")
    return value


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_node(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(text: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text, "a positive number of seconds", lambda v: v > 0)


def _rate(text: str) -> float:
    return _number(text, "a rate per second, 0 or more", lambda v: 0 <= v <= 100)


def _share(text: str) -> float:
    return _number(text, "a share from 0 to 1", lambda v: 0 <= v <= 1)


def _delay(text: str) -> int:
    return int(_number(text, "milliseconds from 0 to 10000", lambda v: 0 <= v <= 10_000))


def _prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,30}", text):
        raise argparse.ArgumentTypeError(
            f"expected a short name of letters and digits, got {text!r}"
        )
    return text


def run(args: argparse.Namespace, antenna: Any = None) -> int:
    """``satellite chaos``: returns 0 (all checks hold), 1 (one failed), 2 (usage), 130."""
    if args.attach and args.kill_nodes:
        print(
            "satellite: --kill-nodes needs nodes the harness started (it restarts what it "
            "kills): not with --attach",
            file=sys.stderr,
            flush=True,
        )
        return 2
    net = getattr(args, "net", "auto")
    if net == "netns" and args.attach:
        print(
            "satellite: --net netns needs nodes the harness starts (it puts each in a "
            "network namespace): not with --attach",
            file=sys.stderr,
            flush=True,
        )
        return 2
    # (The probe looked up now, not bound at import: tests put a stand-in in its place.)
    plan = choose_net(
        net, bool(args.attach), args.partition, args.loss, args.delay, detect=detect_netns
    )
    if net == "netns" and plan.mode != "netns":
        print(
            f"satellite: --net netns: not on this machine: {plan.why}", file=sys.stderr, flush=True
        )
        return 2
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    keyring: list[bytes] = []
    if args.attach and args.key_file:
        from satellite.cli import read_keyring

        keyring = read_keyring(args.key_file)
    chaos = Chaos(args, keyring, plan)

    def interrupted(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    report: Report | None = None
    status = 1
    try:
        report = chaos.run()
        chaos.cleanup()
        # Nothing may interrupt the stopping: a second Ctrl-C would leave processes behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        report.leftovers = chaos.stop_everything()
        report.net_leftovers = list(chaos.net_left)
        chaos.verdict(report)
        status = 0 if report.ok else 1
    except (Interrupted, KeyboardInterrupt):
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        chaos.cleanup()
        left = chaos.stop_everything()
        left_behind = [*left, *chaos.net_left]
        print(
            "satellite: interrupted; stopped every node it started"
            + (" and removed its namespaces" if chaos.net is not None else "")
            + (f" (left behind: {left_behind})" if left_behind else ""),
            file=sys.stderr,
            flush=True,
        )
        return 130
    except (AntennaError, NetError) as exc:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        chaos.cleanup()
        chaos.stop_everything()
        logs = f" (logs in {chaos.work_dir})" if chaos.work_dir else ""
        print(f"satellite: chaos: {' '.join(str(exc).split())}{logs}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still stop and remove everything
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        chaos.cleanup()
        left = chaos.stop_everything()
        print(
            f"satellite: chaos: unexpected error: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())} (stopped every node it started"
            + (f"; left behind: {left} {chaos.net_left}" if left or chaos.net_left else "")
            + ")",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    remove = chaos.work_dir is not None and report.ok and not args.keep
    if remove:
        report.work_dir = None  # it passed: nothing to look at
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, default=str), flush=True)
    else:
        print(report.text(), flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    if remove:
        shutil.rmtree(chaos.work_dir, ignore_errors=True)
    if status:
        print(f"satellite: chaos: {report.reason()}", file=sys.stderr, flush=True)
    return status
