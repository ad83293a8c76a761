"""``satellite topology``: what runs where, and who is linked to whom.

For one node, or with ``--cluster`` for every node reachable by walking the office, it
collects each node's supervision tree (every actor's role, supervisor strategy or
restart type, pid, restarts, uptime, PSS and message count) and its overlay links
(HyParView's active and passive views, Plumtree's eager and lazy peers), then draws
them as text, JSON, Graphviz DOT or a Mermaid flowchart.

Collecting and drawing are separate, pure functions, so that the dashboard or a test
can draw a dict it made itself::

    data = collect(factory, "127.0.0.1:8000", cluster=True)   # factory(host, port, timeout)
    print(render_text(data)); render_json(data); render_dot(data); render_mermaid(data)

JSON schema (version 1)
-----------------------
``satellite topology --format json`` prints one object. Keys are never removed or
renamed within a version; new keys may be added, so readers must ignore unknown ones.
A value that a node did not report is ``null``.

.. code-block:: text

    {
      "version": 1,
      "cluster": false,                 # true with --cluster
      "asked": "127.0.0.1:8000",        # the --node address the walk started from
      "at": 1716900000000,              # when it was collected, unix ms
      "nodes": [                        # by node id (n2 before n10); peer-named ones last
        {
          "node": "pi-kitchen",         # node id (a peer address when the id is unknown)
          "peer": "192.168.1.21:7000",  # peer address: what HyParView views contain
          "client": "127.0.0.1:8000",   # client address (the Antenna's), or null
          "reachable": true,            # false: "error" says why, and the rest is null
          "error": "...",               # only when reachable is false
          "incarnation": 3,
          "active_view": ["192.168.1.22:7000"],   # peer addresses, as the node reports
          "passive_view": [],
          "eager_peers": ["192.168.1.22:7000"],
          "lazy_peers": [],
          "tree": {                     # the root supervisor, node_sup; actors nest in
            "id": "node_sup",           # the role (simple_one_for_one workers: role-N)
            "type": "supervisor",       # or "worker"
            "strategy": "rest_for_one", # supervisors only, else null
            "restart": null,            # permanent | transient | temporary (null: root)
            "state": "running",         # as the supervisor sees it (null: root)
            "restarts": 0,              # restarts of this child since its supervisor began
            "pid": 4242,
            "uptime": 3600.5,           # seconds since this incarnation started (null: root)
            "pss": 7340032,             # proportional set size in bytes (null: unknown)
            "messages": 120,            # messages handled; null if it did not answer in time
            "children": [ ...actors, same keys... ]
          }
        }
      ],
      "links": [                        # overlay links between nodes, one per pair
        {
          "from": "pi-kitchen",         # node ids (a peer address when the id is unknown)
          "to": "pi-lobby",
          "kind": "active",             # active: in either side's active view, else passive
          "eager": true,                # either side has the other among Plumtree's eager peers
          "symmetric": true             # both sides hold it (in the same kind of view);
        }                               # null when only one side was asked. When not
      ]                                 # true, "from" is the side that holds the link.
    }

Without ``--cluster`` only the asked node is in ``nodes``; its links still name the
other ends. With ``--cluster`` every node in any reached node's directory (the office
state's ``nodes`` space) or in any reached node's views is listed, reachable or not.
"""

from __future__ import annotations

import argparse
import copy
import math
import queue
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
FORMATS = ("text", "json", "dot", "mermaid")
RENDERED = (".svg", ".png", ".pdf")  # --output suffixes drawn by Graphviz's `dot`
BY_SUFFIX = {".json": "json", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}
NODE_TIMEOUT = 1.5  # seconds for each node other than the first, all of them in parallel
ACTOR_KEYS = (
    "id",
    "type",
    "strategy",
    "restart",
    "state",
    "restarts",
    "pid",
    "uptime",
    "pss",
    "messages",
)

AntennaFactory = Callable[[str, int, float], Any]  # (host, port, timeout) -> an Antenna


