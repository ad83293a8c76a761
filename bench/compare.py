"""Side by side on 127.0.0.1: our nodes, HashiCorp Serf and a Mosquitto broker (issue 8).

    python bench/compare.py [--nodes 10] [--events 30] [--rate 20] [--idle 10]
                            [--peers serf,mosquitto] [--json FILE]

1. Ours: N nodes (``--sensor none --network-scan none``, so only this benchmark's
   traffic flows) joining through the first, one Antenna subscribed at each node. Once
   the overlay is whole, E events are published at node 0 through its Antenna at
   ``--rate`` per second (default 20/s: the pace of peers.py, which sleeps 50 ms between
   events). One process, one clock (``time.monotonic``): the publishing thread stamps
   each event before ``publish()``, the Antennas' callbacks stamp arrivals. Time-to-all
   of an event: until the last of the N Antennas has it (the publisher node's own
   Antenna counts; peers.py counts the N-1 others). Then, once the office is at rest (no
   Plumtree traffic for 2 s and no node with a rewrite of its office-state entry pending:
   up to a few minutes after the events), memory (PSS summed over every process of a
   node, via psutil) and idle CPU (CPU time of every process of a node over ``--idle``
   seconds with nothing published and the Antennas still attached).
2. ``../shared/bench/peers.py serf`` and ``... mosquitto`` with the same N and E, run
   with this Python: time-to-all and delivered share, and the resident memory (RSS) it
   reports per member (for Mosquitto: the broker's).
3. Idle CPU and PSS of the peers, measured here the same way as ours: N Serf agents
   (peers.py's command line) joined into one cluster, and one Mosquitto broker with N
   idle subscribers, over the same ``--idle`` window.

Prints a markdown table, the budgets of issue 8 with PASS/FAIL marks, and with
``--json FILE`` everything as JSON. Installs nothing: a missing ``serf``, ``mosquitto``
or ``paho-mqtt`` is named with its package, and that column is skipped. Every process it
starts is stopped by pid (peers.py stops its own); exit status 1 if any is left.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from bench.cluster import (
    Cluster,
    Node,
    connected,
    ports_free,
    run_script,
    views,
    wait_for,
    whole_and_symmetric,
)
from bench.stats import percentile
from satellite import Antenna, AntennaError

PEERS_PY = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers.py"
PEERS = ("serf", "mosquitto")
MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _PFN = 1 << 63, (1 << 55) - 1  # /proc/PID/pagemap: present, frame

# Issue 8's budgets.
SERF_FACTOR = 50.0  # time-to-all median at least this many times faster than Serf's
MOSQUITTO_FACTOR = 5.0  # ... and at most this many times Mosquitto's
MEMORY_MIB = 64.0  # PSS per node, 5 peer links and 1 client ("64 MB", read as MiB)
IDLE_CPU_PERCENT = 1.0  # of one core, per node


# --- the machine, and measuring processes ---------------------------------------------------


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def pss_bytes(pids: Iterable[int]) -> int:
    """Proportional set size summed over these processes (shared pages split between
    the processes sharing them, so a sum over many processes counts them once)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass
    return total


