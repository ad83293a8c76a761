"""What one actor process costs before it does anything of ours (issue 8's memory budget).

    python bench/actor_floor.py [--actors 4] [--mortal] [--json FILE]

Starts an actor system as ``run_node.py`` does (the same modules imported first, the
same ``lean_actor_system``, the launcher's objects made immortal on Python 3.12 and
later unless ``--mortal``: actors/immortal.py), creates actors that do nothing but
answer, and reports each one's private memory (USS) at three moments: right after the
fork, when it handles its first message, and a second later after another. The
difference between the first two is Thespian's own start (its transport, its manager,
its signal handlers) touching pages the process shares with its parent: each page
written becomes a private copy. Also the memory the launcher's imports take (anonymous
pages, shared by every process of a node). A node's PSS is about the sum of its
processes' USS plus those shared pages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from thespian.actors import Actor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024.0  # smaps counts kB


def private_mib() -> float:
    """This process's USS from /proc (psutil's figure, without psutil in the actor)."""
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Dirty", "Private_Clean")):
                total += int(line.split()[1])
    return round(total / MIB, 2)


def anonymous_mib() -> float:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous"):
                return round(int(line.split()[1]) / MIB, 2)
    return 0.0


_AT_FORK: list[float] = []


def _remember_fork() -> None:
    _AT_FORK[:] = [private_mib()]


class Idle(Actor):
    """Answers ``"uss"`` with its pid and its private memory at fork and now."""

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's
        if msg == "uss":
            self.send(sender, (os.getpid(), _AT_FORK[0] if _AT_FORK else None, private_mib()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="actor_floor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--actors", type=int, default=4, help="how many idle actors (default 4)")
    p.add_argument("--admin-port", type=int, default=29931, help="Thespian's (default 29931)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON there")
    p.add_argument(
        "--mortal",
        action="store_true",
        help="leave the launcher's objects mortal (run_node.py makes them immortal on 3.12+)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.actors <= 64:
        print("actor_floor.py: error: --actors takes 1..64", file=sys.stderr)
        return 2

    before = anonymous_mib()
    import run_node

    run_node.loguru_without_asyncio()
    from thespian.actors import ActorSystem

    import actors.client  # noqa: F401 - what run_node.py has imported before its forks
    import actors.overlay  # noqa: F401
    import actors.state  # noqa: F401
    import supervisors.supervisor  # noqa: F401
    import supervisors.tree  # noqa: F401
    from actors.base import lean_actor_system
    from actors.immortal import immortalize, trim_free_memory

    lean_actor_system()
    immortal = 0 if args.mortal else immortalize()
    trim_free_memory()
    imports = round(anonymous_mib() - before, 2)
    os.register_at_fork(after_in_child=_remember_fork)

    system = ActorSystem(
        "multiprocTCPBase",
        {"Admin Port": args.admin_port},
        logDefs={"version": 1, "root": {"level": "CRITICAL", "handlers": []}},
    )
    rows = []
    try:
        addresses = [system.createActor(Idle) for _ in range(args.actors)]
        for address in addresses:
            pid, at_fork, first = system.ask(address, "uss", 10)
            rows.append({"pid": pid, "at_fork": at_fork, "first_message": first})
        import time

        time.sleep(1.0)
        for row, address in zip(rows, addresses, strict=True):
            row["after_1s"] = system.ask(address, "uss", 10)[2]
    finally:
        system.shutdown()

    out = {
        "python": sys.version.split()[0],
        "immortal_objects": immortal,
        "launcher_imports_anonymous_mib": imports,
        "actors": rows,
        "uss_mib_median": {
            k: statistics.median(r[k] for r in rows if r[k] is not None)
            for k in ("at_fork", "first_message", "after_1s")
        },
    }
    med = out["uss_mib_median"]
    print(
        f"Python {out['python']}, {immortal} objects made immortal: "
        f"an idle actor's private memory (USS, median of {len(rows)})"
    )
    print(f"  right after the fork      {med['at_fork']:.2f} MiB")
    print(f"  at its first message      {med['first_message']:.2f} MiB")
    print(f"  a second later            {med['after_1s']:.2f} MiB")
    print(f"the launcher's imports: {imports:.2f} MiB of anonymous memory, shared by a node")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