# --- collecting ---------------------------------------------------------------------------------


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def natural(text: Any) -> list:
    """Sort key: ``n2`` before ``n10``. re.split with a group alternates str and digits,
    so two keys always compare str with str and int with int."""
    parts = re.split(r"(\d+)", str(text))
    return [int(p) if i % 2 else p for i, p in enumerate(parts)]


def _client_address(entry: Mapping, peer_host: str | None) -> str | None:
    """Where to reach a node's client port from here: its advertised client address, with
    an unspecified host (0.0.0.0, ::) replaced by its peer host, which others do reach."""
    client = entry.get("client")
    if not isinstance(client, str) or ":" not in client:
        return None
    host, port = _split(client)
    if host in ("0.0.0.0", "::", "") and peer_host:
        return _join(peer_host, port)
    return client


def _actor(row: Any) -> dict:
    """One row of the tree with exactly the documented keys (missing ones None)."""
    row = row if isinstance(row, Mapping) else {}
    out = {key: row.get(key) for key in ACTOR_KEYS}
    out["children"] = [_actor(child) for child in row.get("children") or []]
    return out


def _directory(antenna: Any) -> dict:
    """The office's directory as this node has it: node id -> {peer, client, ...}."""
    try:
        nodes = antenna.state().get("nodes") or {}
    except Exception:  # noqa: BLE001 - State restarting: the tree is still worth showing
        return {}
    return {str(k): dict(v) for k, v in nodes.items() if isinstance(v, Mapping)}


def _ask(factory: AntennaFactory, address: str, timeout: float) -> dict:
    """A node other than the first: its topology and directory, the whole exchange within
    ``timeout`` (each request gets what is left of it, not ``timeout`` again)."""
    host, port = _split(address)
    deadline = time.monotonic() + timeout
    antenna = factory(host, port, timeout)

    def left() -> float:
        return max(0.05, deadline - time.monotonic())

    try:
        antenna.connect()
        antenna.timeout = left()
        topology = antenna.topology()
        antenna.timeout = left()
        return {"welcome": antenna.node, "topology": topology, "directory": _directory(antenna)}
    finally:
        antenna.close()


def _node_entry(node_id: str, peer: str | None, client: str | None) -> dict:
    return {
        "node": node_id,
        "peer": peer,
        "client": client,
        "reachable": False,
        "incarnation": None,
        "active_view": None,
        "passive_view": None,
        "eager_peers": None,
        "lazy_peers": None,
        "tree": None,
    }


def _reached(entry: dict, topology: Mapping) -> None:
    hv = topology.get("hyparview") or {}
    pt = topology.get("plumtree") or {}
    entry.update(
        reachable=True,
        peer=hv.get("peer") or entry["peer"],
        incarnation=hv.get("incarnation"),
        active_view=list(hv.get("active_view") or []),
        passive_view=list(hv.get("passive_view") or []),
        eager_peers=list(pt.get("eager_peers") or []),
        lazy_peers=list(pt.get("lazy_peers") or []),
        tree=_actor(topology.get("tree")) if topology.get("tree") is not None else None,
    )
    entry.pop("error", None)


def _unreachable(entry: dict, error: str) -> None:
    entry["reachable"] = False
    entry["error"] = " ".join(str(error).split()) or "unreachable"