def page_frames(pid: int) -> dict[int, int]:
    """Each page ``pid`` has mapped, its address -> its page frame (/proc/PID/pagemap;
    needs root, else empty)."""
    frames: dict[int, int] = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 and fields[5] == "[vsyscall]":
                continue  # not in the page tables: reading it fails
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            data = pagemap.read((end - start) // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("Q", data)):
                if entry & _PRESENT and entry & _PFN:
                    frames[start + i * PAGE] = entry & _PFN
    return frames


def physical_pages(pid: int) -> set[int]:
    """The page frames ``pid`` has mapped (needs root, else empty)."""
    return set(page_frames(pid).values())


def alone_bytes(pids: list[int]) -> int | None:
    """The memory of these processes if nothing else shared a page of it: every page
    frame any of them maps, once. None when the frames cannot be read (not root)."""
    frames: set[int] = set()
    for pid in pids:
        try:
            frames |= physical_pages(pid)
        except OSError:
            return None
    return len(frames) * PAGE if frames else None


def role_of(pid: int) -> str:
    """``Gossip`` for ``satellite[n3] Gossip``; ``launcher``; ``admin``; else the name."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "gone"
    if cmdline.startswith("satellite["):
        return cmdline.split("] ", 1)[-1].strip() or "actor"
    if "MultiProcAdmin" in cmdline:
        return "admin"
    if "run_node.py" in cmdline:
        return "launcher"
    return Path(cmdline.split(" ", 1)[0]).name or "?"


def by_role(pids: dict[str, Iterable[int]], nodes: int) -> tuple[dict, dict]:
    """PSS (MiB, mean per node) and process count (per node) of each actor role."""
    pss: Counter = Counter()
    count: Counter = Counter()
    for node_pids in pids.values():
        for pid in node_pids:
            role = role_of(pid)
            pss[role] += pss_bytes([pid])
            count[role] += 1
    return (
        {r: round(v / nodes / MIB, 2) for r, v in pss.most_common()},
        {r: round(v / nodes, 2) for r, v in count.most_common()},
    )


class CpuWindow:
    """CPU time (user + system) used by groups of processes between ``start()`` and
    ``stop()``, as percent of one core. Processes that start meanwhile count too, once
    they have ended and their parent (one of the group) has reaped them: the kernel adds
    a reaped child's CPU to its parent's (a node's short-lived connection workers, for
    instance). A process of the group that ends meanwhile is in its parent's figure
    that way, its whole life: what it had used before the window is taken off."""

    def __init__(self, groups: dict[str, Iterable[int]]) -> None:
        self.groups = {name: sorted(set(pids)) for name, pids in groups.items()}
        # (group, pid) -> (process, its own CPU, its reaped children's CPU, parent pid)
        self.before: dict[tuple[str, int], tuple[psutil.Process, float, float, int]] = {}
        self.t0 = 0.0

    def start(self) -> CpuWindow:
        for name, pids in self.groups.items():
            for pid in pids:
                try:
                    p = psutil.Process(pid)
                    t = p.cpu_times()
                    own, reaped = t.user + t.system, t.children_user + t.children_system
                    self.before[(name, pid)] = (p, own, reaped, p.ppid())
                except psutil.Error:
                    pass
        self.t0 = time.monotonic()
        return self

    def stop(self) -> dict:
        """``{"seconds", "groups": {name: percent}, "roles": {name: {role: percent}}}``"""
        wall = time.monotonic() - self.t0
        groups: dict[str, float] = {name: 0.0 for name in self.groups}
        roles: dict[str, Counter] = {name: Counter() for name in self.groups}
        members = {pid for _, pid in self.before}
        for (name, pid), (p, own, reaped, ppid) in self.before.items():
            try:
                t = p.cpu_times()
                used = t.user + t.system - own + t.children_user + t.children_system - reaped
            except psutil.Error:  # gone: its parent's reaped figure holds all its life
                if ppid in members:
                    groups[name] -= own
                    roles[name][role_of(ppid)] -= own
                continue
            groups[name] += used
            roles[name][role_of(pid)] += used
        pct = 100.0 / wall if wall > 0 else 0.0
        return {
            "seconds": round(wall, 2),
            "groups": {n: round(max(0.0, v) * pct, 3) for n, v in groups.items()},
            "roles": {
                n: {r: round(v * pct, 3) for r, v in c.most_common()} for n, c in roles.items()
            },
        }


def summarise_times(per_event_ms: list[float]) -> dict:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "p50": r(percentile(per_event_ms, 0.5)),
        "p99": r(percentile(per_event_ms, 0.99)),
        "max": r(max(per_event_ms) if per_event_ms else None),
    }


# --- ours ---------------------------------------------------------------------------------


def node_links(node: Node) -> int:
    with node.antenna() as antenna:
        return len(antenna.topology()["hyparview"]["active_view"])


def node_metrics(nodes: list[Node], timeout: float = 30.0) -> dict[str, dict]:
    """Each node's ``metrics()`` (``{"error": ...}`` for one that does not answer), with
    how long it took to answer (``seconds``): on a starved machine, seconds."""
    out: dict[str, dict] = {}
    for node in nodes:
        t0 = time.monotonic()
        try:
            with Antenna("127.0.0.1", node.client_port, timeout=timeout) as antenna:
                out[node.name] = dict(antenna.metrics())
        except Exception as exc:  # noqa: BLE001 - a figure missing, not a failed run
            out[node.name] = {"error": f"{type(exc).__name__}: {exc}"}
        out[node.name]["seconds"] = round(time.monotonic() - t0, 3)
    return out


def counter_delta(before: dict[str, dict], after: dict[str, dict], prefix: str) -> Counter:
    """Summed over nodes: how much each counter starting with ``prefix`` grew."""
    total: Counter = Counter()
    for name, m in after.items():
        old = before.get(name, {}).get("counters", {})
        for key, value in m.get("counters", {}).items():
            if key.startswith(prefix):
                total[key] += value - old.get(key, 0)
    return +total


def quiesce(antennas: list[Antenna], timeout: float) -> float | None:
    """Wait until the office's Plumtree traffic (GOSSIP, GRAFT, PRUNE sent, summed over
    nodes) stops growing for 2 s and no node has a rewrite of its node entry pending: a
    backlog of the run is not idle. The run's PRUNEs change eager sets, and each node
    writes its new ones to the office state up to a minute later (``NODE_EAGER_EVERY``),
    a broadcast from every node that costs each some 40 ms of CPU, and those broadcasts
    move eager sets again: a 10-node office took 2.5 minutes after its start to come to
    rest (4 writes a node). Asked through the benchmark's attached Antennas (one per
    node): a connection of its own at each poll would cost each node a worker's start.
    Seconds it took, or None when it did not within ``timeout``."""
    t0 = time.monotonic()

    def busy() -> tuple[int, int]:
        total = pending = 0
        for antenna in antennas:
            try:
                m = antenna.metrics()
            except AntennaError:  # a slow node: asked again at the next poll
                return -1, 1
            counters = m.get("counters", {})
            total += sum(
                counters.get(f"plumtree_{k}_sent", 0) for k in ("gossip", "graft", "prune")
            )
            pending += m.get("gauges", {}).get("state_node_entry_pending", 0)
        return total, pending

    before, _ = busy()
    while time.monotonic() - t0 < timeout:
        time.sleep(2.0)
        now, pending = busy()
        if now == before and not pending:
            return round(time.monotonic() - t0, 1)
        before = now
    return None


def own_connections_gone(nodes: list[Node], timeout: float) -> bool:
    """Wait until every node has only the benchmark's one Antenna as a client: each
    ``metrics()`` and ``topology()`` this script asked on a connection of its own left a
    worker process that ends when it closes, and a node's CPU in the idle window would
    count that worker's whole life (about 30-45 ms of CPU, its fork and start included)
    once it is reaped. False when one is still there after ``timeout`` seconds."""

    def gone() -> bool:
        return all(
            [role_of(pid) for pid in node.pids()].count("ClientWorker") <= 1 for node in nodes
        )

    try:
        wait_for(gone, timeout, "the benchmark's own client connections to end", 0.1)
        return True
    except AssertionError:
        return False


def reachable(nodes: list[Node]) -> bool:
    """Every node reachable from the first over active links taken either way."""
    return connected(views(nodes))


def settle(nodes: list[Node], timeout: float) -> str:
    """Wait for a whole, symmetric overlay (read node by node through ``topology()``);
    past ``timeout`` (a large office on a loaded machine may never show all views
    symmetric in one reading), settle for every node reachable, and say which."""
    try:
        # (not wait_whole: its report on timeout would be read from every node and dropped)
        wait_for(lambda: whole_and_symmetric(nodes), timeout, "a whole overlay", 0.1)
        return "whole and symmetric"
    except AssertionError:
        wait_for(lambda: reachable(nodes), 60, "a connected overlay", 0.1)
        return "connected (views not all symmetric in one reading)"


class KeepAlive:
    """Ask each (started) Antenna for ``members()`` every ``every`` seconds while in use.

    A node closes a client connection that sent nothing for 90 s (ClientWorker's
    keepalive is 30 s, three missed), and an Antenna that only listens sends nothing:
    without this, every listening Antenna is cut (and misses events) 90 s after it
    attached, which is not what these benchmarks measure. Failures are counted."""

    def __init__(self, antennas: list[Antenna], every: float = 20.0) -> None:
        self.antennas, self.every = antennas, every
        self.stopping = threading.Event()
        self.failures = 0
        self.thread = threading.Thread(target=self.run, name="keepalive", daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            for antenna in list(self.antennas):
                try:
                    antenna.members()
                except Exception:  # noqa: BLE001 - a slow node: counted
                    self.failures += 1

    def __enter__(self) -> KeepAlive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=self.every + 10)


class Arrivals:
    """Arrival stamps of numbered events at numbered receivers, from callback threads."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.lock = threading.Lock()
        self.seen: dict[Any, dict[int, float]] = {}
        self.duplicates = 0

    def record(self, receiver: int, key: Any) -> None:
        t = time.monotonic()
        with self.lock:
            got = self.seen.setdefault(key, {})
            if receiver in got:
                self.duplicates += 1
            else:
                got[receiver] = t

    def callback(self, receiver: int):
        return lambda payload: self.record(receiver, payload["id"])

    def complete(self, keys: Iterable[Any]) -> bool:
        with self.lock:
            return all(len(self.seen.get(k, ())) >= self.receivers for k in keys)

    def per_event_ms(self, sent_at: dict[Any, float]) -> list[float | None]:
        """Each event's time-to-all in publishing order (None: not everywhere)."""
        with self.lock:
            return [
                round((max(got.values()) - t0) * 1000.0, 1)
                if len(got := self.seen.get(key, {})) >= self.receivers
                else None
                for key, t0 in sent_at.items()
            ]

    def summary(self, sent_at: dict[Any, float]) -> dict:
        with self.lock:
            per_event = []
            delivered = 0
            for key, t0 in sent_at.items():
                got = self.seen.get(key, {})
                delivered += len(got)
                if len(got) >= self.receivers:
                    per_event.append((max(got.values()) - t0) * 1000.0)
            expected = len(sent_at) * self.receivers
            return {
                "events": len(sent_at),
                "receivers": self.receivers,
                "delivered": delivered,
                "expected": expected,
                "delivered_ratio": round(delivered / expected, 4) if expected else None,
                "duplicates": self.duplicates,
                "time_to_all_ms": summarise_times(per_event),
            }


