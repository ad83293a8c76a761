"""Times of issue 4's goals that work today, on real nodes on 127.0.0.1.

    python bench/state_figures.py [--read-interval 5]

1. 5 nodes with --sensor sim:20 ... sim:24: seconds from the start of the processes (and
   from every node answering on its client port) until every node's state() holds all 5
   readings and avg_temp == 22.0.
2. set("lights", ...) at one node: seconds until a client on each node has the event.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.cluster import Node, free_port_block, run_script, wait_for
from bench.node_figures import set_to_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="state_figures.py", description=__doc__.splitlines()[0])
    p.add_argument("--read-interval", type=float, default=5.0)
    args = p.parse_args(argv)
    out: dict = {"read_interval_s": args.read_interval}
    with tempfile.TemporaryDirectory() as tmp:
        base = free_port_block(5)
        nodes = [
            Node(
                f"sf{i}",
                base + i,
                Path(tmp) / f"sf{i}",
                [] if i == 0 else [f"127.0.0.1:{base}"],
                ("--sensor", f"sim:{20 + i}", "--read-interval", str(args.read_interval)),
            )
            for i in range(5)
        ]
        try:
            started = time.monotonic()
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_up()
            t0 = time.monotonic()
            out["start_to_all_answering_s"] = round(t0 - started, 2)

            def everywhere() -> bool:
                for node in nodes:
                    with node.antenna() as antenna:
                        state = antenna.state()
                    if len(state["readings"]) != 5 or state["avg_temp"] != 22.0:
                        return False
                return True

            wait_for(everywhere, 60, "avg_temp 22.0 everywhere", 0.05)
            out["up_to_avg_temp_everywhere_s"] = round(time.monotonic() - t0, 2)
            out["start_to_avg_temp_everywhere_s"] = round(time.monotonic() - started, 2)
            out["budget_s"] = 2 * args.read_interval + 1
            out["set_to_all_clients_s"] = round(set_to_all(nodes), 3)
        finally:
            for node in nodes:
                node.kill()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    run_script(main, "state_figures.py")
