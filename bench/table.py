"""Runs the simulator rows of the README's table and prints them as markdown.

Each row is one ``bench/simulate.py`` command (printed beside it), run for several
seeds; a cell shows the mean over seeds and, where they differ, the range.

    python bench/table.py [--seeds 1,2,3] [--big]
"""

from __future__ import annotations

import argparse
import sys

from bench import simulate

LOADED = ["--broadcasts", "200", "--cpu", "0.0012", "--cores", "2"]
ROWS = [
    # (nodes, scenario, broadcast, extra arguments)
    (100, "stable", "plumtree", []),
    (100, "stable", "flood", []),
    (1000, "stable", "plumtree", []),
    (1000, "stable", "flood", []),
    (1000, "multi-sender", "plumtree", []),
    (1000, "multi-sender", "flood", []),
    (1000, "mass-crash", "plumtree", ["--fail", "0.8"]),
    (1000, "mass-crash", "flood", ["--fail", "0.8"]),
    (1000, "churn", "plumtree", []),
    (1000, "partition", "plumtree", []),
    (1000, "stable", "plumtree", ["--loss", "0.05"]),
    # 30 nodes sharing two CPUs near what they can carry, as bench/compare.py's office
    (30, "load", "plumtree", [*LOADED]),
    (30, "load", "plumtree", [*LOADED, "--paper-prunes"]),
]
BIG = [(10000, "stable", "plumtree", ["--broadcasts", "20"])]
COLUMNS = (
    "reliability",
    "missed",
    "rmr",
    "ldh",
    "control_per_payload",
    "reliability_first",
    "heal_rounds",
    "during.reliability",  # churn and partition: while it happens (the rest is after)
    "grafts_per_broadcast",
    "prunes_per_broadcast",
    "time_to_all_p50_ms",  # with --cpu only (else the links' latencies alone)
    "wall_seconds",
)


def get(result: dict, column: str) -> object:
    for key in column.split("."):
        result = result.get(key) if isinstance(result, dict) else None
    return result


def cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if all(isinstance(v, bool) for v in values):
        return "yes" if all(values) else "NO"
    lo, hi = min(values), max(values)
    mean = sum(values) / len(values)
    return f"{mean:.4g}" if lo == hi else f"{mean:.4g} ({lo:.4g}-{hi:.4g})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="table.py", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--big", action="store_true", help="add the 10,000-node row (minutes)")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error("--seeds takes integers separated by commas")
    print("| command (add `--seed S`) | " + " | ".join(COLUMNS) + " | connected+symmetric |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for nodes, scenario, broadcast, extra in ROWS + (BIG if args.big else []):
        argv_row = ["--nodes", str(nodes), "--scenario", scenario, "--broadcast", broadcast]
        argv_row += extra if "--broadcasts" in extra else ["--broadcasts", "100", *extra]
        results = [simulate.run(simulate.parse_args([*argv_row, "--seed", str(s)])) for s in seeds]
        cells = [cell([get(r, c) for r in results]) for c in COLUMNS]
        whole = cell([bool(r["connected"] and r["symmetric"]) for r in results])
        command = "`python bench/simulate.py " + " ".join(argv_row) + " --json`"
        print(f"| {command} | " + " | ".join(cells) + f" | {whole} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