def run_ours(
    n: int, events: int, rate: float, idle: float, tmp: Path, say, out: dict | None = None
) -> dict:
    """Our side; ``out`` is filled as it goes (what was measured before a failure stays)."""
    prefix = f"cmp{os.getpid() % 10000}x"  # names processes: apart from other clusters
    flags = ("--sensor", "none", "--network-scan", "none")
    cluster = Cluster(tmp, n, prefix=prefix, extra=lambda i: flags)
    out = {} if out is None else out
    out.update({"nodes": n, "events": events, "flags": " ".join(flags), "rate_per_s": rate})
    antennas: list[Antenna] = []
    keepalive: KeepAlive | None = None
    try:
        t0 = time.monotonic()
        for node in cluster.nodes:  # Cluster.start(), with room for a loaded machine
            node.start()
        for node in cluster.nodes:
            node.wait_up(timeout=60.0 + 2 * n)
        out["start_to_all_answering_s"] = round(time.monotonic() - t0, 2)
        out["overlay"] = settle(cluster.nodes, 30 + 3 * n)
        out["start_to_whole_overlay_s"] = round(time.monotonic() - t0, 2)
        say(
            f"ours: {n} nodes up, overlay {out['overlay']} "
            f"after {out['start_to_whole_overlay_s']} s"
        )

        arrivals = Arrivals(n)
        keepalive = KeepAlive(antennas).__enter__()  # sees the antennas as they are added
        for i, node in enumerate(cluster.nodes):
            antenna = node.antenna()
            antenna.on("bench")(arrivals.callback(i))
            antenna.start()
            antennas.append(antenna)
        time.sleep(0.5)  # the subscriptions have reached Gossip
        before = node_metrics(cluster.nodes)

        publisher = antennas[0]  # node 0's own client: one client per node
        sent_at: dict[int, float] = {}
        start = time.monotonic()
        for k in range(events):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at[k] = time.monotonic()
            publisher.publish("bench", {"id": k, "temp": 23.5})
        last = time.monotonic()
        out["publish_seconds"] = round(last - start, 3)
        try:
            wait_for(lambda: arrivals.complete(sent_at), 10.0, "every event everywhere", 0.01)
        except AssertionError:
            pass  # counted as not delivered
        out.update(arrivals.summary(sent_at))
        out["time_to_all_ms_by_event"] = arrivals.per_event_ms(sent_at)
        after = node_metrics(cluster.nodes)
        sent = counter_delta(before, after, "plumtree_")
        out["peer_messages_per_event"] = {
            k.removeprefix("plumtree_").removesuffix("_sent"): round(v / max(1, events), 2)
            for k, v in sorted(sent.items())
            if k.endswith("_sent")
        }
        out["client_deliveries_per_event"] = round(
            counter_delta(before, after, "client_deliveries")["client_deliveries"] / max(1, events),
            2,
        )
        say(
            f"ours: delivered {out['delivered']}/{out['expected']}, "
            f"time-to-all p50 {out['time_to_all_ms']['p50']} ms"
        )

        out["quiet_after_s"] = quiesce(antennas, 240.0)  # no backlog in the idle window
        links = {node.name: node_links(node) for node in cluster.nodes}
        out["own_connections_gone"] = own_connections_gone(cluster.nodes, 10.0)
        pids = {node.name: node.pids() for node in cluster.nodes}
        window = CpuWindow(pids).start()
        time.sleep(idle)
        cpu = window.stop()
        pss = {name: pss_bytes(p) for name, p in pids.items()}
        out["pss_mib_by_role_mean"], out["processes_by_role"] = by_role(pids, n)
        out["links"] = links
        out["processes_per_node"] = round(statistics.mean(len(p) for p in pids.values()), 1)
        out["processes_by_node"] = {name: len(p) for name, p in pids.items()}
        out["pss_mib_per_node"] = {name: round(v / MIB, 1) for name, v in pss.items()}
        out["pss_mib_mean"] = round(statistics.mean(pss.values()) / MIB, 1)
        out["pss_mib_max"] = round(max(pss.values()) / MIB, 1)
        # The budget's case: 5 peer connections and 1 client, counted as the node's
        # connection workers (a node may hold a 6th connection for a moment: a shuffle,
        # a NEIGHBOR request it is turning down), with 5 links in its active view.
        workers = {
            name: Counter(r for r in map(role_of, p) if r.endswith("Worker"))
            for name, p in pids.items()
        }
        out["connection_workers_by_node"] = {n: dict(w) for n, w in workers.items()}
        five = [
            name
            for name, count in links.items()
            if count == 5 and workers[name] == Counter(PeerWorker=5, ClientWorker=1)
        ]
        out["pss_mib_max_with_5_links"] = (
            round(max(pss[name] for name in five) / MIB, 1) if five else None
        )
        out["nodes_with_5_links_1_client"] = len(five)
        # As on a Pi, where nothing but the node maps its libraries (root only).
        alone = [alone_bytes(sorted(pids[name])) for name in five]
        known = [a for a in alone if a is not None]
        out["alone_mib_max_with_5_links"] = round(max(known) / MIB, 1) if known else None
        out["idle_cpu_seconds"] = cpu["seconds"]
        out["idle_cpu_percent_per_node"] = cpu["groups"]
        out["idle_cpu_percent_mean"] = round(statistics.mean(cpu["groups"].values()), 3)
        out["idle_cpu_percent_max"] = round(max(cpu["groups"].values()), 3)
        roles: Counter = Counter()
        for per_role in cpu["roles"].values():
            roles.update(per_role)
        out["idle_cpu_percent_by_role_mean"] = {r: round(v / n, 3) for r, v in roles.most_common()}
        say(f"ours: PSS {out['pss_mib_mean']} MiB/node, idle CPU {out['idle_cpu_percent_mean']} %")
    finally:
        if keepalive is not None:
            keepalive.__exit__()
        for antenna in antennas:
            antenna.stop()
        cluster.stop()
        out["processes_left"] = sorted(cluster.leftovers())
    return out


