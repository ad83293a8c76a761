"""Throughput and scale figures of issue 8, on real nodes on 127.0.0.1.

    python bench/throughput.py [--nodes 10] [--duration 30] [--rates 100,200,300,400,600,800]
                               [--drain 10] [--targets 20] [--clients 10] [--key]
                               [--json FILE]

1. Start: N nodes (``--sensor sim:<20..24> --read-interval 3600 --network-scan none``:
   one reading each at start, then quiet) started together; seconds from each process's
   start until its client port answers (an Antenna's handshake is welcomed).
2. The office state: ``--targets`` targets set at node 0, and the N readings, until every
   node's ``state()`` has them all.
3. A node with 5 peer links (the busiest if none has exactly 5) and ``--clients`` Antennas
   attached to it: its PSS (every process, via psutil), its CPU over 10 s idle, and its
   CPU over 10 s while the office carries ``--load-rate`` events/s.
4. Join: one more node (``--sensor none``) started into the running office through node
   0: seconds from its process start until its client port answers, and from then until
   its ``state()`` has the same targets and readings as node 0's. Then it is stopped.
5. Throughput: publish from all N nodes round-robin (one publishing Antenna per node, one
   thread each, on a fixed schedule) at each rate of ``--rates`` for ``--duration``
   seconds, with one subscribed Antenna per node. A step is lost when any (event,
   Antenna) pair is still missing ``--drain`` seconds after its last publish; it is
   sustained when nothing is lost, no publish failed, and the publishers kept up (at
   least 95% of the rate asked; a publisher stops at the step's end plus 10%). Steps
   stop at the first one not sustained. Every listening Antenna asks ``members()``
   every 20 s (see ``compare.KeepAlive``): a node cuts a client silent for 90 s.

With ``--key`` every node and Antenna holds a fresh cluster key, so every link does the
key handshake and seals its frames: issue 7 allows encryption at most 20% of the
throughput of the same run without it.

Budgets of issue 8: at least 300 events/s across a 10-node office for 30 s with 0 lost; a
new node has the full office state within 2 s of joining (here: of its client port
answering; the time from its process start is printed beside it). Everything started is
stopped by pid; exit status 1 if any process is left.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.cluster import Cluster, Node, run_script, wait_for
from bench.compare import (
    MIB,
    Arrivals,
    CpuWindow,
    KeepAlive,
    budget_lines,
    by_role,
    counter_delta,
    machine,
    node_links,
    node_metrics,
    pss_bytes,
    settle,
)
from satellite import Antenna

RATE_BUDGET = 300.0  # events/s across the office, for 30 s, 0 lost
JOIN_BUDGET = 2.0  # seconds until a new node has the full office state
KEEP_UP = 0.95  # share of the asked rate the publishers must reach


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def answers(node: Node, timeout: float = 1.0) -> bool:
    """Whether the node's client port welcomes an Antenna right now."""
    antenna = Antenna("127.0.0.1", node.client_port, timeout=timeout, key=node.keyring)
    try:
        antenna.connect()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        antenna.close()


def start_together(nodes: list[Node], timeout: float) -> dict[str, float]:
    """Start every node at once; seconds from each one's process start to its client
    port answering."""
    started = {}
    for node in nodes:
        started[node.name] = time.monotonic()
        node.start()
    up: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(up) < len(nodes):
        if time.monotonic() > deadline:
            late = [n.name for n in nodes if n.name not in up]
            raise AssertionError(f"nodes {late} did not answer within {timeout} s")
        for node in nodes:
            if node.name not in up and answers(node):
                up[node.name] = round(time.monotonic() - started[node.name], 3)
        time.sleep(0.02)
    return up


def office(antenna: Antenna) -> tuple[dict, dict]:
    state = antenna.state()
    return dict(state["targets"]), dict(state["readings"])


# --- throughput -----------------------------------------------------------------------------


