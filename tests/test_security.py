"""The cluster key on live nodes: offices with different keys stay apart, a client
without the key learns nothing, and protected mode refuses to listen in the open."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys

import pytest

from bench.cluster import ROOT, Cluster, free_port_block, wait_for
from protocols import link, wire
from run_node import ConfigError, load_config
from satellite import Antenna, BadKey


def key_file(path, *keys: bytes):
    path.write_text("".join(base64.b64encode(k).decode() + "\n" for k in keys))
    return path


def keyed(tmp, prefix: str, count: int, key: bytes) -> Cluster:
    kf = key_file(tmp / f"{prefix}.key", key)
    return Cluster(tmp / prefix, count, prefix, lambda i: ("--key-file", str(kf)))


def members(node) -> set[str]:
    with node.antenna() as antenna:
        return {m.node for m in antenna.members()}


def test_two_offices_with_different_keys_never_meet_even_when_joined(tmp_path):
    a = keyed(tmp_path, "keya", 2, os.urandom(32)).start()
    b = keyed(tmp_path, "keyb", 2, os.urandom(32))  # its ports chosen once a's are taken
    try:
        b.start()
        wait_for(lambda: members(a.nodes[0]) == {"keya0", "keya1"}, 15, "office a")
        wait_for(lambda: members(b.nodes[0]) == {"keyb0", "keyb1"}, 15, "office b")
        got = []
        listener = a.nodes[1].antenna()
        listener.on("door")(got.append)
        listener.start()
        try:
            with b.nodes[0].antenna() as antenna:
                antenna.join(a.nodes[0].peer)  # on purpose
                wait_for(
                    lambda: "key handshake failed" in b.nodes[0].log.read_text(),
                    15,
                    "office b to find that office a holds another key",
                )
                antenna.publish("door", "from b")
            with a.nodes[0].antenna() as antenna:
                antenna.publish("door", "from a")
            wait_for(lambda: "from a" in got, 10, "office a's own event")
            assert got == ["from a"]
            assert members(a.nodes[0]) == {"keya0", "keya1"}
            assert members(b.nodes[0]) == {"keyb0", "keyb1"}
            with a.nodes[0].antenna() as antenna:
                assert set(antenna.state().readings) <= {"keya0", "keya1"}
        finally:
            listener.stop()
    finally:
        a.stop()
        b.stop()
        assert not a.leftovers() and not b.leftovers()


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sec")
    cluster = keyed(tmp, "keyc", 2, os.urandom(32))
    cluster.key_path = tmp / "keyc.key"
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.leftovers()


def test_a_keyed_office_works_for_clients_holding_the_key(office):
    got = []
    listener = office.nodes[1].antenna()
    listener.on("lights")(got.append)
    listener.start()
    try:
        with office.nodes[0].antenna() as antenna:
            antenna.set("lights", "on")
        wait_for(lambda: got == ["on"], 10, "the target at the other node's client")
        # Gossip seals and writes the links and the client's connection (the workers
        # handed them over), with the count of records the handshake's channel began.
        # One Antenna asks throughout: a fresh one's worker seldom has handed its own
        # connection over by the time Gossip answers its first request.
        with office.nodes[1].antenna() as antenna:
            # the peer link, the listener and this Antenna
            wait_for(
                lambda: antenna.metrics().gauges["links_written_by_gossip"] >= 3,
                10,
                "the connections handed over to Gossip",
            )
        with office.nodes[0].antenna() as antenna:
            antenna.set("lights", "off")
        wait_for(lambda: got == ["on", "off"], 10, "a change over the handed-over links")
    finally:
        listener.stop()
    cli = subprocess.run(
        [sys.executable, "-m", "satellite.cli", "members", "--format", "json"]
        + ["--node", f"127.0.0.1:{office.nodes[0].client_port}"]
        + ["--key-file", str(office.key_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0 and "keyc1" in cli.stdout, cli.stderr


def test_a_client_without_the_key_learns_nothing(office):
    port = office.nodes[0].client_port
    with pytest.raises(BadKey):
        Antenna("127.0.0.1", port, timeout=3).members()
    with pytest.raises(BadKey):
        Antenna("127.0.0.1", port, timeout=3, key=os.urandom(32)).members()
    # On the wire: a plain hello and a request get one Refused, then the end.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(wire.encode(link.ClientHello(link.PROTOCOL_VERSION, "nosy")))
        sock.sendall(wire.encode(link.Request(1, "members")))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    (refused,) = wire.FrameDecoder().feed(data)
    assert type(refused) is link.Refused and "cluster key" in refused.reason
    # And a peer without the key gets nothing on the peer port either: not even a Hello.
    with socket.create_connection(("127.0.0.1", office.nodes[0].peer_port), timeout=5) as sock:
        sock.sendall(wire.encode(link.Hello(link.PEER_PROTOCOL_VERSION, "mole", "127.0.0.1:1", 1)))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"keyc" not in data and b"hello" not in data


def test_protected_mode_refuses_the_open_network_without_a_key(tmp_path):
    with pytest.raises(ConfigError, match="--bind: refusing to listen on 0.0.0.0"):
        load_config(["--bind", "0.0.0.0:7400"])
    with pytest.raises(ConfigError, match="--client"):
        load_config(["--bind", "127.0.0.1:7400", "--client", "0.0.0.0:8000"])
    assert load_config(["--bind", "0.0.0.0:7400", "--insecure"])["insecure"]
    kf = key_file(tmp_path / "k", os.urandom(32))
    assert len(load_config(["--bind", "0.0.0.0:7400", "--key-file", str(kf)])["keyring"]) == 1
    (tmp_path / "bad").write_text("not a key\n")
    for argv in (["--key-file", str(tmp_path / "bad")], ["--key-file", str(tmp_path / "nope")]):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run_node.py"), "--bind", "127.0.0.1:7400", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--key-file" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_node.py"), "--bind", f"0.0.0.0:{free_port_block(1)}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--key-file" in proc.stderr and "--insecure" in proc.stderr


def test_the_dashboard_of_a_keyed_node_holds_the_key(tmp_path):
    import urllib.request

    from bench.cluster import Node

    kf = key_file(tmp_path / "k", os.urandom(32))
    base = free_port_block(1)
    http = base + 3000  # (peer + 1000 is the client port, + 20000 the admin port)
    node = Node("keyd", base, tmp_path / "keyd", [], ("--key-file", str(kf), "--http", str(http)))
    node.start()
    try:
        node.wait_up()

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=3) as r:
                return r.status == 200

        wait_for(healthy, 20, "the dashboard attached to its keyed node")
    finally:
        node.kill()


def test_on_the_open_network_only_the_client_and_http_ports_listen_beyond_loopback(tmp_path):
    import psutil

    from bench.cluster import Node

    kf = key_file(tmp_path / "k", os.urandom(32))
    base = free_port_block(1)
    http = base + 3000
    node = Node(
        "open",
        base,
        tmp_path / "open",
        [],
        ("--key-file", str(kf), "--client", f"0.0.0.0:{base + 1000}", "--http", f"0.0.0.0:{http}"),
    )
    node.start()  # (its peer port stays on 127.0.0.1: Node binds it there)
    try:
        node.wait_up()
        wait_for(lambda: any(c.laddr.port == http for c in _listening(node)), 20, "the dashboard")
        public = {(c.laddr.ip, c.laddr.port) for c in _listening(node) if c.laddr.ip != "127.0.0.1"}
        assert {port for _, port in public} == {node.client_port, http}
        private = [c for c in _listening(node) if c.laddr.ip == "127.0.0.1"]
        assert private, "Thespian's own sockets, all on loopback"
        assert all(psutil.pid_exists(c.pid) for c in private)
        # UDP: only the peer port's datagrams (shuffle replies), where the peer port is.
        pids = node.pids()
        udp = {tuple(c.laddr) for c in psutil.net_connections("udp") if c.pid in pids}
        assert udp == {("127.0.0.1", node.peer_port)}
    finally:
        node.kill()


def _listening(node) -> list:
    import psutil

    pids = node.pids()
    return [
        c
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