# --- the peers ----------------------------------------------------------------------------


def missing(peer: str) -> str | None:
    """Why this peer cannot run here (what to install), or None."""
    if peer == "serf":
        if not shutil.which("serf"):
            return "serf is not installed: apt-get install serf"
    elif peer == "mosquitto":
        if not shutil.which("mosquitto"):
            return "mosquitto is not installed: apt-get install mosquitto"
        if importlib.util.find_spec("paho") is None:
            return "paho-mqtt is not installed: pip install paho-mqtt (into this Python)"
    if not PEERS_PY.exists():
        return f"{PEERS_PY} is missing"
    return None


def peer_port_block(n: int) -> int:
    """A base for peers.py (it uses base..base+n, base+1000.., base+2000) below our
    nodes' admin ports (30000 and up) and Linux's ephemeral range."""
    for base in range(27000, 20000, -100):
        ports = [base + i for i in range(n)] + [base + 1000 + i for i in range(n)]
        if ports_free([*ports, base + 2000]):
            return base
    raise RuntimeError("no free ports for peers.py")


def run_peer(peer: str, n: int, events: int, say) -> dict:
    reason = missing(peer)
    if reason:
        say(f"{peer}: skipped: {reason}")
        return {"peer": peer, "skipped": reason}
    env = {**os.environ, "PEERS_BASE_PORT": str(peer_port_block(n))}
    cmd = [sys.executable, str(PEERS_PY), peer, "--nodes", str(n), "--events", str(events)]
    say(f"{peer}: {shlex.join(cmd)}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": "peers.py took more than 300 s"}
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"peer": peer, "error": f"peers.py exited {done.returncode}: {' / '.join(tail)}"}
    result["command"] = shlex.join([Path(sys.executable).name, *cmd[1:]])
    if "error" in result:
        say(f"{peer}: {result['error']}")
    else:
        say(f"{peer}: time-to-all p50 {result['time_to_all_ms']['p50']} ms")
    return result