class Office:
    """One subscribed Antenna per node (kept for every step) and one publishing Antenna
    per node; ``step()`` publishes at a rate and counts what reached whom."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.arrivals = Arrivals(len(nodes))
        self.subscribers: list[Antenna] = []
        self.publishers: list[Antenna] = []

    def __enter__(self) -> Office:
        for i, node in enumerate(self.nodes):
            antenna = node.antenna()
            antenna.on("tp")(lambda p, i=i: self.arrivals.record(i, p["id"]))
            antenna.start()
            self.subscribers.append(antenna)
            self.publishers.append(node.antenna().connect())
        self.keepalive = KeepAlive(self.subscribers).__enter__()
        time.sleep(0.5)  # the subscriptions have reached Gossip
        return self

    def __exit__(self, *exc: object) -> None:
        self.keepalive.__exit__()
        for antenna in self.subscribers + self.publishers:
            antenna.stop()

    def step(self, name: str, rate: float, duration: float, drain: float) -> dict:
        """Publish ``rate`` events/s round-robin from every node for ``duration`` s."""
        self.arrivals = Arrivals(len(self.nodes))
        n = len(self.nodes)
        total = max(n, int(round(rate * duration)))
        sent_at: dict[str, float] = {}
        errors: list[str] = []
        lateness: list[float] = []
        lock = threading.Lock()
        start = time.monotonic() + 0.2
        stop_by = start + duration + max(2.0, 0.1 * duration)

        def publish(i: int) -> None:
            antenna = self.publishers[i]
            for g in range(i, total, n):  # event g is due at start + g / rate
                due = start + g / rate
                if time.monotonic() > stop_by:
                    break  # publishers that fell this far behind did not keep up
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                key = f"{name}/{g}"
                t = time.monotonic()
                try:
                    antenna.publish("tp", {"id": key, "temp": 23.5})
                except Exception as exc:  # noqa: BLE001 - counted, and the step fails
                    with lock:
                        errors.append(f"node {i}: {exc}")
                    continue
                with lock:
                    sent_at[key] = t
                    lateness.append(t - due)

        threads = [threading.Thread(target=publish, args=(i,), daemon=True) for i in range(n)]
        me = psutil.Process()
        pids = {node.name: node.pids() for node in self.nodes}
        before = node_metrics(self.nodes, timeout=10.0)
        cpu = CpuWindow({**pids, "benchmark": [me.pid]}).start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        last = max(sent_at.values(), default=start)
        published_for = last - start
        with lock:
            keys = list(sent_at)
        try:
            left = max(0.0, last + drain - time.monotonic())
            wait_for(lambda: self.arrivals.complete(keys), left, "every event everywhere", 0.05)
        except AssertionError:
            pass  # what is missing now is lost
        summary = self.arrivals.summary(sent_at)  # at the deadline: what is missing is lost
        used = cpu.stop()
        after = node_metrics(self.nodes, timeout=10.0)
        out = {"name": name, "rate_asked": rate, "duration_s": duration, **summary}
        out["lost_pairs"] = out["expected"] - out["delivered"]
        # Of those, how many still came while the nodes' metrics were read (late, not lost
        # by the node; the step still counts them lost).
        out["arrived_after_deadline"] = (
            self.arrivals.summary(sent_at)["delivered"] - out["delivered"]
        )
        out["publish_errors"] = len(errors)
        out["publish_error_sample"] = errors[:3]
        out["rate_achieved"] = round(len(sent_at) / published_for, 1) if published_for > 0 else None
        out["publish_late_s_max"] = round(max(lateness), 3) if lateness else None
        nodes_cpu = [v for k, v in used["groups"].items() if k != "benchmark"]
        out["node_cpu_percent_mean"] = round(statistics.mean(nodes_cpu), 1)
        out["node_cpu_percent_max"] = round(max(nodes_cpu), 1)
        out["office_cpu_percent"] = round(sum(nodes_cpu), 1)
        out["benchmark_cpu_percent"] = used["groups"]["benchmark"]
        busiest = max((k for k in used["groups"] if k != "benchmark"), key=used["groups"].get)
        out["busiest_node_cpu_by_role"] = used["roles"][busiest]
        roles: Counter = Counter()
        for k, per_role in used["roles"].items():
            if k != "benchmark":
                roles.update(per_role)
        out["office_cpu_percent_by_role"] = {r: round(v, 1) for r, v in roles.most_common()}
        sent = counter_delta(before, after, "plumtree_")
        events = max(1, len(sent_at))
        out["peer_messages_per_event"] = {
            k.removeprefix("plumtree_").removesuffix("_sent"): round(v / events, 2)
            for k, v in sorted(sent.items())
            if k.endswith("_sent")
        }
        out["sustained"] = (
            out["lost_pairs"] == 0
            and not errors
            and out["rate_achieved"] is not None
            and out["rate_achieved"] >= KEEP_UP * rate
        )
        return out


def clients_phase(args: argparse.Namespace, nodes: list[Node], spare: Node, ref: Any) -> dict:
    """PSS and CPU (idle, then loaded) of a node with 5 links and ``--clients`` clients."""
    links = {node.name: node_links(node) for node in nodes}
    five = [node for node in nodes if links[node.name] == 5]
    host = five[0] if five else max(nodes, key=lambda x: links[x.name])
    clients: list[Antenna] = []
    keepalive = KeepAlive(clients).__enter__()  # sees the clients as they are added
    try:
        for _ in range(args.clients):
            antenna = host.antenna()
            antenna.on("tp")(lambda p: None)
            antenna.start()
            clients.append(antenna)
        time.sleep(2.0)
        pids = host.pids()
        fig: dict[str, Any] = {
            "node": host.name,
            "peer_links": links[host.name],
            "clients": args.clients,
            "processes": len(pids),
            "pss_mib": round(pss_bytes(pids) / MIB, 1),
        }
        fig["pss_mib_by_role"], fig["processes_by_role"] = by_role({host.name: pids}, 1)
        window = CpuWindow({"node": pids}).start()
        time.sleep(10.0)
        idle = window.stop()
        fig["idle_cpu_percent"] = idle["groups"]["node"]
        fig["idle_cpu_percent_by_role"] = idle["roles"]["node"]
        with Office(nodes) as office_:
            window = CpuWindow({"node": host.pids()}).start()
            loaded = office_.step("load", args.load_rate, 10.0, args.drain)
            busy = window.stop()
        fig["load_rate"] = args.load_rate
        fig["loaded_cpu_percent"] = busy["groups"]["node"]
        fig["loaded_cpu_percent_by_role"] = busy["roles"]["node"]
        fig["load_delivered_ratio"] = loaded["delivered_ratio"]
        say(
            f"{host.name} with {links[host.name]} links and {args.clients} clients: "
            f"{fig['pss_mib']} MiB PSS, CPU {fig['idle_cpu_percent']} % idle, "
            f"{fig['loaded_cpu_percent']} % at {args.load_rate} events/s"
        )
        return fig
    finally:
        keepalive.__exit__()
        for antenna in clients:
            antenna.stop()


def join_phase(args: argparse.Namespace, nodes: list[Node], spare: Node, ref: Any) -> dict:
    """Start ``spare`` into the office: until its client port answers, then until its
    state has the targets and readings of ``ref`` (node 0's). Stopped afterwards."""
    t0 = time.monotonic()
    spare.start()
    try:
        wait_for(lambda: answers(spare, 0.5), 120, f"{spare.name}'s client port", 0.01)
        t_up = time.monotonic()
        with spare.antenna() as antenna:
            wait_for(lambda: office(antenna) == ref, 60, "the full office", 0.02)
        t_full = time.monotonic()
    finally:
        spare.stop()
    out = {
        "start_to_client_port_s": round(t_up - t0, 3),
        "client_port_to_full_state_s": round(t_full - t_up, 3),
        "start_to_full_state_s": round(t_full - t0, 3),
    }
    say(f"join: {out}")
    return out


# --- the run ------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, out: dict) -> None:
    n = args.nodes
    prefix = f"thr{os.getpid() % 10000}x"

    keyed: tuple = ()
    if args.key:
        # Every link sealed (ChaCha20-Poly1305): what encryption costs is this run's
        # figures beside those of a run without --key.
        from protocols.secure import KEY_BYTES, format_key

        key_file = tmp / "cluster.key"
        key_file.write_text(format_key(os.urandom(KEY_BYTES)) + "\n")
        keyed = ("--key-file", str(key_file))

    def flags(i: int) -> tuple:
        if i == n:  # the node that joins later
            return ("--sensor", "none", "--network-scan", "none", *keyed)
        return (
            "--sensor",
            f"sim:{20 + i % 5}",
            "--read-interval",
            "3600",
            "--network-scan",
            "none",
            *keyed,
        )

    cluster = Cluster(tmp, n + 1, prefix=prefix, extra=flags)
    nodes, spare = cluster.nodes[:n], cluster.nodes[n]
    try:
        # 1. start
        up = start_together(nodes, timeout=60.0 + 3 * n)
        out["start_together_s"] = {
            "median": round(statistics.median(up.values()), 2),
            "max": round(max(up.values()), 2),
        }
        t0 = time.monotonic()
        out["overlay"] = settle(nodes, 60 + 3 * n)
        out["all_up_to_whole_overlay_s"] = round(time.monotonic() - t0, 2)
        say(f"{n} nodes answering after {out['start_together_s']} s; overlay {out['overlay']}")

        # 2. the office state
        with nodes[0].antenna() as antenna:
            for k in range(args.targets):
                antenna.set(f"target-{k:02d}", {"value": k, "unit": "lux"})

        def everywhere() -> bool:
            states = []
            for node in nodes:
                with node.antenna() as antenna:
                    states.append(office(antenna))
            targets, readings = states[0]
            return (
                len(targets) == args.targets
                and len(readings) == n
                and all(s == states[0] for s in states)
            )

        wait_for(everywhere, 60, "the office state on every node", 0.2)
        with nodes[0].antenna() as antenna:
            reference = office(antenna)
        out["office_state"] = {"targets": len(reference[0]), "readings": len(reference[1])}
        say(f"office state everywhere: {out['office_state']}")

        # 3. a node with 5 links and many clients; 4. a new node joins
        for phase, key in ((clients_phase, "clients_node"), (join_phase, "join")):
            try:
                out[key] = phase(args, nodes, spare, reference)
            except Exception as exc:  # noqa: BLE001 - reported; the other phases still run
                out[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
                say(f"{key}: {out[f'{key}_error']}")
        out["overlay_before_steps"] = settle(nodes, 60 + 3 * n)

        # 5. throughput
        out["steps"] = []
        with Office(nodes) as office_:
            for rate in args.rates:
                say(f"step: {rate:g} events/s for {args.duration:g} s")
                result = office_.step(f"r{rate:g}", rate, args.duration, args.drain)
                out["steps"].append(result)
                say(
                    f"  achieved {result['rate_achieved']}/s, lost {result['lost_pairs']} pairs, "
                    f"p50 {result['time_to_all_ms']['p50']} ms, node CPU mean "
                    f"{result['node_cpu_percent_mean']} %, benchmark "
                    f"{result['benchmark_cpu_percent']} %"
                )
                if not result["sustained"]:
                    break
                time.sleep(2.0)
    finally:
        cluster.stop()
        out["processes_left"] = sorted(cluster.leftovers())


# --- output -------------------------------------------------------------------------------


def budgets(out: dict, nodes: int, duration: float) -> list[dict]:
    steps = out.get("steps") or []
    best = max((s["rate_asked"] for s in steps if s["sustained"]), default=None)
    ok: bool | None = None
    if steps:
        ok = best is not None and best >= RATE_BUDGET and duration >= 30 and nodes >= 10
    note = "" if duration >= 30 and nodes >= 10 else f" (this run: {nodes} nodes, {duration:g} s)"
    join = out.get("join") or {}
    t = join.get("client_port_to_full_state_s")
    return [
        {
            "budget": f">= {RATE_BUDGET:g} events/s across a 10-node office for 30 s, 0 lost{note}",
            "figure": None
            if not steps
            else f"highest sustained: {'none' if best is None else f'{best:g}'} events/s",
            "ok": ok,
        },
        {
            "budget": f"a new node has the full office state within {JOIN_BUDGET:g} s of joining",
            "figure": None
            if t is None
            else f"{t} s after its client port answered ({join['start_to_full_state_s']} s "
            "after its process started)",
            "ok": None if t is None else t <= JOIN_BUDGET,
        },
    ]


def render(result: dict) -> str:
    m, out, a = result["machine"], result["run"], result["settings"]
    lines = [
        f"## Throughput and scale: {a['nodes']} nodes on 127.0.0.1",
        "",
        f"- command: `{m['command']}`",
        f"- date: {m['date']}; machine: {m['cpu']}, {m['cpus']} CPUs, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}",
        f"- load average (1, 5, 15 min): {m['load_average']} at the start, "
        f"{result.get('load_average_end')} at the end",
    ]
    lines.append(
        "- every listening Antenna asks `members()` every 20 s: a node closes a client link "
        "silent for 90 s, and a listening Antenna sends nothing"
    )
    if "error" in out:
        lines.append(f"- ERROR: {out['error']}")
    for key in ("clients_node_error", "join_error"):
        if key in out:
            lines.append(f"- ERROR in the {key.removesuffix('_error')} phase: {out[key]}")
    lines += ["", "| figure | value |", "|---|---|"]
    st = out.get("start_together_s") or {}
    join = out.get("join") or {}
    cn = out.get("clients_node") or {}
    figures = [
        (
            f"start, {a['nodes']} nodes together: process start to client port answering",
            f"median {st.get('median')} s, max {st.get('max')} s" if st else "n/a",
        ),
        (
            "start, one node into a running office: process start to client port answering",
            f"{join.get('start_to_client_port_s')} s" if join else "n/a",
        ),
        (
            f"join: client port answering to the full office state "
            f"({(out.get('office_state') or {}).get('targets')} targets, "
            f"{(out.get('office_state') or {}).get('readings')} readings)",
            f"{join.get('client_port_to_full_state_s')} s "
            f"(from process start: {join.get('start_to_full_state_s')} s)"
            if join
            else "n/a",
        ),
        (
            f"PSS of a node with {cn.get('peer_links')} peer links and {cn.get('clients')} "
            f"clients ({cn.get('processes')} processes)",
            f"{cn.get('pss_mib')} MiB" if cn else "n/a",
        ),
        (
            "CPU of that node, idle (% of one core, 10 s)",
            f"{cn.get('idle_cpu_percent')} %" if cn else "n/a",
        ),
        (
            f"CPU of that node while the office carries {cn.get('load_rate')} events/s (10 s)",
            f"{cn.get('loaded_cpu_percent')} %" if cn else "n/a",
        ),
    ]
    for what, value in figures:
        lines.append(f"| {what} | {value} |")
    steps = out.get("steps") or []
    if steps:
        lines += [
            "",
            f"Throughput steps ({a['duration']:g} s each, published round-robin from every "
            f"node; lost = pairs missing {a['drain']:g} s after the last publish):",
            "",
            "| events/s asked | achieved | published | lost pairs | time-to-all p50 / p99 / max"
            " ms | node CPU mean / max % | benchmark CPU % | sustained |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in steps:
            t = s["time_to_all_ms"]
            lines.append(
                f"| {s['rate_asked']:g} | {s['rate_achieved']} | {s['events']} | "
                f"{s['lost_pairs']} | {t['p50']} / {t['p99']} / {t['max']} | "
                f"{s['node_cpu_percent_mean']} / {s['node_cpu_percent_max']} | "
                f"{s['benchmark_cpu_percent']} | {'yes' if s['sustained'] else 'NO'} |"
            )
        last = steps[-1]
        lines += [
            "",
            f"Last step in detail: peer messages per event {last['peer_messages_per_event']}; "
            f"office CPU by actor (% of one core, summed over nodes) "
            f"{last['office_cpu_percent_by_role']}; publish errors {last['publish_errors']} "
            f"{last['publish_error_sample']}; publishers at most "
            f"{last['publish_late_s_max']} s behind schedule",
        ]
    if cn:
        lines += [
            "",
            f"The {cn.get('clients')}-client node by actor: PSS (MiB) {cn.get('pss_mib_by_role')}; "
            f"idle CPU (%) {cn.get('idle_cpu_percent_by_role')}; loaded CPU (%) "
            f"{cn.get('loaded_cpu_percent_by_role')}",
        ]
    lines += budget_lines(result["budgets"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="throughput.py", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10, help="office size (default 10)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per rate step (30)")
    p.add_argument(
        "--rates",
        default="100,200,300,400,600,800",
        help="events/s to try in turn, comma-separated (default 100,200,300,400,600,800)",
    )
    p.add_argument("--drain", type=float, default=10.0, help="seconds after the last publish")
    p.add_argument("--targets", type=int, default=20, help="targets in the office state (20)")
    p.add_argument("--clients", type=int, default=10, help="clients on one node (10)")
    p.add_argument("--load-rate", type=float, default=50.0, help="events/s of the loaded CPU")
    p.add_argument(
        "--key", action="store_true", help="run the office with a cluster key (sealed links)"
    )
    p.add_argument("--json", metavar="FILE", help="also write everything as JSON there")
    args = p.parse_args(argv)
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        p.error("--rates takes numbers separated by commas")
    if not args.rates or min(args.rates) <= 0:
        p.error("--rates must be positive")
    if args.nodes < 2:
        p.error("--nodes must be at least 2")
    if args.duration <= 0 or args.drain < 0 or args.targets < 0 or args.clients < 1:
        p.error("--duration, --clients must be positive; --drain, --targets not negative")
    if args.load_rate <= 0:
        p.error("--load-rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {k: getattr(args, k) for k in ("nodes", "duration", "rates", "drain", "targets")}
    settings.update(clients=args.clients, load_rate=args.load_rate, key=args.key)
    result: dict = {"machine": machine(), "settings": settings, "run": {}}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        try:
            run(args, Path(tmp), result["run"])
        except Exception as exc:  # noqa: BLE001 - reported with what was measured
            result["run"]["error"] = f"{type(exc).__name__}: {exc}"
            say(f"error: {result['run']['error']}\n{traceback.format_exc()}")
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["budgets"] = budgets(result["run"], args.nodes, args.duration)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    left = result["run"].get("processes_left")
    if left:
        print(f"processes left behind: {left}", file=sys.stderr)
    return 1 if left or "error" in result["run"] else 0


if __name__ == "__main__":
    run_script(main, "throughput.py")
