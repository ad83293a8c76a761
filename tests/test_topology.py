"""``satellite topology``: collecting (against fake antennas, then real nodes) and drawing."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench.cluster import ROOT, Cluster, running_cluster, wait_for
from satellite import NodeUnreachable, topology
from satellite.cli import ENV_NODE
from satellite.topology import collect, render_dot, render_json, render_mermaid, render_text

CLI = [sys.executable, "-m", "satellite.cli"]
DOT = shutil.which("dot")
ROLES = ("membership", "gossip", "state", "listener")


# --- fake nodes ---------------------------------------------------------------------------------


def tree(node: str, messages: int | None = 5) -> dict:
    """A node_sup as a node reports it (with the keys the supervisor sends)."""

    def worker(role: str, pid: int, restart: str = "permanent") -> dict:
        return {
            "id": role,
            "handle": f"ActorAddr-{node}-{role}",
            "type": "worker",
            "restart": restart,
            "state": "running",
            "restarts": 0,
            "pid": pid,
            "uptime": 3725.2,
            "pss": 7 * 1048576,
            "children": [],
            "messages": messages,
        }

    peers = worker("peer_workers", 107)
    peers.update(type="supervisor", strategy="simple_one_for_one")
    peers["children"] = [worker("peer_worker-1", 120, "temporary")]
    restarting = worker("sensor", 108)
    restarting.update(state="restarting", restarts=2, pid=None, pss=None, messages=None)
    return {
        "id": "node_sup",
        "type": "supervisor",
        "strategy": "rest_for_one",
        "pid": 100,
        "pss": 6 * 1048576,
        "messages": 40,
        "children": [
            worker("membership", 101),
            worker("gossip", 102),
            worker("state", 103),
            restarting,
            peers,
            worker("listener", 104),
        ],
    }


class FakeNode:
    def __init__(
        self,
        node: str,
        active: list[str],
        passive: list[str] | None = None,
        eager: list[str] | None = None,
        directory: dict | None = None,
        hang: float = 0.0,
        refuse: bool = False,
    ) -> None:
        self.node, self.active, self.passive = node, active, passive or []
        self.eager = eager or []
        self.directory = directory or {}
        self.hang, self.refuse = hang, refuse

    def topology(self) -> dict:
        return {
            "node": self.node,
            "tree": tree(self.node),
            "hyparview": {
                "peer": peer(self.node),
                "incarnation": 1,
                "active_view": self.active,
                "passive_view": self.passive,
            },
            "plumtree": {
                "eager_peers": self.eager,
                "lazy_peers": [p for p in self.active if p not in self.eager],
            },
        }


def peer(node: str) -> str:
    return f"10.0.0.{ord(node[-1])}:7000"


def client(node: str) -> str:
    return f"10.0.0.{ord(node[-1])}:8000"


class FakeAntenna:
    def __init__(self, nodes: dict[str, FakeNode], host: str, port: int, timeout: float) -> None:
        self.fake = nodes.get(f"{host}:{port}")
        self.host, self.port, self.timeout = host, port, timeout
        self.node: str | None = None
        self.closed = False

    def connect(self) -> FakeAntenna:
        if self.fake is None or self.fake.refuse:
            raise NodeUnreachable(f"node {self.host}:{self.port} unreachable: refused")
        time.sleep(self.fake.hang)  # a node that accepts and then says nothing for long
        self.node = self.fake.node
        return self

    def topology(self) -> dict:
        assert self.fake is not None and not self.closed
        return self.fake.topology()

    def state(self) -> dict:
        assert self.fake is not None and not self.closed
        return {"targets": {}, "nodes": self.fake.directory}

    def close(self) -> None:
        self.closed = True


def entry(node: str, client_address: str | None = None) -> dict:
    return {"peer": peer(node), "client": client_address or client(node), "http": None, "at": 1}


def office() -> dict[str, FakeNode]:
    """a-b-c linked (b holds c, c does not hold b: one-way), d refuses, e is named only in
    b's directory, f hangs, g's client port is on loopback (so it reaches a, where the walk
    runs), and z is only in a passive view.
    b's directory entry says 0.0.0.0 for its client host."""
    directory = {n: entry(n) for n in "acdf"}
    directory["b"] = entry("b", "0.0.0.0:8000")  # listens on every address: ask its peer host
    directory["g"] = entry("g", "127.0.0.1:8000")  # the walk runs on a's machine: a answers
    a = FakeNode(
        "a",
        [peer("b"), peer("c")],
        passive=[peer("d"), peer("z")],
        eager=[peer("b")],
        directory=directory,
    )
    b = FakeNode(
        "b",
        [peer("a"), peer("c")],
        eager=[peer("a")],
        directory={**directory, "e": entry("e")},
    )
    c = FakeNode("c", [peer("a")], passive=[peer("b")], directory=directory)
    e = FakeNode("e", [], passive=[peer("a")], directory={})
    f = FakeNode("f", [], directory={}, hang=5.0)
    return {"127.0.0.1:8000": a} | {client(n.node): n for n in (a, b, c, e, f)}