def collect(
    antenna_factory: AntennaFactory,
    start: str | tuple[str, int],
    cluster: bool = False,
    timeout: float = NODE_TIMEOUT,
) -> dict:
    """The topology of the node at ``start`` (its client address), or with ``cluster`` of
    every node reachable from it, as the documented JSON-ready dict.

    ``antenna_factory(host, port, timeout)`` returns an Antenna (connected or not); each is
    closed after use. The first node failing raises its AntennaError; every other node is
    asked in a thread of its own with ``timeout`` seconds for the whole exchange, and one
    that fails or is late is listed as unreachable: the walk never waits for it longer."""
    asked = _join(*start) if isinstance(start, tuple) else start
    walk = _Walk(antenna_factory, timeout)
    antenna = antenna_factory(*_split(asked), timeout)
    try:
        antenna.connect()  # raises: without the first node there is nothing to show
        first_id = str(antenna.node or asked)
        walk.entries[first_id] = _node_entry(first_id, None, asked)  # the address that worked
        if cluster:
            # Its directory first, so that the other nodes are asked while it answers
            # for its own tree: the walk costs one round trip less.
            walk.launch(walk.learn(_directory(antenna)))
            topology = antenna.topology()
        else:
            topology = antenna.topology()
            walk.learn(_directory(antenna))  # only to name the other ends of its links
    finally:
        antenna.close()
    said = topology.get("node")
    if antenna.node is None and said is not None:  # an antenna without a Welcome's id
        entry = walk.entries.pop(first_id)
        first_id = entry["node"] = str(said)
        walk.entries[first_id] = entry
    _reached(walk.entries[first_id], topology)

    if cluster:
        walk.finish()
        _add_view_only_peers(walk.entries, walk.directory)

    links = _links(walk.entries, walk.directory)
    # Nodes named by their peer address (no id known) after the others.
    nodes = sorted(
        walk.entries.values(), key=lambda e: (e["node"] == e["peer"], natural(e["node"]))
    )
    return {
        "version": SCHEMA_VERSION,
        "cluster": cluster,
        "asked": asked,
        "at": int(time.time() * 1000),
        "nodes": nodes,
        "links": links,
    }


