"""How soon the two survivors of a 3-node office link again when the node that held
them together dies.

    python bench/overlay_repair.py [--rounds 5] [--json]

Each round starts a 3-node office on 127.0.0.1 (nodes 1 and 2 join through node 0) and
waits until every node is linked to both others. Then node 1 blocks node 2, as a
partition drill does (``satellite.Antenna.block``): their link breaks, each keeps the
other only among its lost peers, and the overlay is a star around node 0. Node 1
unblocks at once, node 0 is SIGKILLed, and the script times how long until nodes 1
and 2 have each other in their active views again. (So a star was left in CI on
2026-12-05, by a restart of node 1's connections; a block makes it every time.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import (  # noqa: E402
    Node,
    hyparview_of,
    overlay_report,
    run_script,
    running_cluster,
    views,
    wait_for,
)


def neighbours(node: Node) -> set[str]:
    with node.antenna() as antenna:
        return {m["addr"] for m in antenna.members() if m["status"] == "alive"}


def held_apart(centre: Node, a: Node, b: Node) -> bool:
    """Whether the overlay is a star around ``centre`` and ``a`` and ``b`` do not have
    each other in their passive views (only, if at all, among their lost peers)."""
    hv = hyparview_of([centre, a, b])
    return all(
        hv[x.peer]["active_view"] == [centre.peer] and y.peer not in hv[x.peer]["passive_view"]
        for x, y in ((a, b), (b, a))
    )


def one_round(tmp: Path, give_up: float) -> dict:
    with running_cluster(tmp, 3, "repair") as office:
        centre, a, b = office.nodes
        peers = {n.peer for n in office.nodes}

        def triangle() -> bool:
            return all(set(v) | {p} == peers for p, v in views(office.nodes).items())

        wait_for(triangle, 60, "every node linked to both others")
        with a.antenna() as antenna:
            antenna.block(b.peer)
        try:
            wait_for(lambda: held_apart(centre, a, b), 30, "a star around node 0")
        finally:
            with a.antenna() as antenna:
                antenna.block()
        hv = hyparview_of([a, b])
        lost = sum(y.peer in hv[x.peer]["failed"] for x, y in ((a, b), (b, a)))
        centre.kill()
        killed = time.monotonic()

        def linked() -> bool:
            # members(), which Membership answers itself: topology() waits for every
            # actor's figures, up to a second when a worker is closing.
            return b.peer in neighbours(a) and a.peer in neighbours(b)

        result = {"lost_peers": lost}
        try:
            wait_for(linked, give_up, "the survivors to link", step=0.02)
        except AssertionError:
            return {**result, "linked_s": None, "report": overlay_report([a, b])}
        return {**result, "linked_s": time.monotonic() - killed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="offices started, one after another")
    p.add_argument("--give-up", type=float, default=60.0, help="seconds to wait for the link")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.give_up <= 0:
        p.error("--rounds must be >= 1 and --give-up > 0")
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="overlay_repair-") as tmp:
            result = one_round(Path(tmp), args.give_up)
        rounds.append(result)
        if args.json:
            continue
        if result["linked_s"] is None:
            print(f"round {i + 1}: not linked within {args.give_up:g} s", flush=True)
            print(result["report"], flush=True)
        else:
            print(
                f"round {i + 1}: linked {result['linked_s']:.2f} s after the SIGKILL "
                f"({result['lost_peers']} of the two had the other among its lost peers)",
                flush=True,
            )
    timed = [r["linked_s"] for r in rounds if r["linked_s"] is not None]
    summary = {
        "rounds": len(rounds),
        "not_linked": len(rounds) - len(timed),
        "linked_s": sorted(round(t, 3) for t in timed),
        "linked_median_s": round(statistics.median(timed), 3) if timed else None,
        "reports": [r["report"] for r in rounds if "report" in r],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"linked after {summary['linked_s']} s (median {summary['linked_median_s']}); "
            f"not linked within {args.give_up:g} s: {summary['not_linked']} of {len(rounds)}"
        )
    return 1 if summary["not_linked"] else 0


if __name__ == "__main__":
    run_script(main, "overlay_repair.py")
