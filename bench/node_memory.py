"""One node's memory, process by process (issue 8's memory budget).

    python bench/node_memory.py [--nodes 6] [--key-file FILE] [--sensing]
                                [--read-interval S] [--over SECONDS]
                                [--burst RATE [--bursts N]] [--connections N]
                                [--copies] [--json FILE]

Starts ``--nodes`` nodes on 127.0.0.1 (``--sensor none --network-scan none``, as
bench/compare.py runs them; with ``--sensing``, the simulated sensor and the ARP
scanner, as on a Pi), waits for a whole overlay, attaches one Antenna to the
first node (with 6 nodes and active views of 5, it then has 5 peer links and 1 client:
the budget's case), and prints each of that node's processes with its PSS and USS, and
the node's total PSS; with ``--over``, the node's total again every minute until then
(a node grows as the pages its processes share are rewritten), and at the end each
role's mean USS at the start and at the last reading, to tell which processes grew.
With ``--burst RATE``, RATE events a second go through the office for 30 s after the
first reading (``--bursts N`` times, 100 s apart): what they leave shows in the later
readings. With ``--connections N``, N client connections come and go one after another
(each asks for the members, as ``satellite members`` does), after 20 first: each
long-lived process's USS before and after, and what the node kept per connection, which
should be nothing (a node serves connections for months). Stops everything it started.

PSS splits a page among every process that maps it, on the whole machine: here the
pages of libpython and of the shared libraries are split among all the nodes of the
run, where on a Pi the one node holds them. Run as root, it also prints the node's
pages as if it ran alone (each physical page any of its processes maps, counted once
and whole, from /proc/PID/pagemap): the figure for a Pi, give or take the pages of
libc and libcrypto that a Pi's other programs share. With ``--copies`` (root), each of
the node's forked processes is also compared with the process that forked it, page by
page: a page it no longer shares is one either of them wrote to since the fork. How
many of its 8-byte words differ tells what was written: none (a reference count that
went up and came back down), 1-7 (a few reference counts or counters), or more (data).
Python 3.12's immortal objects are exempt from the first two. With ``--over``, again
at the last reading.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.cluster import Cluster, run_script, wait_for, wait_whole  # noqa: E402
from bench.compare import PAGE, alone_bytes, node_links, page_frames, role_of  # noqa: E402
from satellite import Antenna  # noqa: E402

MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="node_memory.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=6, help="nodes in the office (default 6)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON there")
    p.add_argument(
        "--key-file", metavar="FILE", help="run the nodes with this cluster key (satellite keygen)"
    )
    p.add_argument(
        "--sensing",
        action="store_true",
        help="with the simulated sensor and the ARP scanner, as a Pi runs (two processes more)",
    )
    p.add_argument(
        "--read-interval",
        type=float,
        metavar="S",
        help="with --sensing: seconds between readings (the node's default 5)",
    )
    p.add_argument(
        "--over",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the office running this long, the node's total again every minute",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="RATE",
        help="after the first reading, publish RATE events a second for 30 s through the "
        "node's Antenna (what a burst leaves behind shows in the --over readings)",
    )
    p.add_argument(
        "--bursts",
        type=int,
        default=1,
        metavar="N",
        help="with --burst: this many, 100 s apart (longer than Plumtree keeps ids)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=0,
        metavar="N",
        help="after the first reading, N client connections one after another: what the "
        "node's long-lived processes keep of them",
    )
    p.add_argument(
        "--copies",
        action="store_true",
        help="as root: each forked process's pages it no longer shares with its parent, "
        "by how much of each differs",
    )
    args = p.parse_args(argv)
    if not 1 <= args.bursts <= 100 or (args.bursts > 1 and not args.burst):
        print("node_memory.py: error: --bursts takes 1..100, with --burst", file=sys.stderr)
        return 2
    if not 0 <= args.burst <= 5000:
        print("node_memory.py: error: --burst takes 0..5000 events a second", file=sys.stderr)
        return 2
    if not 0 <= args.connections <= 100_000:
        print("node_memory.py: error: --connections takes 0..100000", file=sys.stderr)
        return 2
    if not 1 <= args.nodes <= 30:
        print("node_memory.py: error: --nodes takes 1..30", file=sys.stderr)
        return 2
    if not 0 <= args.over <= 86400:
        print("node_memory.py: error: --over takes 0..86400 seconds", file=sys.stderr)
        return 2
    if args.read_interval is not None and not (args.sensing and args.read_interval > 0):
        print(
            "node_memory.py: error: --read-interval takes seconds > 0, with --sensing",
            file=sys.stderr,
        )
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="satmem-"))
    flags: tuple[str, ...] = () if args.sensing else ("--sensor", "none", "--network-scan", "none")
    if args.read_interval is not None:
        flags += ("--read-interval", str(args.read_interval))
    if args.key_file:
        if not Path(args.key_file).is_file():
            print(f"node_memory.py: error: no key file {args.key_file}", file=sys.stderr)
            return 2
        flags += ("--key-file", str(Path(args.key_file).resolve()))
    cluster = Cluster(tmp, args.nodes, prefix="mem", extra=lambda i: flags)
    try:
        cluster.start()
        wait_whole(cluster.nodes, 30, "a whole overlay")
        node = cluster.nodes[0]
        with node.antenna() as antenna:
            antenna.members()
            time.sleep(2.0)  # the client's worker has started and settled
            rows = process_rows(node.pids())
            alone = alone_bytes([r["pid"] for r in rows])
            copies = fork_copies(rows) if args.copies else []
            links = node_links(node)
            for n in range(args.bursts if args.burst else 0):
                if n:
                    time.sleep(100.0)
                    antenna.members()  # a node closes a client link silent for 90 s
                burst(antenna, args.burst, 30.0)
            kept = connections(node, args.connections) if args.connections else None
            started = time.monotonic()
            later = []
            for mark in range(60, int(args.over) + 1, 60):
                while time.monotonic() - started < mark:
                    time.sleep(min(20.0, max(0.0, started + mark - time.monotonic())))
                    antenna.members()  # a node closes a client link silent for 90 s
                pids = sorted(node.pids())
                processes = process_rows(pids)  # each process's smaps read once
                later.append(
                    {
                        "after_s": mark,
                        "links": node_links(node),
                        "pss": sum(r["pss"] for r in processes),
                        "alone": alone_bytes(pids),
                        "processes": processes,
                        "copies": fork_copies(processes) if args.copies else [],
                    }
                )
                # As it goes (the summary comes at the end, hours later): to stderr.
                print(f"node_memory.py: {reading(later[-1])}", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(r["pss"] for r in rows)
    print(f"node {node.name}: {links} peer links, 1 client, {len(rows)} processes")
    for r in rows:
        print(f"  {r['role']:<28} PSS {r['pss'] / MIB:6.2f} MiB  USS {r['uss'] / MIB:6.2f} MiB")
    print(f"  {'total':<28} PSS {total / MIB:6.1f} MiB")
    if alone is not None:
        print(f"  {'alone (every page whole)':<28}     {alone / MIB:6.1f} MiB")
    else:
        print("  (as root, also the node's pages as if it ran alone, as on a Pi)")
    if args.copies and not copies:
        print("  (--copies reads other processes' page tables and memory: run it as root)")
    if copies:
        print_copies(copies, "")
    if kept is not None:
        print_connections(kept)
    for m in later:
        print(f"  {reading(m)}")
    if later:
        # Which processes grew: the same role's USS at the start and at the end (a
        # replaced link's worker is a new process, counted by role all the same).
        first, last = by_role(rows), by_role(later[-1]["processes"])
        print(f"  USS by role, at the start -> after {later[-1]['after_s']} s:")
        for role in sorted(set(first) | set(last)):
            a, b = first.get(role, (0, 0)), last.get(role, (0, 0))
            print(f"    {role:<26} {a[0]} x {a[1] / MIB:6.2f} -> {b[0]} x {b[1] / MIB:6.2f} MiB")
        if later[-1]["copies"]:
            print_copies(later[-1]["copies"], f" after {later[-1]['after_s']} s")
    if args.json:
        out = {"links": links, "processes": rows, "pss_mib": round(total / MIB, 2)}
        if copies:
            out["copies_pages"] = copies
        if kept is not None:
            out["connections"] = kept
        if alone is not None:
            out["alone_mib"] = round(alone / MIB, 2)
        out["later"] = [
            {
                "after_s": m["after_s"],
                "links": m["links"],
                "pss_mib": round(m["pss"] / MIB, 2),
                "alone_mib": None if m["alone"] is None else round(m["alone"] / MIB, 2),
                "processes": m["processes"],
                "copies_pages": m["copies"],
            }
            for m in later
        ]
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def reading(m: dict) -> str:
    """One ``--over`` reading in a line."""
    whole = "" if m["alone"] is None else f", alone {m['alone'] / MIB:.1f} MiB"
    pss = f"PSS {m['pss'] / MIB:.1f} MiB"
    return f"after {m['after_s']:>5} s: {m['links']} peer links, {pss}{whole}"


def burst(antenna: Antenna, rate: int, seconds: float) -> None:
    """Publish ``rate`` events a second for ``seconds``, paced to the clock."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        antenna.publish("burst", {"n": sent})
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))