class _Walk:
    """Ask every node of the directory in parallel, and every node their directories name
    that was not known yet, until no new one turns up. Daemon threads and a deadline per
    node: a node that hangs costs ``timeout``, and its thread is left behind, not waited."""

    def __init__(self, factory: AntennaFactory, timeout: float) -> None:
        self.factory, self.timeout = factory, timeout
        self.entries: dict[str, dict] = {}  # node id -> its entry in "nodes"
        self.directory: dict[str, dict] = {}  # node id -> {peer, client, ...}, merged
        self.answers: queue.Queue[tuple[str, dict | None, str | None]] = queue.Queue()
        self.deadlines: dict[str, float] = {}  # node id -> when we give up on it

    def learn(self, directory: Mapping[str, Mapping]) -> list[str]:
        """Merge a node's directory; returns the ids not seen before."""
        new = []
        for node_id, info in directory.items():
            if node_id not in self.directory:
                self.directory[node_id] = dict(info)
                new.append(node_id)
        return new

    def _ask(self, node_id: str, address: str) -> None:
        try:
            answer = _ask(self.factory, address, self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure only marks the node
            self.answers.put((node_id, None, str(exc) or type(exc).__name__))
            return
        self.answers.put((node_id, answer, None))

    def launch(self, ids: Iterable[str]) -> None:
        for node_id in ids:
            if node_id in self.entries:
                continue
            info = self.directory[node_id]
            peer = info.get("peer") if isinstance(info.get("peer"), str) else None
            client = _client_address(info, _split(peer)[0] if peer else None)
            entry = self.entries[node_id] = _node_entry(node_id, peer, client)
            if client is None:
                _unreachable(entry, "no client address in the office's directory")
                continue
            self.deadlines[node_id] = time.monotonic() + self.timeout
            threading.Thread(target=self._ask, args=(node_id, client), daemon=True).start()

    def finish(self) -> None:
        while self.deadlines:
            wait = min(self.deadlines.values()) - time.monotonic()
            try:
                node_id, answer, error = self.answers.get(timeout=max(0.0, wait))
            except queue.Empty:
                now = time.monotonic()
                for late in [n for n, d in self.deadlines.items() if d <= now]:
                    del self.deadlines[late]
                    _unreachable(self.entries[late], f"no answer within {self.timeout:g} s")
                continue
            if self.deadlines.pop(node_id, None) is None:
                continue  # already given up on
            entry = self.entries[node_id]
            if answer is None:
                _unreachable(entry, (error or "unreachable") + _loopback_hint(entry))
                continue
            said = answer["topology"].get("node") or answer["welcome"]
            if said is not None and str(said) != node_id:
                # A client address bound to 127.0.0.1 on another machine reaches whatever
                # listens on that port here: never show another node's tree under this id.
                message = f"{entry['client']} answered as node {said!r}"
                _unreachable(entry, message + _loopback_hint(entry))
                continue
            _reached(entry, answer["topology"])
            self.launch(self.learn(answer["directory"]))


def _loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _loopback_hint(entry: Mapping) -> str:
    """Why a node on another machine cannot be asked: run_node.py's client port listens
    on 127.0.0.1 unless told otherwise."""
    client, peer = entry.get("client"), entry.get("peer")
    if not client or not peer or _loopback(_split(peer)[0]) or not _loopback(_split(client)[0]):
        return ""
    port = _split(client)[1]
    return (
        f" (its client port listens on its own loopback only: to ask it from other"
        f" machines, start it with --client 0.0.0.0:{port} and the cluster key)"
    )


def _add_view_only_peers(entries: dict[str, dict], directory: dict[str, dict]) -> None:
    """Peers in some view but in no directory (not yet announced, or long gone): listed,
    since a link names them, with no way to ask them."""
    known = {e["peer"] for e in entries.values() if e["peer"]}
    for entry in list(entries.values()):
        for peer in _views(entry):
            if peer not in known:
                known.add(peer)
                entries[peer] = _node_entry(peer, peer, None)
                _unreachable(entries[peer], "not in the office's directory: no client address")


def _views(entry: Mapping) -> list[str]:
    return [
        p for key in ("active_view", "passive_view") for p in entry.get(key) or [] if p is not None
    ]


def _links(entries: dict[str, dict], directory: dict[str, dict]) -> list[dict]:
    """One link per pair of nodes, from the views of the nodes that were reached."""
    name: dict[str, str] = {}  # peer address -> node id
    for node_id, info in directory.items():
        if isinstance(info.get("peer"), str):
            name.setdefault(info["peer"], node_id)
    for entry in entries.values():  # what a node says of itself beats the directory
        if entry["reachable"] and entry["peer"]:
            name[entry["peer"]] = entry["node"]

    def holds(node_id: str, other: str, key: str) -> bool | None:
        entry = entries.get(node_id)
        if entry is None or not entry["reachable"]:
            return None  # not asked: we do not know
        return any(name.get(p, p) == other for p in entry.get(key) or [])

    pairs: dict[frozenset, None] = {}
    for entry in entries.values():
        if entry["reachable"]:
            for peer in _views(entry):
                other = name.get(peer, peer)
                if other != entry["node"]:
                    pairs[frozenset((entry["node"], other))] = None

    links = []
    for pair in pairs:
        a, b = sorted(pair, key=natural)
        active = (holds(a, b, "active_view"), holds(b, a, "active_view"))
        kind = "active" if any(active) else "passive"
        sides = (
            active
            if kind == "active"
            else (
                holds(a, b, "passive_view"),
                holds(b, a, "passive_view"),
            )
        )
        symmetric = None if None in sides else bool(sides[0] and sides[1])
        if not sides[0] and sides[1]:
            a, b = b, a  # not known to be mutual: "from" is the side that holds it
        eager = bool(holds(a, b, "eager_peers") or holds(b, a, "eager_peers"))
        links.append({"from": a, "to": b, "kind": kind, "eager": eager, "symmetric": symmetric})
    links.sort(key=lambda link: (natural(link["from"]), natural(link["to"])))
    return links


# --- text ---------------------------------------------------------------------------------------


def _duration(seconds: Any) -> str:
    """Compact, at most 6 characters: 42s, 5m03s, 2h05m, 3d04h."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _mib(pss: Any) -> str:
    if not isinstance(pss, int | float) or isinstance(pss, bool):
        return "-"
    return f"{pss / 1048576:.1f}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _columns(headers: tuple, rows: list[tuple], right: set[int], indent: str = "") -> list[str]:
    """Aligned columns, two spaces apart; the columns in ``right`` are numbers."""
    cells = [tuple(headers)] + [tuple(_cell(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def _tree_rows(actor: Mapping, ascii_only: bool) -> list[tuple]:
    tee, last, pipe, gap = (
        ("|- ", "`- ", "|  ", "   ") if ascii_only else ("├─ ", "└─ ", "│  ", "   ")
    )
    rows: list[tuple] = []

    def walk(node: Mapping, prefix: str, branch: str) -> None:
        role = f"{prefix}{branch}{node.get('id') or '?'}"
        if node.get("state") not in (None, "running"):
            role += f" [{node['state']}]"  # restarting, stopped: what a reader looks for
        kind = node.get("strategy") if node.get("type") == "supervisor" else node.get("restart")
        rows.append(
            (
                role,
                kind,
                node.get("pid"),
                node.get("restarts"),
                _duration(node.get("uptime")),
                _mib(node.get("pss")),
                node.get("messages"),
            )
        )
        children = list(node.get("children") or [])
        below = prefix + ("" if not branch else (gap if branch == last else pipe))
        for i, child in enumerate(children):
            walk(child, below, last if i == len(children) - 1 else tee)

    walk(actor, "", "")
    return rows


def _totals(actor: Mapping) -> tuple[int, int, int]:
    """(actors, PSS bytes, messages) over the whole tree."""
    count, pss, messages = 1, actor.get("pss") or 0, actor.get("messages") or 0
    for child in actor.get("children") or []:
        c, p, m = _totals(child)
        count, pss, messages = count + c, pss + p, messages + m
    return count, pss, messages


def _size(value: Any) -> Any:
    return None if value is None else len(value)


def render_text(data: Mapping, ascii_only: bool = False) -> str:
    """Each node's supervision tree (as ``pstree``), then the members and the links."""
    parts: list[str] = []
    for entry in data.get("nodes") or []:
        where = f"peer {_cell(entry.get('peer'))}  client {_cell(entry.get('client'))}"
        if not entry.get("reachable"):
            why = f"unreachable: {entry.get('error')}"
            parts.append(f"{entry.get('node')}  {where}")
            parts += textwrap.wrap(why, 100, initial_indent="  ", subsequent_indent="    ")
            parts.append("")
            continue
        parts.append(f"{entry.get('node')}  {where}  incarnation {_cell(entry.get('incarnation'))}")
        tree = entry.get("tree")
        if tree:
            headers = ("ROLE", "STRATEGY/RESTART", "PID", "RESTARTS", "UPTIME", "PSS MiB", "MSGS")
            rows = _tree_rows(tree, ascii_only)
            parts += _columns(headers, rows, right={2, 3, 4, 5, 6}, indent="  ")
            count, pss, messages = _totals(tree)
            parts.append(f"  {count} actors, {pss / 1048576:.1f} MiB PSS, {messages} messages")
        parts.append("")

    nodes = data.get("nodes") or []
    rows = [
        (
            e.get("node"),
            e.get("peer"),
            "ok" if e.get("reachable") else "unreachable",
            _size(e.get("active_view")),
            _size(e.get("passive_view")),
            _size(e.get("eager_peers")),
            _size(e.get("lazy_peers")),
        )
        for e in nodes
    ]
    parts.append("Members:")
    headers = ("NODE", "PEER", "STATUS", "ACTIVE", "PASSIVE", "EAGER", "LAZY")
    parts += _columns(headers, rows, right={3, 4, 5, 6}, indent="  ")

    links = data.get("links") or []
    parts += ["", "Links:"]
    if links:
        rows = [
            (
                link.get("from"),
                link.get("to"),
                link.get("kind"),
                "eager" if link.get("eager") else "lazy" if link.get("kind") == "active" else "-",
                {True: "both", False: "one-way", None: "?"}.get(link.get("symmetric"), "?"),
            )
            for link in links
        ]
        parts += _columns(("FROM", "TO", "KIND", "PLUMTREE", "HELD BY"), rows, set(), "  ")
    else:
        parts.append("  (none)")
    return "\n".join(parts)


# --- JSON ---------------------------------------------------------------------------------------


def render_json(data: Mapping) -> str:
    import json

    return json.dumps(data, indent=2, default=str)


# --- Graphviz -----------------------------------------------------------------------------------


def _dot_string(text: Any) -> str:
    """A DOT double-quoted string; newlines in ``text`` become centred line breaks."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _actor_label(actor: Mapping) -> str:
    kind = actor.get("strategy") if actor.get("type") == "supervisor" else actor.get("restart")
    lines = [str(actor.get("id") or "?")]
    if kind:
        lines.append(str(kind))
    facts = [f"pid {actor['pid']}"] if actor.get("pid") is not None else []
    if actor.get("pss") is not None:
        facts.append(f"{_mib(actor['pss'])} MiB")
    if facts:
        lines.append(", ".join(facts))
    stats = []
    if actor.get("restarts"):
        stats.append(f"{actor['restarts']} restarts")
    if actor.get("messages") is not None:
        stats.append(f"{actor['messages']} msgs")
    if stats:
        lines.append(", ".join(stats))
    if actor.get("state") not in (None, "running"):
        lines.append(f"[{actor['state']}]")
    return "\n".join(lines)


def _flatten(actor: Mapping, prefix: str) -> tuple[list[tuple[str, Mapping]], list[tuple]]:
    """(graph id, actor) for every actor, and (parent id, child id) for every edge; ids
    are positions, so any role name is safe."""
    actors: list[tuple[str, Mapping]] = []
    edges: list[tuple[str, str]] = []

    def walk(node: Mapping, parent: str | None) -> None:
        me = f"{prefix}_{len(actors)}"
        actors.append((me, node))
        if parent is not None:
            edges.append((parent, me))
        for child in node.get("children") or []:
            walk(child, me)

    walk(actor, None)
    return actors, edges


def _endpoints(data: Mapping) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Graph id for every node entry (``n0``, ``n1``...), and (graph id, label) of the
    nodes that links name but ``nodes`` does not list (single-node mode)."""
    ids = {str(e.get("node")): f"n{i}" for i, e in enumerate(data.get("nodes") or [])}
    extra = []
    for link in data.get("links") or []:
        for end in (link.get("from"), link.get("to")):
            if str(end) not in ids:
                ids[str(end)] = f"x{len(extra)}"
                extra.append((ids[str(end)], str(end)))
    return ids, extra


def render_dot(data: Mapping) -> str:
    """A Graphviz digraph: one ``cluster_<node>`` per node with its supervision tree, and
    the overlay between nodes (solid: active, dashed: passive, bold: eager; one-way links,
    held by one side only, red with an arrow)."""
    q = _dot_string
    lines = [
        "digraph satellite {",
        # Trees left to right: each node's cluster is a narrow column of its actors.
        '  graph [fontname="Helvetica", fontsize=11, rankdir=LR, newrank=true, nodesep=0.15];',
        '  node [fontname="Helvetica", fontsize=9, shape=box, style=rounded];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    ids, extra = _endpoints(data)
    placed: list[tuple[str, str]] = []  # (anchor, deepest actor) of each drawn cluster
    for entry in data.get("nodes") or []:
        node = str(entry.get("node"))
        me = ids[node]
        head = f"{node}\npeer {_cell(entry.get('peer'))}"
        if not entry.get("reachable"):
            why = textwrap.wrap(f"unreachable: {entry.get('error')}", 48)
            label = "\n".join([node if node == entry.get("peer") else head, *why])
            look = 'shape=box, style="dashed", color="#c0392b"'
            lines.append(f"  {q(me)} [{look}, label={q(label)}];")
            continue
        lines.append(f"  subgraph {q('cluster_' + node)} {{")
        lines.append(f"    label={q(node)};")
        lines.append('    style="rounded"; color="#7f8c8d";')
        anchor = f"{head}\nclient {_cell(entry.get('client'))}"
        look = 'shape=component, style="filled", fillcolor="#eaf2f8"'
        lines.append(f"    {q(me)} [{look}, label={q(anchor)}];")
        deepest = me
        if entry.get("tree"):
            actors, edges = _flatten(entry["tree"], me)
            # Reversed, nodes and edges: left to right, dot stacks a rank bottom-up.
            for gid, actor in reversed(actors):
                # Supervisors filled, workers plain: the tree's shape at a glance.
                look = 'style="rounded,filled", fillcolor="#fdebd0"'
                look = look if actor.get("type") == "supervisor" else 'style="rounded"'
                lines.append(f"    {q(gid)} [{look}, label={q(_actor_label(actor))}];")
            lines.append(f'    {q(me)} -> {q(actors[0][0])} [arrowhead=none, style="dotted"];')
            lines += [f"    {q(a)} -> {q(b)};" for a, b in reversed(edges)]
            depth = {actors[0][0]: 1}
            for parent, child in edges:  # depth-first order: parents come first
                depth[child] = depth[parent] + 1
            deepest = max(depth, key=depth.__getitem__)
        lines.append("  }")
        placed.append((me, deepest))
    # A grid of clusters rather than one long row: invisible edges put each cluster to
    # the right of the one before it in its row; the rows stack.
    columns = max(1, math.ceil(math.sqrt(len(placed))))
    for i in range(1, len(placed)):
        if i % columns:
            lines.append(f"  {q(placed[i - 1][1])} -> {q(placed[i][0])} [style=invis];")
    for gid, label in extra:
        lines.append(f'  {q(gid)} [shape=box, style="dashed", color="#7f8c8d", label={q(label)}];')
    for link in data.get("links") or []:
        a, b = ids[str(link.get("from"))], ids[str(link.get("to"))]
        style = (
            "dashed" if link.get("kind") == "passive" else "bold" if link.get("eager") else "solid"
        )
        # constraint=false: the overlay must not drag the clusters out of their grid.
        attrs = [f'style="{style}"', "constraint=false"]
        if link.get("symmetric") is False:
            attrs += ["dir=forward", 'color="#c0392b"', 'label="one-way"']
        else:
            attrs += ["dir=none", 'color="#2c3e50"']
        lines.append(f"  {q(a)} -> {q(b)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines)


# --- Mermaid ------------------------------------------------------------------------------------


def _mermaid_text(text: Any) -> str:
    """Text for a quoted Mermaid label: entity codes for what would end the string or be
    read as HTML ("#" first, as the codes themselves start with it); lines as <br/>."""
    out = str(text).replace("#", "#35;")
    for char, code in (
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
        ("&", "#amp;"),
        ("`", "#96;"),
    ):
        out = out.replace(char, code)
    return "<br/>".join(out.replace("\r", "").split("\n"))


def render_mermaid(data: Mapping) -> str:
    """A Mermaid ``flowchart`` (renders in GitHub and GitLab Markdown): a subgraph per node
    with its tree; between nodes ``---`` active, ``-.-`` passive, ``===`` eager."""
    m = _mermaid_text
    lines = ["flowchart TB"]
    ids, extra = _endpoints(data)
    unreachable = []
    for i, entry in enumerate(data.get("nodes") or []):
        node = str(entry.get("node"))
        me = ids[node]
        head = f"{node}\npeer {_cell(entry.get('peer'))}"
        if not entry.get("reachable"):
            lines.append(f'  {me}["{m(head)}<br/>unreachable"]')
            unreachable.append(me)
            continue
        lines.append(f'  subgraph s{i}["{m(node)}"]')
        lines.append("    direction TB")
        lines.append(f'    {me}{{{{"{m(head)}"}}}}')
        if entry.get("tree"):
            actors, edges = _flatten(entry["tree"], me)
            for gid, actor in actors:
                label = m(_actor_label(actor))
                shape = f'["{label}"]' if actor.get("type") == "supervisor" else f'("{label}")'
                lines.append(f"    {gid}{shape}")
            lines.append(f"    {me} -.-> {actors[0][0]}")
            lines += [f"    {a} --> {b}" for a, b in edges]
        lines.append("  end")
    for gid, label in extra:
        lines.append(f'  {gid}["{m(label)}"]')
    for link in data.get("links") or []:
        a, b = ids[str(link.get("from"))], ids[str(link.get("to"))]
        arrow = "-.-" if link.get("kind") == "passive" else "===" if link.get("eager") else "---"
        note = "|one-way|" if link.get("symmetric") is False else ""
        lines.append(f"  {a} {arrow}{note} {b}")
    if unreachable:
        lines.append("  classDef unreachable stroke:#c0392b,stroke-dasharray:5 5")
        lines.append(f"  class {','.join(unreachable)} unreachable")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Mapping], str]] = {
    "text": render_text,
    "json": render_json,
    "dot": render_dot,
    "mermaid": render_mermaid,
}


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``satellite topology``'s own options, and a --format that also offers dot|mermaid."""
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="every node reachable from --node, not only that one (each gets "
        f"{NODE_TIMEOUT:g} s, all at once; the ones that do not answer are listed as such)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE instead of stdout; .svg, .png and .pdf are drawn by Graphviz; "
        "without --format, .json, .dot/.gv and .mmd choose the format",
    )
    # The shared --format action (text|json) is one object in every subcommand's parser:
    # give this parser a copy of its own with more choices, never change the shared one.
    shared = parser._option_string_actions["--format"]
    mine = copy.copy(shared)
    mine.choices = FORMATS
    mine.default = None  # None: not given, so --output's suffix may choose
    mine.help = "output format (default: text, or by --output's suffix)"
    parser._actions[parser._actions.index(shared)] = mine
    for group in parser._action_groups:
        if shared in group._group_actions:
            group._group_actions[group._group_actions.index(shared)] = mine
    for option in shared.option_strings:
        parser._option_string_actions[option] = mine