def fake_collect(cluster: bool, start: str = client("a"), timeout: float = 0.5) -> dict:
    nodes = office()

    def factory(host: str, port: int, timeout: float) -> FakeAntenna:
        return FakeAntenna(nodes, host, port, timeout)

    return collect(factory, start, cluster=cluster, timeout=timeout)


def by_id(data: dict) -> dict[str, dict]:
    return {n["node"]: n for n in data["nodes"]}


def link(data: dict, x: str, y: str) -> dict:
    (found,) = [lk for lk in data["links"] if {lk["from"], lk["to"]} == {x, y}]
    return found


def roles(actor: dict) -> list[str]:
    return [actor["id"]] + [r for child in actor["children"] for r in roles(child)]


def pids(actor: dict) -> list[int]:
    """The pids of the actors that outlive a connection (not the temporary workers: the
    command's own ClientWorker is gone once the command has closed its connection)."""
    own = [actor["pid"]] if actor["pid"] is not None and actor["restart"] != "temporary" else []
    return own + [p for child in actor["children"] for p in pids(child)]


# --- collecting, against fake nodes -------------------------------------------------------------


def test_the_cluster_walk_reports_every_node_and_never_waits_for_a_hung_one() -> None:
    started = time.monotonic()
    data = fake_collect(cluster=True, timeout=0.5)
    took = time.monotonic() - started
    assert took < 2.0, "f hangs for 5 s: the walk gives up on it after 0.5 s"

    assert data["version"] == 1 and data["cluster"] is True and data["asked"] == client("a")
    nodes = by_id(data)
    assert list(nodes) == ["a", "b", "c", "d", "e", "f", "g", peer("z")]  # sorted
    assert {n for n, e in nodes.items() if e["reachable"]} == {"a", "b", "c", "e"}
    assert "refused" in nodes["d"]["error"]
    assert "0.5 s" in nodes["f"]["error"]
    assert "answered as node 'a'" in nodes["g"]["error"]  # never a's tree under g's name
    assert "--client 0.0.0.0:8000" in nodes["g"]["error"]  # and how to make g reachable
    assert "directory" in nodes[peer("z")]["error"]
    assert nodes["e"]["client"] == client("e")  # e came from b's directory only
    assert nodes["b"]["client"] == client("b")  # 0.0.0.0 -> the host of its peer address
    for unreachable in ("d", "f", "g"):
        assert nodes[unreachable]["tree"] is None and nodes[unreachable]["active_view"] is None
        assert nodes[unreachable]["peer"] == peer(unreachable)

    a = nodes["a"]
    assert a["peer"] == peer("a") and a["incarnation"] == 1
    assert a["eager_peers"] == [peer("b")] and a["lazy_peers"] == [peer("c")]
    assert set(roles(a["tree"])) >= set(ROLES)
    for actor_keys in (a["tree"], a["tree"]["children"][0]):
        assert set(actor_keys) == set(topology.ACTOR_KEYS) | {"children"}  # no "handle"

    assert link(data, "a", "b") == {
        "from": "a",
        "to": "b",
        "kind": "active",
        "eager": True,
        "symmetric": True,
    }
    assert link(data, "a", "c")["symmetric"] is True
    bc = link(data, "b", "c")
    assert bc == {"from": "b", "to": "c", "kind": "active", "eager": False, "symmetric": False}
    assert link(data, "a", "d") == {
        "from": "a",
        "to": "d",
        "kind": "passive",
        "eager": False,
        "symmetric": None,  # d was not reached: its side is unknown
    }
    ea = link(data, "a", "e")
    assert (ea["from"], ea["kind"], ea["symmetric"]) == ("e", "passive", False)
    az = link(data, "a", peer("z"))
    assert (az["from"], az["kind"], az["symmetric"]) == ("a", "passive", None)
    assert len(data["links"]) == 6


