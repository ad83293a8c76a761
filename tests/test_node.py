"""Real nodes on 127.0.0.1: the office of issue 3, end to end.

Every test stops what it started, by process id, and checks that nothing is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable

import msgpack
import psutil
import pytest

from bench.cluster import (
    ROOT,
    Node,
    find,
    free_port_block,
    overlay_report,
    running_cluster,
    tree_of,
    views,
    wait_for,
    wait_whole,
)
from bench.compare import pss_bytes
from tests.pythons import installed


class Listeners:
    """One Antenna per node, subscribed to ``name``, recording what each receives."""

    def __init__(self, nodes: list[Node], name: str) -> None:
        self.got: dict[str, list] = defaultdict(list)
        self.antennas = []
        for node in nodes:
            antenna = node.antenna()
            antenna.on(name)(lambda payload, data, who=node.name: self.got[who].append(payload))
            antenna.start()
            self.antennas.append(antenna)

    def stop(self) -> None:
        for antenna in self.antennas:
            antenna.stop()


# --- ten nodes through one seed -----------------------------------------------------------------


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    # Not waited on here: the first test times the overlay forming.
    with running_cluster(tmp_path_factory.mktemp("office"), 10, "office", whole=False) as c:
        yield c


def titles_of(pids: Iterable[int]) -> dict[int, str]:
    """Each of ``pids`` still alive -> its title (a client's worker may end meanwhile)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = " ".join(psutil.Process(pid).cmdline())
        except psutil.NoSuchProcess:
            pass
    return out


def test_ten_nodes_through_one_seed_form_a_whole_symmetric_overlay(office):
    # A deadline, not a goal (bench/node_figures.py times the forming): about 5 s here
    # alone, and once over 10 s while the rest of the suite loaded the machine.
    wait_whole(office.nodes, 30, "a whole, symmetric overlay")


def test_events_from_every_node_reach_every_client_exactly_once(office):
    wait_whole(office.nodes, 30, "a whole, symmetric overlay")
    listeners = Listeners(office.nodes, "door")
    try:
        for i, node in enumerate(office.nodes):
            with node.antenna() as antenna:
                antenna.publish("door", {"from": i})
        expected = sorted(range(len(office.nodes)))

        def all_delivered() -> bool:
            return all(
                sorted(p["from"] for p in listeners.got[n.name]) == expected for n in office.nodes
            )

        wait_for(all_delivered, 10, "every event at every client")
    finally:
        listeners.stop()


def test_survivors_of_three_sigkilled_nodes_repair_and_deliver(office):
    dead, alive = office.nodes[7:], office.nodes[:7]
    for node in dead:
        node.kill()
        assert not node.pids()
    # (A one-sided link left by the repairs is closed as a stray within two of
    # Membership's 5 s ticks: README, "Goodbyes are symmetric".)
    wait_whole(alive, 30, "the survivors to repair their views")
    listeners = Listeners(alive, "after")
    try:
        for i, node in enumerate(alive):
            with node.antenna() as antenna:
                antenna.publish("after", i)
        wait_for(
            lambda: all(sorted(listeners.got[n.name]) == list(range(7)) for n in alive),
            10,
            "every new event at every survivor",
        )
    finally:
        listeners.stop()


# --- killing single actors -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("trio"), 3, "trio") as cluster:
        yield cluster


def events_flow(source: Node, sinks: list[Node], timeout: float) -> None:
    """A fresh event published at ``source`` reaches an Antenna on every sink."""
    listeners = Listeners(sinks, "ping")
    try:
        token = time.time_ns()
        with source.antenna() as antenna:
            antenna.publish("ping", token)
        wait_for(
            lambda: all(token in listeners.got[n.name] for n in sinks),
            timeout,
            f"an event from {source.name} at {[n.name for n in sinks]}",
        )
    finally:
        listeners.stop()


def established_inodes(ports: set[int]) -> set[int]:
    """Socket inodes of the TCP connections accepted on ``ports`` (/proc/net/tcp)."""
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port in ports and fields[3] == "01":  # ESTABLISHED
                out.add(int(fields[9]))
    return out


def descriptors_of(pid: int) -> list[int]:
    """The socket inodes behind each of ``pid``'s descriptors, one entry per descriptor."""
    out = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:  # ended since it was listed
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.append(int(target[8:-1]))
    return out


def test_the_listener_membership_and_state_live_in_node_sup_which_alone_holds_its_sockets(trio):
    node = trio.nodes[1]
    ports = {node.peer_port, node.client_port}
    with node.antenna() as antenna:
        assert len(antenna.members()) == 3  # Membership answers; a client connection
        tree = antenna.topology()["tree"]
        # Hosted: no process of their own; each counts what it handled.
        for child_id in ("listener", "membership", "state"):
            row = find(tree, child_id)
            assert row["pid"] is None and row["state"] == "running", row
            assert row["messages"] >= 1
        titles = set(titles_of(node.pids()).values())
        assert not any(t.endswith(("Listener", "Membership", "State")) for t in titles), titles
        listening: dict[int, list[int]] = defaultdict(list)
        held: dict[int, list[int]] = defaultdict(list)
        accepted = established_inodes(ports)
        for pid in node.pids():
            try:  # (a worker of an earlier client may be ending)
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            for conn in connections:
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports:
                    listening[conn.laddr.port].append(pid)
            for inode in descriptors_of(pid):
                if inode in accepted:
                    held[inode].append(pid)
    # The processes node_sup forked (Gossip, every worker) closed their copies.
    assert dict(listening) == {port: [tree["pid"]] for port in ports}
    # An accepted connection: its worker's descriptor (and Gossip's, once handed over),
    # never a second one in the same process (a copy inherited from node_sup's fork).
    assert held
    for pids in held.values():
        assert len(pids) == len(set(pids)) <= 2, pids


def test_a_killed_gossip_is_restarted_and_events_flow_again(trio):
    # (State, Membership and the listener have no process of their own: their crash is
    # an exception, tests/test_hosted.py)
    node, child_id = trio.nodes[1], "gossip"
    before = find(tree_of(node), child_id)
    assert before is not None and before["pid"]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted():
        after = find(tree_of(node), child_id)
        return after if after and after["pid"] not in (None, before["pid"]) else None

    after = wait_for(restarted, 10, f"{child_id} to come back")
    assert after["restarts"] >= before["restarts"] + 1
    # Each actor answers with the count of messages it handled (a listener may have
    # had none); a dead one would leave None.
    assert isinstance(before["messages"], int)
    assert (
        not psutil.pid_exists(before["pid"]) or psutil.Process(before["pid"]).status() == "zombie"
    )
    wait_whole(trio.nodes, 10, "the overlay to heal")
    events_flow(node, trio.nodes, 2)
    events_flow(trio.nodes[0], trio.nodes, 2)


def test_a_killed_peer_connection_is_a_membership_event(trio):
    node = trio.nodes[1]
    workers = find(tree_of(node), "peer_workers")["children"]
    assert workers, "a node with neighbours has peer connections"
    os.kill(workers[0]["pid"], signal.SIGKILL)
    # Temporary children are not restarted: HyParView notices the link is gone and
    # makes (or keeps) enough links by itself.
    wait_whole(trio.nodes, 10, "the overlay to heal")
    events_flow(node, trio.nodes, 2)


def back_or_gone(node: Node, old_pid: int) -> bool:
    if node.proc.poll() is not None:
        return True
    gossip = find(tree_of(node), "gossip") or {}
    return gossip.get("pid") not in (None, old_pid)


def test_restarts_beyond_the_intensity_escalate_and_stop_the_node(trio):
    node = trio.nodes[2]
    deadline = time.monotonic() + 60
    # node_sup allows 5 restarts in 30 s: the 6th crash makes it give up, and the
    # launcher exits non-zero so that systemd (or whoever) decides.
    while node.proc.poll() is None and time.monotonic() < deadline:
        gossip = find(tree_of(node), "gossip")
        if gossip and gossip["pid"]:
            try:
                os.kill(gossip["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda old=gossip["pid"]: back_or_gone(node, old), 10, "gossip back or gone")
    assert node.proc.wait(5) == 1
    wait_for(lambda: not node.pids(), 5, "every process of the node to be gone")


# --- the launcher -----------------------------------------------------------------------------


@pytest.fixture
def lone(tmp_path):
    port = free_port_block(1)
    node = Node("solo", port, tmp_path / "solo", [])
    node.start()
    try:
        node.wait_up()
        yield node
    finally:
        node.kill()
        assert not node.pids()


def test_a_node_of_the_same_name_in_another_office_is_not_taken_for_ours(tmp_path):
    # Two benchmarks, or a benchmark and the suite, may each run a node called "twin".
    base = free_port_block(2)
    ours = Node("twin", base, tmp_path / "ours", [])
    theirs = Node("twin", base + 1, tmp_path / "theirs", [])
    try:
        ours.start()
        theirs.start()
        ours.wait_up()
        theirs.wait_up()
        mine, other = ours.pids(), theirs.pids()
        assert len(mine) >= 4 and len(other) >= 4 and not mine & other
        ours.kill()
        assert not ours.pids()
        assert theirs.pids() == other
        with theirs.antenna() as antenna:
            assert antenna.members()
    finally:
        ours.kill()
        theirs.kill()


def test_sigterm_stops_every_process_within_5_seconds(lone):
    assert len(lone.pids()) >= 4  # launcher, admin, node_sup, Gossip
    lone.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not lone.pids(), 5, "every process to be gone")
    assert lone.proc.wait(1) == 0


def test_a_running_node_leaves_no_defunct_process_beside_it(lone):
    launcher = psutil.Process(lone.proc.pid)
    children = {c.pid: c.status() for c in launcher.children()}
    assert psutil.STATUS_ZOMBIE not in children.values(), children


def test_a_connection_that_carries_no_link_is_closed_with_a_disconnect(lone):
    # A peer that says hello and asks for nothing: as a crossed dial that came up after
    # the node dropped it, which the other end took for a link. The node says DISCONNECT
    # (the peer is still a good passive candidate) and closes it.
    import socket

    from protocols import hyparview, link, wire

    hello = link.Hello(link.PEER_PROTOCOL_VERSION, "stray", "127.0.0.1:9", 7)
    with socket.create_connection(("127.0.0.1", lone.peer_port), timeout=1) as sock:
        sock.sendall(wire.encode(hello))
        decoder, got = wire.FrameDecoder(), []
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                sock.sendall(wire.encode(link.Ping()))  # alive: only the link is wrong
                continue
            got += decoder.feed(data)
            if not data or hyparview.Disconnect in map(type, got):
                break
        waited = time.monotonic() - started
        # Then the connection ends (Gossip wrote the goodbye for the worker, which had
        # handed it the sending side, and both let go of the socket).
        sock.settimeout(10)
        while data:
            data = sock.recv(65536)
    assert type(got[0]) is link.Hello
    goodbyes = [m for m in got if type(m) is hyparview.Disconnect]
    assert goodbyes == [hyparview.Disconnect(got[0].incarnation, True)]
    assert waited >= 5.0  # not before a NEIGHBOR could have come


def test_sigkill_of_the_launcher_takes_the_node_down_within_5_seconds(lone):
    lone.proc.kill()
    lone.proc.wait(1)
    wait_for(lambda: not lone.pids(), 5, "every process to be gone")


def test_a_node_runs_no_thespian_logger_and_loads_no_asyncio(lone):
    # Issue 8, memory: each is a cost every process of the node would share or pay.
    titles = titles_of(lone.pids())
    assert len(titles) >= 4, titles
    assert not [t for t in titles.values() if t.startswith("logger ")], titles
    for pid, title in titles.items():
        try:
            with open(f"/proc/{pid}/maps") as maps:
                libraries = {line.split()[-1].rpartition("/")[2] for line in maps}
        except FileNotFoundError:  # ended since (the worker of an earlier test's client)
            continue
        loaded = {lib.partition(".")[0] for lib in libraries} & {"_asyncio", "_ssl"}
        assert not loaded, f"{pid} ({title}) loaded {loaded}"


def test_run_node_under_python_3_11_says_in_one_line_that_it_needs_3_12() -> None:
    # Issue 8: under 3.11 a node cannot meet its memory budget (README, Memory).
    older = installed("3.11")
    if not older:
        pytest.skip("no Python 3.11 on this machine")
    result = subprocess.run(
        [older[0], "run_node.py", "--node-id", "old"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Python 3.12 or newer is needed, this is 3.11" in result.stderr


def test_metrics_give_the_pss_of_every_process_of_the_node(lone):
    # Issue 8's measure of a node, for /metrics: the launcher and Thespian's admin too.
    # (pss_bytes skips a process that ended since it was listed: an earlier client's worker)
    with lone.antenna() as antenna:
        antenna.members()
        wait_for(lambda: len(lone.pids()) >= 5, 10, "the Antenna's worker")
        everything = lone.pids()
        admin = [pid for pid, title in titles_of(everything).items() if "MultiProcAdmin" in title]
        outside = {lone.proc.pid, *admin}
        assert len(outside) == 2
        before = pss_bytes(everything)
        gauge = antenna.metrics().gauges["node_pss_bytes"]
        after = pss_bytes(everything)
        # Read while the Antenna is open: its worker exits when it closes.
        actors, launcher_and_admin = pss_bytes(everything - outside), pss_bytes(outside)
    # Read a moment apart, by two readers: the same within a margin; and more than the
    # actors alone, by most of what the launcher and the admin hold.
    assert 0.8 * min(before, after) <= gauge <= 1.2 * max(before, after)
    assert gauge > actors + 0.5 * launcher_and_admin


def test_only_the_peer_and_client_ports_face_the_network(lone):
    listening = []
    for conn in psutil.net_connections("inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in lone.pids():
            listening.append((conn.laddr.ip, conn.laddr.port))
    public = {(ip, port) for ip, port in listening if ip != "127.0.0.1"}
    assert not public, f"Thespian sockets reachable from outside: {public}"
    ports = {port for _, port in listening}
    assert {lone.peer_port, lone.client_port} <= ports


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bind", "localhost:notaport"], "--bind"),
        (["--client", "127.0.0.1:70000"], "out of range"),
        (["--join", "x:y"], "--join"),
        (["--log-level", "LOUD"], "--log-level"),
        (["--config", "/nonexistent.toml"], "cannot read"),
        (["--node-id", "two words"], "node id"),
    ],
)
def test_bad_flags_get_one_line_and_status_2(args, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_a_bad_config_file_gets_one_line_and_status_2(tmp_path):
    bad = tmp_path / "node.toml"
    bad.write_text("bind = [unclosed\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    unknown = tmp_path / "other.toml"
    unknown.write_text('colour = "blue"\n')
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), "--config", str(unknown)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "unknown setting" in proc.stderr


# --- joining, config, and bad input on the node's ports ----------------------------------------


def test_a_node_waits_for_a_seed_that_is_not_up_yet_and_reads_a_config_file(tmp_path):
    base = free_port_block(2)
    config = tmp_path / "late.toml"
    config.write_text(
        f'node_id = "late"\nbind = "127.0.0.1:{base + 1}"\nclient = "127.0.0.1:{base + 1001}"\n'
        f'join = ["127.0.0.1:{base}"]\ndata_dir = "{tmp_path / "late"}"\n'
    )
    joiner = Node("late", base + 1, tmp_path / "late", [])
    seed = Node("early", base, tmp_path / "early", [])
    cmd = [sys.executable, str(ROOT / "run_node.py"), "--config", str(config)]
    joiner.proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        joiner.wait_up()
        with joiner.antenna() as antenna:
            assert antenna.node == "late"  # the id came from the file
            assert antenna.members() == [{"node": "late", "addr": joiner.peer, "status": "self"}]
        seed.start()  # the seed comes up later: the joiner keeps retrying it
        seed.wait_up()
        wait_whole([joiner, seed], 15, "the late join")
    finally:
        joiner.kill()
        seed.kill()


def test_nodes_restarted_while_their_seed_is_down_find_each_other_through_the_state(tmp_path):
    # Serf rejoins the members in its snapshot; a node here has the office's members in
    # its stored state (each node's entry names its peer address), and looks for the
    # office there when its seeds do not answer. Without it, two nodes restarted while
    # the seed was down each stayed alone, until the seed came back.
    with running_cluster(tmp_path, 3, "rejoin") as office:
        seed, a, b = office.nodes
        everyone = {n.peer for n in office.nodes}

        def lists_everyone(node: Node) -> bool:
            with node.antenna() as antenna:
                entries = antenna.state()["nodes"].values()
            return {entry.get("peer") for entry in entries} == everyone

        wait_for(lambda: lists_everyone(a) and lists_everyone(b), 20, "every node's entry")
        seed.kill()
        a.stop()
        b.stop()
        started = time.monotonic()
        a.start()
        b.start()
        a.wait_up()
        b.wait_up()

        def linked() -> bool:
            v = views([a, b])
            return b.peer in v[a.peer] and a.peer in v[b.peer]

        wait_for(linked, 30, "the two to link", explain=lambda: overlay_report([a, b]))
        print(f"linked {time.monotonic() - started:.2f} s after they were started again")


def raw(port: int, data: bytes) -> bytes:
    """Send raw bytes; return what the node answers before it closes (b"" if nothing)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x05hello",  # not msgpack
        b"\xff\xff\xff\xff",  # a 4 GiB length prefix
        bytes.fromhex("00000003") + b"\x93\x01\x02",  # msgpack, but not a map
    ],
)
def test_garbage_on_the_client_and_peer_ports_closes_that_connection_only(lone, data):
    raw(lone.peer_port, data)  # returns: the node closed it, no hang
    answer = raw(lone.client_port, data)
    assert answer == b""  # a client that never said hello gets nothing but the close
    with lone.antenna() as antenna:  # everyone else is still served
        assert antenna.members()[0]["node"] == "solo"
    # One line in the log per bad connection, naming the peer and the reason.
    bad = [line for line in lone.log.read_text().splitlines() if "closing" in line]
    assert len(bad) == 2 and all("bad frame" in line and "127.0.0.1:" in line for line in bad)


def test_a_client_of_another_protocol_version_is_refused_with_the_reason(lone):
    from protocols import link, wire

    answer = raw(lone.client_port, wire.encode(link.ClientHello(99, "future")))
    refused = wire.decode_frame(answer)
    assert type(refused) is link.Refused and "version 99" in refused.reason


def test_a_node_of_another_peer_protocol_version_is_refused_with_one_line(lone):
    from protocols import link, wire

    # A node from before Plumtree's messages named their root (peer version 1).
    old = link.Hello(link.PEER_PROTOCOL_VERSION - 1, "old", "127.0.0.1:9", 1)
    raw(lone.peer_port, wire.encode(old))  # returns: the node closed it
    lines = [line for line in lone.log.read_text().splitlines() if "closing" in line]
    expected = f"expected a Hello (version {link.PEER_PROTOCOL_VERSION}), got version 1"
    assert len(lines) == 1 and expected in lines[0]
    with lone.antenna() as antenna:  # and the node goes on
        assert antenna.members()[0]["node"] == "solo"


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"t": "gossip", "id": b"x", "round": "one", "payload": b"", "root": "a:1"}),
        b"\x85\xa1t\xa6gossip\xc1",  # Plumtree's tag where it belongs, then not msgpack
    ],
    ids=["a field of the wrong type", "not msgpack after the tag"],
)
def test_a_bad_plumtree_frame_from_a_peer_closes_its_link_with_one_line(lone, body):
    # Once the link is up, a peer worker passes Plumtree's frames on undecoded: Gossip
    # checks them, and closes the link on one that fails.
    import socket

    from protocols import link, wire

    hello = link.Hello(link.PEER_PROTOCOL_VERSION, "stray", "127.0.0.1:9", 7)
    with lone.antenna() as antenna, socket.create_connection(("127.0.0.1", lone.peer_port)) as sock:

        def handed_over(connections: int) -> bool:  # their workers have pipes to Gossip
            return antenna.metrics().gauges["links_written_by_gossip"] == connections

        wait_for(lambda: handed_over(1), 15, "the Antenna's worker to hand over its connection")
        sock.sendall(wire.encode(hello))
        # Then the worker took our hello: a link for Plumtree, for now (the node closes it
        # after 5 s with a DISCONNECT, as it carries no HyParView link).
        wait_for(lambda: handed_over(2), 4, "the stray link's worker to hand it over")
        sock.sendall(len(body).to_bytes(4, "big") + body)
        sock.settimeout(15)
        while sock.recv(65536):  # the node's hello, then the close
            pass

        def closings() -> list[str]:
            return [line for line in lone.log.read_text().splitlines() if "closing" in line]

        wait_for(closings, 10, "the line that says why the link closed")
        lines = closings()
        assert len(lines) == 1 and "Gossip: 127.0.0.1:9: bad frame" in lines[0], lines
        assert antenna.members()[0]["node"] == "solo"  # and the node goes on


def test_antenna_errors_are_clear(lone):
    from satellite import Antenna, NodeUnreachable

    with pytest.raises(NodeUnreachable, match="unreachable"):
        Antenna("127.0.0.1", free_port_block(1), timeout=1).connect()


def test_an_oversized_event_is_refused_and_the_node_lives_on(lone):
    from satellite import AntennaError

    with lone.antenna() as antenna:
        with pytest.raises(AntennaError, match="at most"):
            antenna.publish("big", "x" * 300_000)
        got = []
        antenna.on("small")(got.append)
        antenna.start()
        antenna.publish("small", 1)
        wait_for(lambda: got == [1], 5, "a small event after the big one")