def run(args: argparse.Namespace, antenna: Any) -> int:
    """The command: collect through the connected ``antenna``, draw, print or write."""
    from satellite.antenna import Antenna
    from satellite.cli import fail, out

    output = getattr(args, "output", None)
    suffix = Path(output).suffix.lower() if output else ""
    fmt = args.format or BY_SUFFIX.get(suffix, "text")
    if suffix in RENDERED and shutil.which("dot") is None:
        # Before asking anyone: the answer would be lost anyway.
        return fail(
            f"--output {output} needs Graphviz: sudo apt install graphviz "
            "(or write .dot and render it elsewhere)"
        )

    keyring = list(antenna.keyring)

    def factory(host: str, port: int, timeout: float) -> Any:
        if (host, port) == (antenna.host, antenna.port):
            return antenna  # the node the command already reached, with --timeout
        return Antenna(host, port, timeout=timeout, client="satellite-cli", key=keyring)

    per_node = min(NODE_TIMEOUT, args.timeout)
    data = collect(factory, (antenna.host, antenna.port), args.cluster, timeout=per_node)

    if suffix in RENDERED:
        try:
            drawn = subprocess.run(
                ["dot", f"-T{suffix[1:]}", "-o", output],
                input=render_dot(data),
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return fail(f"Graphviz could not draw {output}: {exc}")
        if drawn.returncode != 0:
            return fail(f"Graphviz could not draw {output}: {drawn.stderr.strip()}")
        return 0

    ascii_only = False
    if fmt == "text" and not output:
        try:  # a terminal that cannot show box-drawing characters gets ASCII branches
            "├└│".encode(sys.stdout.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            ascii_only = True
    text = render_text(data, ascii_only) if fmt == "text" else RENDERERS[fmt](data)
    if output:
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {output}: {exc.strerror or exc}")
    else:
        out(text)
    return 0