def connections(node: Any, count: int, warm: int = 20) -> dict:
    """``count`` client connections to ``node``, one after another, after ``warm`` first
    (what a process allocates once, on its first connections, is not a leak): each
    long-lived process's USS before, half-way and after, each read once the
    connections' workers are gone. A leak grows in both halves alike; a node's own
    growth over its first minutes (README, Memory) mostly in the first."""

    def come_and_go(n: int) -> None:
        for _ in range(n):
            with node.antenna() as antenna:
                antenna.members()

    def settled(expected: int) -> dict[int, int]:
        # The connections' workers have ended (the node is back to the processes it had).
        wait_for(lambda: len(node.pids()) <= expected, 30, "the connections' workers to end")
        return {r["pid"]: r["uss"] for r in process_rows(node.pids())}

    expected = len(node.pids())
    come_and_go(warm)
    readings = [settled(expected)]
    t0 = time.monotonic()
    halves = (count // 2, count - count // 2)
    for half in halves:
        come_and_go(half)
        readings.append(settled(expected))
    seconds = time.monotonic() - t0
    pids = sorted(set.intersection(*(set(r) for r in readings)))
    rows = [{"pid": pid, "role": role_of(pid), "uss": [r[pid] for r in readings]} for pid in pids]
    kept = [
        sum(r["uss"][i + 1] - r["uss"][i] for r in rows) / max(1, n) for i, n in enumerate(halves)
    ]
    return {"count": count, "seconds": round(seconds, 2), "rows": rows, "per_connection": kept}


def print_connections(kept: dict) -> None:
    print(
        f"  {kept['count']} client connections in {kept['seconds']:.1f} s; USS of the processes"
        " that outlived them, before, half-way and after (KiB):"
    )
    for r in kept["rows"]:
        before, half, after = (u / 1024 for u in r["uss"])
        print(f"    {r['role']:<26} {before:9.0f} {half:9.0f} {after:9.0f}  {after - before:+8.0f}")
    first, second = (k / 1024 for k in kept["per_connection"])
    print(f"  kept per connection: {first:.2f} KiB in the first half, {second:.2f} in the second")


def process_rows(pids: list[int] | set[int]) -> list[dict]:
    """Each live process of ``pids``: its role, PSS and USS (bytes)."""
    rows = []
    for pid in sorted(pids):
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue  # ended since it was listed
        rows.append({"pid": pid, "role": role_of(pid), "pss": info.pss, "uss": info.uss})
    return rows


COPY_KINDS = ("none", "few", "more", "own")


def print_copies(copies: list[dict], when: str) -> None:
    print(f"  pages no longer shared with the parent{when}, by 8-byte words changed (MiB):")
    print(f"    {'':<26} {'all':>6} {'none':>6} {'1-7':>6} {'more':>6} {'own':>6}")
    for c in copies:
        cells = " ".join(f"{c[k] * PAGE / MIB:6.2f}" for k in ("all", *COPY_KINDS))
        print(f"    {c['role']:<26} {cells}")


def fork_copies(rows: list[dict]) -> list[dict]:
    """For each process of ``rows`` whose parent is among them: its pages that are no
    longer its parent's, counted by kind (``COPY_KINDS``; ``own``: the parent has no
    page there). Empty without root."""
    pids = {r["pid"] for r in rows}
    parents_frames: dict[int, dict[int, int]] = {}  # one read of each parent's page table
    out = []
    for r in rows:
        try:
            parent = psutil.Process(r["pid"]).ppid()
            if parent not in pids:
                continue
            if parent not in parents_frames:
                parents_frames[parent] = page_frames(parent)
            counts = copied_pages(r["pid"], parent, parents_frames[parent])
        except (PermissionError, psutil.AccessDenied):
            return []  # not root
        except (OSError, psutil.Error):
            continue  # it or its parent ended since they were listed
        if counts["all"]:
            out.append({"pid": r["pid"], "role": r["role"], **counts})
    return out


def copied_pages(child: int, parent: int, theirs: dict[int, int] | None = None) -> dict[str, int]:
    """How many of ``child``'s pages are no longer ``parent``'s, by kind (``page_copies``)."""
    counts = dict.fromkeys(("all", *COPY_KINDS), 0)
    for kind in page_copies(child, parent, theirs).values():
        counts["all"] += 1
        counts[kind] += 1
    return counts


def page_copies(child: int, parent: int, theirs: dict[int, int] | None = None) -> dict[int, str]:
    """Each page ``child`` maps to another frame than ``parent`` does at the same
    address: its address -> how many 8-byte words differ from the parent's copy now,
    ``none``, ``few`` (1-7 of 512) or ``more``; ``own`` where the parent has none.
    ``theirs``: the parent's ``page_frames``, when already read for a sibling."""
    if theirs is None:
        theirs = page_frames(parent)
    kinds: dict[int, str] = {}
    with (
        open(f"/proc/{child}/mem", "rb", 0) as mine_mem,
        open(f"/proc/{parent}/mem", "rb", 0) as theirs_mem,
    ):
        for address, frame in page_frames(child).items():
            other = theirs.get(address)
            if other == frame:
                continue
            if other is None:
                kinds[address] = "own"
                continue
            try:
                mine_mem.seek(address)
                a = mine_mem.read(PAGE)
                theirs_mem.seek(address)
                b = theirs_mem.read(PAGE)
            except OSError:  # not readable so (the vDSO's data)
                a = b = b""
            if len(a) != PAGE or len(b) != PAGE:
                kinds[address] = "more"
                continue
            changed = sum(
                1
                for x, y in zip(memoryview(a).cast("Q"), memoryview(b).cast("Q"), strict=True)
                if x != y
            )
            kinds[address] = "none" if changed == 0 else "few" if changed < 8 else "more"
    return kinds


def by_role(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """Role -> (how many processes, their mean USS in bytes)."""
    groups: dict[str, list[int]] = {}
    for r in rows:
        groups.setdefault(r["role"], []).append(r["uss"])
    return {role: (len(u), sum(u) / len(u)) for role, u in groups.items()}


if __name__ == "__main__":
    run_script(main, "node_memory.py")