def test_one_node_lists_only_itself_and_names_its_links_by_id() -> None:
    data = fake_collect(cluster=False)
    assert data["cluster"] is False
    assert [n["node"] for n in data["nodes"]] == ["a"]
    assert {(lk["to"], lk["kind"], lk["symmetric"]) for lk in data["links"]} == {
        ("b", "active", None),
        ("c", "active", None),
        ("d", "passive", None),
        (peer("z"), "passive", None),  # in no directory: its peer address stands for it
    }


def test_the_first_node_failing_is_the_commands_failure() -> None:
    with pytest.raises(NodeUnreachable):
        fake_collect(cluster=True, start=client("d"))


def test_a_missing_messages_count_is_null_and_missing_keys_are_null() -> None:
    data = fake_collect(cluster=False)
    sensor = next(c for c in data["nodes"][0]["tree"]["children"] if c["id"] == "sensor")
    assert sensor["messages"] is None and sensor["pid"] is None
    assert data["nodes"][0]["tree"]["uptime"] is None  # the root reports none


# --- drawing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> dict:
    data = fake_collect(cluster=True)
    # Identifiers that a careless renderer would break on.
    odd = 'we"ird\\ <id> #1 & `end`'
    for node in data["nodes"]:
        if node["node"] == "c":
            node["node"] = odd
    for lk in data["links"]:
        for side in ("from", "to"):
            if lk[side] == "c":
                lk[side] = odd
    return data


def test_text_has_every_role_node_and_failure_within_100_columns(sample: dict) -> None:
    text = render_text(sample)
    for role in ROLES + ("node_sup", "peer_workers", "peer_worker-1", "sensor [restarting]"):
        assert role in text
    for node in by_id(sample):
        assert node in text
    assert "unreachable: " in text and "rest_for_one" in text and "simple_one_for_one" in text
    assert "1h02m" in text and "7.0" in text  # uptime 3725 s, PSS 7 MiB
    assert "Members:" in text and "Links:" in text and "one-way" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "├─" in text
    ascii_text = render_text(sample, ascii_only=True)
    assert "├" not in ascii_text and "│" not in ascii_text and "└" not in ascii_text
    assert "|- " in ascii_text and "`- " in ascii_text


def test_json_is_the_collected_dict(sample: dict) -> None:
    assert json.loads(render_json(sample)) == sample


def test_dot_has_a_cluster_per_node_and_styled_links(sample: dict) -> None:
    dot = render_dot(sample)
    assert dot.startswith("digraph satellite {") and dot.rstrip().endswith("}")
    reachable = [n for n in sample["nodes"] if n["reachable"]]
    assert dot.count("subgraph ") == len(reachable)
    assert 'subgraph "cluster_a" {' in dot
    assert '"cluster_we\\"ird\\\\ <id> #1 & `end`"' in dot  # quotes and backslashes escaped
    links = [line for line in dot.splitlines() if "constraint=false" in line]
    assert len(links) == len(sample["links"])
    assert sum('style="bold"' in line for line in links) == 1  # a-b, the eager one
    assert sum('style="dashed"' in line for line in links) == 3  # a-d, a-z, e->a
    assert sum("dir=forward" in line for line in links) == 2  # b->c and e->a: one-way
    supervision = [line for line in dot.splitlines() if "->" in line and "[" not in line]
    assert len(supervision) == 4 * 7  # 4 trees of 8 actors: 7 supervisor -> child edges


