"""What a node's hot code costs in a process that just woke up, against the same code warm.

    python bench/cold_start.py [--sleep-ms 50] [--rounds 60]

Each case runs ``--rounds`` times after a sleep of ``--sleep-ms`` (as a node's processes
sleep between the benchmark's events, 50 ms apart at 20/s), then as many times in a row;
the CPU time of the thread around each call (``time.thread_time``), median. On a machine
whose caches other tenants or processes reuse while we sleep, the first differs from the
second by far more than the work: that is what each process an event wakes pays (README,
"What got time-to-all").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols import link, plumtree, wire  # noqa: E402


def cases() -> dict[str, Callable[[], object]]:
    """A relayed broadcast's frame, and what a node does with it."""
    event = wire.encode(link.Event("bench", msgpack.packb({"id": 1, "temp": 23.5}), "a:1"))
    gossip = plumtree.Gossip(os.urandom(16), 1, event, "127.0.0.1:10160")
    frame = wire.encode(gossip)
    return {
        "a call that does nothing": lambda: None,
        "msgpack.unpackb of the frame": lambda: msgpack.unpackb(frame[4:]),
        "decode, unchecked (Gossip's pipe)": lambda: wire.decode_piped(bytearray(frame)),
        "decode, checked": lambda: wire.decode(frame[4:]),
        "frame_tag (the peer worker)": lambda: wire.frame_tag(frame),
        "encode": lambda: wire.encode(gossip),
    }


def measure(fn: Callable[[], object], sleep_s: float, rounds: int) -> tuple[float, float]:
    """Median microseconds of thread CPU for one call: after a sleep, and warm."""
    cold, warm = [], []
    for _ in range(rounds):
        time.sleep(sleep_s)
        start = time.thread_time()
        fn()
        cold.append(time.thread_time() - start)
    fn()
    for _ in range(rounds):
        start = time.thread_time()
        fn()
        warm.append(time.thread_time() - start)
    return statistics.median(cold) * 1e6, statistics.median(warm) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sleep-ms", type=float, default=50.0, help="sleep before each cold call")
    p.add_argument("--rounds", type=int, default=60, help="calls of each kind per case")
    args = p.parse_args(argv)
    if args.sleep_ms < 0 or args.rounds < 1:
        p.error("--sleep-ms must be >= 0 and --rounds >= 1")
    print(f"Python {sys.version.split()[0]}, {args.rounds} calls each, median thread CPU")
    print()
    print(f"| | after {args.sleep_ms:g} ms asleep | warm | ratio |")
    print("|---|---|---|---|")
    for name, fn in cases().items():
        cold, warm = measure(fn, args.sleep_ms / 1000.0, args.rounds)
        print(f"| {name} | {cold:.1f} us | {warm:.1f} us | {cold / warm:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
