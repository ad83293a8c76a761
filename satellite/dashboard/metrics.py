"""``antenna.metrics()`` and ``antenna.members()`` as Prometheus' text format (0.0.4).

Naming as Prometheus asks: snake_case, a ``satellite_`` prefix, ``_total`` on counters,
a HELP and a TYPE line for every family. A dozen lines of text format need no library;
the tests parse the output with prometheus_client's own parser."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("self", "alive", "known")  # always all three, so a series never vanishes


def metric_name(name: str) -> str:
    """Any name the node reports -> a valid snake_case Prometheus name part."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(name)).lower()
    snake = re.sub(r"[^a-z0-9_]+", "_", snake).strip("_")
    return snake or "unnamed"


def _value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return None  # not a number: left out rather than guessed


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(lines: list[str], name: str, kind: str, help_text: str, samples: list) -> None:
    samples = [(labels, text) for labels, text in samples if text is not None]
    if not samples:
        return
    lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2)}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, text in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {text}" if inner else f"{name} {text}")


def render(metrics: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> str:
    """The exposition text for one node: its counters, gauges, supervisor restarts, and
    the members it knows by status."""
    lines: list[str] = []
    node = metrics.get("node")
    if node:
        _family(
            lines,
            "satellite_node_info",
            "gauge",
            "The node this dashboard serves.",
            [({"node": node}, "1")],
        )
    by_status = dict.fromkeys(STATUSES, 0)
    for member in members:
        status = str(member.get("status", "known"))
        by_status[status] = by_status.get(status, 0) + 1
    _family(
        lines,
        "satellite_members",
        "gauge",
        "Members this node knows, by status (self, alive: in the active view, known).",
        [({"status": s}, str(n)) for s, n in sorted(by_status.items())],
    )
    for raw, value in sorted((metrics.get("counters") or {}).items()):
        base = metric_name(raw)
        base = base[: -len("_total")] if base.endswith("_total") else base
        _family(
            lines,
            f"satellite_{base}_total",
            "counter",
            f"Satellite counter {raw}.",
            [({}, _value(value))],
        )
    for raw, value in sorted((metrics.get("gauges") or {}).items()):
        _family(
            lines,
            f"satellite_{metric_name(raw)}",
            "gauge",
            f"Satellite gauge {raw}.",
            [({}, _value(value))],
        )
    restarts: dict[str, Any] = {}
    for role, n in (metrics.get("restarts") or {}).items():
        # One series per kind of child: "peer_worker-7" (one per link, temporary, never
        # restarted) would otherwise make a new series for every connection.
        kind = re.sub(r"-\d+$", "", str(role))
        if _value(n) is not None:
            restarts[kind] = restarts.get(kind, 0) + n
    _family(
        lines,
        "satellite_supervisor_restarts_total",
        "counter",
        "Restarts of each supervised child since the node started, by role.",
        [({"role": role}, _value(n)) for role, n in sorted(restarts.items())],
    )
    return "\n".join(lines) + "\n"