def _stop_procs(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def peers_idle(n: int, seconds: float, which: list[str], say) -> dict:
    """Idle CPU and PSS of N joined Serf agents and of a Mosquitto broker with N idle
    subscribers, both over one window of ``seconds``."""
    out: dict = {}
    procs: list[subprocess.Popen] = []
    clients: list = []
    groups: dict[str, list[int]] = {}
    tmp = tempfile.mkdtemp(prefix="compare-idle-")
    try:
        base = peer_port_block(n)
        if "serf" in which and not missing("serf"):
            agents = []
            for i in range(n):
                log = open(os.path.join(tmp, f"serf{i}.log"), "w")
                cmd = [
                    "serf",
                    "agent",
                    f"-node=idle{i}",
                    f"-bind=127.0.0.1:{base + i}",
                    f"-rpc-addr=127.0.0.1:{base + 1000 + i}",
                    "-log-level=warn",
                ]
                agents.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
                log.close()
            procs += agents
            for i in range(1, n):
                rpc = f"-rpc-addr=127.0.0.1:{base + 1000 + i}"
                wait_for(
                    lambda rpc=rpc: (
                        subprocess.run(
                            ["serf", "join", rpc, f"127.0.0.1:{base}"], capture_output=True
                        ).returncode
                        == 0
                    ),
                    15,
                    "serf join",
                    0.1,
                )
            groups["serf"] = [p.pid for p in agents]
        if "mosquitto" in which and not missing("mosquitto"):
            import paho.mqtt.client as mqtt

            port = base + 2000
            conf = os.path.join(tmp, "m.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            broker = subprocess.Popen(
                ["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            procs.append(broker)

            def up() -> bool:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True

            wait_for(up, 10, "the broker's port", 0.05)
            api = getattr(mqtt, "CallbackAPIVersion", None)
            for i in range(n):
                name = f"idle{i}"
                c = (
                    mqtt.Client(api.VERSION2, client_id=name)
                    if api
                    else mqtt.Client(client_id=name)
                )
                c.connect("127.0.0.1", port)
                c.subscribe("office/events", qos=0)
                c.loop_start()
                clients.append(c)
            groups["mosquitto"] = [broker.pid]
        if not groups:
            return out
        time.sleep(3.0)  # peers.py's settle time
        window = CpuWindow(groups).start()
        time.sleep(seconds)
        cpu = window.stop()
        for name, pids in groups.items():
            members = len(pids)
            out[name] = {
                "processes": members,
                "idle_cpu_percent_per_process": round(cpu["groups"][name] / members, 3),
                "pss_mib_per_process": round(pss_bytes(pids) / members / MIB, 1),
                "rss_mib_per_process": round(
                    sum(psutil.Process(p).memory_info().rss for p in pids) / members / MIB, 1
                ),
                "seconds": cpu["seconds"],
            }
            say(f"{name}: idle CPU {out[name]['idle_cpu_percent_per_process']} % per process")
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        _stop_procs(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- the table ----------------------------------------------------------------------------


def get(d: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text}{unit}"


def times(ratio: float | None, better: str = "less", worse: str = "more") -> str:
    """``peer / ours`` as words: ``12.0x faster`` when theirs is 12 times ours."""
    if ratio is None:
        return "n/a"
    if ratio == 0:
        return f"theirs 0: ours {worse}"
    if ratio >= 1:
        return f"{ratio:.1f}x {better}"
    return f"{1 / ratio:.1f}x {worse}"


def ratio(peer: Any, ours: Any) -> float | None:
    if not isinstance(peer, int | float) or not isinstance(ours, int | float) or ours <= 0:
        return None
    return peer / ours


def rows(result: dict) -> list[list[str]]:
    """The table's rows: what, ours, each peer, and ours against each peer."""
    ours, peers, idle = result["ours"], result["peers"], result.get("peers_idle", {})
    names = [p for p in PEERS if p in peers]

    def pct(v: Any) -> Any:
        return v * 100 if isinstance(v, int | float) else v

    out = []
    # (label, our value, [peer values], lower is better, unit)
    spec: list[tuple[str, Any, list[Any], bool, str]] = [
        (
            "delivered (event, member) pairs",
            pct(ours.get("delivered_ratio")),
            [pct(get(peers[p], "delivered_ratio")) for p in names],
            False,
            " %",
        ),
    ]
    for q in ("p50", "p99", "max"):
        spec.append(
            (
                f"time-to-all {q}",
                get(ours, "time_to_all_ms", q),
                [get(peers[p], "time_to_all_ms", q) for p in names],
                True,
                " ms",
            )
        )
    spec.append(
        (
            "memory per node: ours PSS, peers RSS (peers.py; Mosquitto: the broker)",
            ours.get("pss_mib_mean"),
            [get(peers[p], "rss_mib_per_member") for p in names],
            True,
            " MiB",
        )
    )
    spec.append(
        (
            "memory per node, PSS (measured here, idle)",
            ours.get("pss_mib_mean"),
            [get(idle, p, "pss_mib_per_process") for p in names],
            True,
            " MiB",
        )
    )
    spec.append(
        (
            "idle CPU per node (% of one core)",
            ours.get("idle_cpu_percent_mean"),
            [get(idle, p, "idle_cpu_percent_per_process") for p in names],
            True,
            " %",
        )
    )
    for label, mine, theirs, lower, unit in spec:
        row = [label, fmt(mine, unit)]
        for p, v in zip(names, theirs, strict=True):
            res = peers[p]
            if "skipped" in res or "error" in res:
                row.append("skipped" if "skipped" in res else "error")
            else:
                row.append(fmt(v, unit))
        for v in theirs:
            r = ratio(v, mine) if lower else ratio(mine, v)
            if label.startswith("delivered"):
                row.append("n/a" if v is None or mine is None else f"{mine - v:+.1f} points")
            else:
                words = ("faster", "slower") if label.startswith("time") else ("less", "more")
                row.append(times(r, *words))
        out.append(row)
    return out


def budgets(result: dict) -> list[dict]:
    """Issue 8's budgets that this run measures: what, the figure, pass/fail/n-a."""
    ours, peers = result["ours"], result["peers"]
    n = ours.get("nodes")
    out = []
    p50 = get(ours, "time_to_all_ms", "p50")
    serf = get(peers, "serf", "time_to_all_ms", "p50")
    r = ratio(serf, p50)
    out.append(
        {
            "budget": f"time-to-all median >= {SERF_FACTOR:g}x faster than Serf's "
            f"(issue 8 sets it for 10 nodes; here {n})",
            "figure": None if r is None else f"{serf} / {p50} ms = {r:.1f}x",
            "ok": None if r is None else r >= SERF_FACTOR,
        }
    )
    mosq = get(peers, "mosquitto", "time_to_all_ms", "p50")
    r = ratio(p50, mosq)
    out.append(
        {
            "budget": f"time-to-all median <= {MOSQUITTO_FACTOR:g}x Mosquitto's "
            f"(issue 8 sets it for 10 nodes; here {n})",
            "figure": None if r is None else f"{p50} / {mosq} ms = {r:.1f}x",
            "ok": None if r is None else r <= MOSQUITTO_FACTOR,
        }
    )
    share = ours.get("delivered_ratio")
    out.append(
        {
            "budget": "100% delivered",
            "figure": None
            if share is None
            else f"{ours.get('delivered')}/{ours.get('expected')} pairs",
            "ok": None if share is None else share == 1.0,
        }
    )
    mem = ours.get("pss_mib_max_with_5_links")
    where = (
        f"max over the {ours.get('nodes_with_5_links_1_client')} nodes with 5 peer links "
        "and 1 client"
    )
    if mem is None:
        mem = ours.get("pss_mib_max")
        where = "max over all nodes (none had exactly 5 peer links and 1 client)"
    elif ours.get("alone_mib_max_with_5_links") is not None:
        # Not the budget's measure (PSS, as issue 8 says), but what it means on a Pi.
        where += (
            f"; counting every page of theirs whole, as on a Pi where nothing else maps"
            f" the node's libraries: {ours['alone_mib_max_with_5_links']} MiB"
        )
    python = str(result.get("machine", {}).get("python", ""))
    if python.startswith("3.11"):
        where += (
            f"; Python {python} has no immortal objects: its reference counts copy the"
            " shared pages into every process, about 25 MiB a node more than under 3.12"
            " or later (README, Memory)"
        )
    out.append(
        {
            "budget": f"memory <= {MEMORY_MIB:g} MiB PSS per node, 5 peer links and 1 client",
            "figure": None if mem is None else f"{mem} MiB ({where})",
            "ok": None if mem is None else mem <= MEMORY_MIB,
        }
    )
    cpu = ours.get("idle_cpu_percent_max")
    out.append(
        {
            "budget": f"idle CPU < {IDLE_CPU_PERCENT:g}% of one core per node",
            "figure": None if cpu is None else f"{cpu} % (the busiest node)",
            "ok": None if cpu is None else cpu < IDLE_CPU_PERCENT,
        }
    )
    return out


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def budget_lines(budgets: list[dict]) -> list[str]:
    """The budgets of issue 8, each with its pass/fail mark, as markdown lines."""
    lines = ["", "Budgets (issue 8):", ""]
    for b in budgets:
        lines.append(f"- **{mark(b['ok'])}** {b['budget']}: {b['figure'] or 'not measured'}")
    return lines


def render(result: dict) -> str:
    m, ours, peers = result["machine"], result["ours"], result["peers"]
    names = [p for p in PEERS if p in peers]
    lines = [
        f"## Satellite vs {' vs '.join(names) or '(no peers)'}: "
        f"{ours.get('nodes')} nodes on 127.0.0.1, {ours.get('events')} events",
        "",
        f"- command: `{m['command']}`",
        f"- date: {m['date']}; machine: {m['cpu']}, {m['cpus']} CPUs, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}",
        f"- load average (1, 5, 15 min): {m['load_average']} at the start, "
        f"{result.get('load_average_end')} at the end",
        *([f"- ours: ERROR {ours['error']}"] if "error" in ours else []),
        f"- ours: `run_node.py {ours.get('flags')}`, one Antenna per node, events published "
        f"at node 0 at {ours.get('rate_per_s'):g}/s; time-to-all counts all "
        f"{ours.get('nodes')} Antennas (the publisher's node too); idle: "
        f"{ours.get('idle_cpu_seconds')} s after the run, once the office was quiet "
        f"(after {ours.get('quiet_after_s')} s; None: it was not) and the benchmark's own "
        "short client connections had ended (their workers' CPU is not the office's), "
        "Antennas attached (each asks "
        "`members()` every 20 s: a node closes a client link silent for 90 s)",
    ]
    for p in names:
        res = peers[p]
        if "skipped" in res:
            lines.append(f"- {p}: skipped: {res['skipped']}")
        elif "error" in res:
            lines.append(f"- {p}: error: {res['error']}")
        else:
            lines.append(f"- {p}: `{res.get('command')}` {res.get('version', '')}".rstrip())
    lines.append("")
    header = ["", "ours (Satellite)", *names, *[f"ours vs {p}" for p in names]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---" * len(header) + "|")
    for row in rows(result):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        f"Ours in detail: overlay {ours.get('overlay')} {ours.get('start_to_whole_overlay_s')} s "
        "after start; "
        f"{ours.get('processes_per_node')} processes per node; peer links per node "
        f"{sorted((ours.get('links') or {}).values())}; PSS max {ours.get('pss_mib_max')} MiB; "
        f"idle CPU max {ours.get('idle_cpu_percent_max')} %; duplicates "
        f"{ours.get('duplicates')}; peer messages per event {ours.get('peer_messages_per_event')};"
        f" idle CPU by actor (mean per node, %) {ours.get('idle_cpu_percent_by_role_mean')};"
        f" PSS by actor (MiB, mean per node) {ours.get('pss_mib_by_role_mean')}"
    )
    lines += budget_lines(result["budgets"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10, help="members on each side (default 10)")
    p.add_argument("--events", type=int, default=30, help="events published (default 30)")
    p.add_argument("--rate", type=float, default=20.0, help="our events per second (20)")
    p.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="seconds of the idle CPU window, once the office is at rest (up to a few "
        "minutes after the events)",
    )
    p.add_argument(
        "--peers", default="serf,mosquitto", help="which peers to run (comma-separated, or none)"
    )
    p.add_argument("--json", metavar="FILE", help="also write everything as JSON there")
    args = p.parse_args(argv)
    if args.nodes < 2:
        p.error("--nodes must be at least 2")
    if args.events < 1 or args.rate <= 0 or args.idle <= 0:
        p.error("--events, --rate and --idle must be positive")
    chosen = [] if args.peers.strip() in ("", "none") else args.peers.split(",")
    unknown = [x for x in chosen if x not in PEERS]
    if unknown:
        p.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    args.peers = [x for x in PEERS if x in chosen]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    result: dict = {"machine": machine()}
    result["ours"] = ours = {}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        try:
            run_ours(args.nodes, args.events, args.rate, args.idle, Path(tmp), say, ours)
        except Exception as exc:  # noqa: BLE001 - reported, and the peers still run
            ours["error"] = f"{type(exc).__name__}: {exc}"
            say(f"ours: {ours['error']}\n{traceback.format_exc()}")
    result["peers"] = {p: run_peer(p, args.nodes, args.events, say) for p in args.peers}
    result["peers_idle"] = peers_idle(args.nodes, args.idle, args.peers, say)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["budgets"] = budgets(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    left = ours.get("processes_left")
    if left:
        print(f"processes left behind: {left}", file=sys.stderr)
    return 1 if left or "error" in ours else 0


if __name__ == "__main__":
    run_script(main, "compare.py")