@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (apt install graphviz)")
def test_dot_parses_with_graphviz(sample: dict) -> None:
    result = subprocess.run(
        [DOT, "-Tsvg"], input=render_dot(sample), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout and result.stderr == ""


def test_mermaid_is_a_flowchart_with_safe_ids(sample: dict) -> None:
    text = render_mermaid(sample)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "flowchart TB"
    reachable = [n for n in sample["nodes"] if n["reachable"]]
    assert sum(line.startswith("subgraph ") for line in lines) == len(reachable)
    assert lines.count("end") == len(reachable)
    node_def = re.compile(r'^(\w+)(\["|\("|\{\{")(.*)("\]|"\)|"\}\})$')
    for line in lines[1:]:
        if line.startswith(("subgraph", "direction", "end", "classDef", "class ")):
            continue
        shape = node_def.match(line)
        if shape:
            assert '"' not in shape.group(3), line  # escaped as #quot;
            assert "<" not in shape.group(3).replace("<br/>", ""), line
            continue
        edge = re.fullmatch(r"(\w+) (-->|-\.->|---|-\.-|===)(\|one-way\|)? (\w+)", line)
        assert edge, line
    overlay = [line for line in lines if re.fullmatch(r"n\d+ \S+ [nx]\d+", line)]
    assert len(overlay) == len(sample["links"])
    assert sum(" === " in line or " ===|" in line for line in overlay) == 1
    assert sum(" -.-" in line for line in overlay) == 3
    assert "#quot;" in text and "class " in text  # the odd id; unreachable nodes styled


# --- against three real nodes -------------------------------------------------------------------


def satellite(*args: object, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != ENV_NODE}
    return subprocess.run(
        CLI + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**environ, **env},
    )


def addr(cluster: Cluster, i: int = 0) -> str:
    return f"127.0.0.1:{cluster.nodes[i].client_port}"


@pytest.fixture(scope="module")
def office3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("topo"), 3, "topo") as cluster:

        def directory_complete() -> bool:
            # --cluster walks the office's directory: every node must have written its entry.
            for node in cluster.nodes:
                with node.antenna() as antenna:
                    if len(antenna.state()["nodes"]) != 3:
                        return False
            return True

        wait_for(directory_complete, 20, "every node in every node's directory")
        yield cluster


