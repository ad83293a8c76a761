"""Times of issue 3's goals, on real nodes on 127.0.0.1 (timing lives here, not in tests).

    python bench/node_figures.py [--nodes 10] [--json]

1. N nodes started together, all joining through one seed: seconds until the active
   views (read through ``topology()``) are whole and symmetric, then until an event
   published at each node reached an Antenna on every node.
   Then ``set("lights", ...)`` at one node: seconds until a client on every node has it.
2. Three nodes SIGKILLed: seconds until the survivors' views are whole again, and until
   new events from every survivor reached every survivor.
3. On a node of the survivors, each actor role SIGKILLed in turn: seconds from the kill
   to the publication of the first event from that node that reached every survivor
   (fresh events are published every 50 ms; client Antennas reconnect as needed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from bench.cluster import Cluster, Node, find, run_script, tree_of, wait_for, wait_whole


def deliver(sources: list[Node], sinks: list[Node], timeout: float = 30.0) -> float:
    """Publish one event at each source; seconds until every sink's Antenna has them all
    (counted from the first attempt to connect those Antennas)."""
    got: dict[str, set] = {n.name: set() for n in sinks}
    antennas = []
    t0 = time.monotonic()
    for node in sinks:
        antenna = node.antenna()
        antenna.on("figure")(lambda p, who=node.name: got[who].add(p))
        wait_for(lambda a=antenna: a.start(), timeout, f"{node.name}'s client port", 0.02)
        antennas.append(antenna)
    try:
        tokens = set()
        for node in sources:
            token = f"{node.name}-{time.time_ns()}"
            tokens.add(token)
            while True:  # a node whose client side is restarting: try again
                try:
                    with node.antenna() as antenna:
                        antenna.publish("figure", token)
                    break
                except Exception:  # noqa: BLE001
                    if time.monotonic() - t0 > timeout:
                        raise
                    time.sleep(0.02)
        wait_for(lambda: all(tokens <= s for s in got.values()), timeout, "deliveries", 0.01)
        return time.monotonic() - t0
    finally:
        for antenna in antennas:
            antenna.stop()


def set_to_all(nodes: list[Node], timeout: float = 10.0) -> float:
    """``set("lights", ...)`` at one node: seconds until a client on every node has the
    event (counted from the call to ``set``)."""
    got: dict[str, list] = {n.name: [] for n in nodes}
    antennas = []
    for node in nodes:
        antenna = node.antenna()
        antenna.on("lights")(lambda p, who=node.name: got[who].append(p))
        antenna.start()
        antennas.append(antenna)
    try:
        value = f"on-{time.time_ns()}"
        t0 = time.monotonic()
        with nodes[0].antenna() as antenna:
            antenna.set("lights", value)
        wait_for(lambda: all(value in v for v in got.values()), timeout, "the event", 0.005)
        return time.monotonic() - t0
    finally:
        for antenna in antennas:
            antenna.stop()


def recovery(source: Node, sinks: list[Node], since: float, timeout: float = 30.0) -> float:
    """After a fault at ``since``: keep publishing fresh events at ``source`` (and keep
    the sinks' Antennas connected); seconds from the fault to the publication of the
    first event that then reached every sink."""
    got: dict[str, set] = {n.name: set() for n in sinks}
    antennas: dict[str, object] = {}
    published: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for node in sinks:
                antenna = antennas.get(node.name)
                if antenna is None or antenna._thread is None or not antenna._thread.is_alive():
                    antenna = node.antenna()
                    antenna.on("recover")(lambda p, who=node.name: got[who].add(p))
                    try:
                        antenna.start()
                        antennas[node.name] = antenna
                    except Exception:  # noqa: BLE001 - its client side is restarting
                        antennas.pop(node.name, None)
            if len(antennas) == len(sinks):
                token = f"{source.name}-{time.time_ns()}"
                try:
                    with source.antenna() as antenna:
                        antenna.publish("recover", token)
                    published.append((time.monotonic(), token))
                except Exception:  # noqa: BLE001
                    pass
            for at, token in published:
                if all(token in s for s in got.values()):
                    return at - since
            time.sleep(0.05)
        raise AssertionError("events did not flow again")
    finally:
        for antenna in antennas.values():
            antenna.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="node_figures.py", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.nodes < 5:
        p.error("--nodes must be at least 5")
    out: dict = {"nodes": args.nodes}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), args.nodes, prefix="fig")
        try:
            t0 = time.monotonic()
            for node in cluster.nodes:
                node.start()
            wait_whole(cluster.nodes, 60, "a whole overlay", 0.05)
            out["start_to_whole_overlay_s"] = round(time.monotonic() - t0, 2)
            out["events_to_all_s"] = round(deliver(cluster.nodes, cluster.nodes), 3)
            out["set_to_all_clients_s"] = round(set_to_all(cluster.nodes), 3)

            dead, alive = cluster.nodes[-3:], cluster.nodes[:-3]
            t0 = time.monotonic()
            for node in dead:
                node.kill()
            wait_whole(alive, 60, "survivors whole", 0.05)
            out["kill3_to_whole_overlay_s"] = round(time.monotonic() - t0, 2)
            out["kill3_events_to_all_s"] = round(deliver(alive, alive), 3)
            out["kill3_total_s"] = round(time.monotonic() - t0, 2)

            node = alive[1]
            roles = {}
            for child_id in ("gossip", "state"):
                row = find(tree_of(node), child_id)
                t0 = time.monotonic()
                os.kill(row["pid"], signal.SIGKILL)
                roles[child_id] = round(recovery(node, alive, t0), 3)
            workers = find(tree_of(node), "peer_workers")["children"]
            t0 = time.monotonic()
            os.kill(workers[0]["pid"], signal.SIGKILL)
            roles["a peer_worker"] = round(recovery(node, alive, t0), 3)
            out["actor_kill_to_events_flowing_s"] = roles
        finally:
            cluster.stop()
            left = cluster.leftovers()
            out["processes_left"] = sorted(left)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>32}  {value}")
    return 0 if not out["processes_left"] else 1


if __name__ == "__main__":
    run_script(main, "node_figures.py")
