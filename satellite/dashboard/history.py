"""The last hour of each node's temperature, kept by the dashboard from the snapshots."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

HOUR_MS = 3_600_000


class History:
    """Per node, (at, temperature) in order of ``at``, deduplicated by ``at`` (every
    snapshot repeats the latest reading of every node), for the last ``window_ms``."""

    def __init__(self, window_ms: int = HOUR_MS, points: int = 360) -> None:
        self.window_ms = window_ms
        self.points = points  # at most this many per node in ``series``: one per bucket
        self.by_node: dict[str, deque[tuple[int, float]]] = {}

    def add(self, readings: Mapping[str, Any], now_ms: int) -> None:
        for node, reading in (readings or {}).items():
            if not isinstance(reading, Mapping):
                continue
            at, temp = reading.get("at"), reading.get("temperature")
            if not isinstance(at, int | float) or not isinstance(temp, int | float):
                continue
            if at < now_ms - self.window_ms:
                continue
            line = self.by_node.setdefault(str(node), deque())
            if line and at <= line[-1][0]:
                continue  # seen already (or older than what we have)
            line.append((int(at), float(temp)))
        self.trim(now_ms)

    def trim(self, now_ms: int) -> None:
        for node in list(self.by_node):
            line = self.by_node[node]
            while line and line[0][0] < now_ms - self.window_ms:
                line.popleft()
            if not line:
                del self.by_node[node]

    def series(self, now_ms: int) -> dict[str, list[list[float]]]:
        """``{node: [[at, temperature], ...]}``; a node with more than ``points`` is
        thinned to the last point of each of ``points`` time buckets: a fast sensor must
        not make every snapshot huge."""
        self.trim(now_ms)
        bucket = max(1, self.window_ms // self.points)
        out: dict[str, list[list[float]]] = {}
        for node, line in sorted(self.by_node.items()):
            if len(line) <= self.points:
                out[node] = [[at, temp] for at, temp in line]
                continue
            kept: dict[int, tuple[int, float]] = {}
            for at, temp in line:
                kept[at // bucket] = (at, temp)
            out[node] = [[at, temp] for at, temp in kept.values()]
        return out