def topology_json(*args: object) -> dict:
    result = satellite("topology", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_one_node_as_json(office3: Cluster) -> None:
    first = office3.nodes[0]
    data = topology_json("--node", addr(office3))
    assert data["version"] == 1 and not data["cluster"]
    (node,) = data["nodes"]
    assert node["node"] == "topo0" and node["reachable"] and node["peer"] == first.peer
    assert set(roles(node["tree"])) >= set(ROLES)
    assert node["tree"]["strategy"] == "rest_for_one"
    live = pids(node["tree"])
    # node_sup and Gossip, each its own process; the worker supervisors, the listener,
    # Membership, State and the readers are hosted in node_sup's: no pid of their own.
    assert len(live) == len(set(live)) == 2
    hosted = [c for c in node["tree"]["children"] if c["id"].endswith("_workers")]
    assert [(c["type"], c["pid"], c["pss"]) for c in hosted] == [("supervisor", None, None)] * 2
    for child_id in ("listener", "membership", "state", "network_scanner", "sensor"):
        (row,) = [c for c in node["tree"]["children"] if c["id"] == child_id]
        assert (row["type"], row["pid"], row["state"]) == ("worker", None, "running")
    for pid in live:
        assert psutil.pid_exists(pid), pid
    assert set(live) <= first.pids()  # and they are this node's processes
    assert isinstance(node["tree"]["messages"], int)

    def same_view_as_the_antenna() -> bool:
        # Polled: HyParView may still be shuffling a link between the two readings.
        shown = topology_json("--node", addr(office3))["nodes"][0]["active_view"]
        with first.antenna() as antenna:
            return sorted(shown) == sorted(antenna.topology()["hyparview"]["active_view"])

    wait_for(same_view_as_the_antenna, 20, "the active view the antenna reports")
    peers = {n.peer: n.name for n in office3.nodes}
    assert {lk["to"] for lk in data["links"]} <= set(peers.values()) - {"topo0"}


def test_one_node_as_text(office3: Cluster) -> None:
    result = satellite("topology", "--node", addr(office3, 1))
    assert result.returncode == 0, result.stderr
    for role in ROLES + ("topo1", "Members:", "Links:", "rest_for_one"):
        assert role in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_the_cluster_as_json(office3: Cluster) -> None:
    started = time.monotonic()
    data = topology_json("--node", addr(office3, 2), "--cluster")
    took = time.monotonic() - started
    assert data["cluster"] is True
    nodes = by_id(data)
    assert list(nodes) == ["topo0", "topo1", "topo2"]
    assert all(n["reachable"] for n in nodes.values()), nodes
    assert {n["client"] for n in nodes.values()} == {addr(office3, i) for i in range(3)}
    for n in nodes.values():
        assert set(roles(n["tree"])) >= set(ROLES)

    active = [lk for lk in data["links"] if lk["kind"] == "active"]
    assert active and all(lk["symmetric"] is True for lk in active), data["links"]
    for lk in active:  # each side's own active view holds the other
        assert nodes[lk["to"]]["peer"] in nodes[lk["from"]]["active_view"]
        assert nodes[lk["from"]]["peer"] in nodes[lk["to"]]["active_view"]
    linked = {x for lk in active for x in (lk["from"], lk["to"])}
    assert linked == set(nodes)
    assert took < 20  # the real bound (2 s on 10 nodes) is measured, not asserted on CI


def test_output_files_by_suffix(office3: Cluster, tmp_path: Path) -> None:
    dot_file, mmd_file = tmp_path / "office.dot", tmp_path / "office.mmd"
    assert satellite("topology", "--node", addr(office3), "--output", dot_file).returncode == 0
    assert dot_file.read_text().startswith("digraph satellite {")
    result = satellite("topology", "--node", addr(office3), "--cluster", "--output", mmd_file)
    assert result.returncode == 0 and result.stdout == ""
    assert mmd_file.read_text().startswith("flowchart TB")


@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (apt install graphviz)")
def test_output_svg_is_drawn_by_graphviz(office3: Cluster, tmp_path: Path) -> None:
    svg = tmp_path / "office.svg"
    result = satellite("topology", "--node", addr(office3), "--cluster", "--output", svg)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "<svg" in svg.read_text()
    assert "topo2" in svg.read_text()


def test_output_svg_without_graphviz_is_one_line_and_status_1(
    office3: Cluster, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = satellite(
        "topology", "--node", addr(office3), "--output", "office.svg", PATH=str(empty)
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "satellite: --output office.svg needs Graphviz: sudo apt install graphviz "
        "(or write .dot and render it elsewhere)\n"
    )
    assert not (ROOT / "office.svg").exists()


def test_an_unreachable_first_node_fails_in_one_line() -> None:
    with socket.socket() as held:  # bound, not listening: connections are refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        result = satellite("topology", "--cluster", "--node", f"127.0.0.1:{port}")
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and str(port) in result.stderr


def test_other_commands_keep_their_formats() -> None:
    result = satellite("members", "--format", "dot")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert satellite("topology", "--format", "yaml").returncode == 2
