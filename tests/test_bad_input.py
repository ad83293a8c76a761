"""Every bad input of issue 7, sent at a live keyed office while it carries events:
each gets its connection closed, the office loses no event, no actor restarts, and the
targeted node's memory comes back to where it was."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time

import msgpack
import psutil
import pytest

from bench.cluster import Cluster, wait_for
from protocols import link, wire
from protocols.secure import Handshake, WrongKey
from satellite import AntennaError

KEY = os.urandom(32)


def uss(node) -> int:
    """The node's own memory: unique pages of its processes (PSS would move with the
    number of other Python processes sharing the interpreter's pages)."""
    total = 0
    for pid in node.pids():
        try:
            total += psutil.Process(pid).memory_full_info().uss
        except psutil.Error:
            pass
    return total


def restarts(node) -> int:
    with node.antenna() as antenna:
        return sum(antenna.metrics().restarts.values())


def closed_soon(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the node has closed the connection (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def attack(port: int, payload: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return True  # closed while we were still sending
        return closed_soon(sock)


def authenticated(port: int) -> tuple[socket.socket, object]:
    """A client that holds the key: what it sends next is sealed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    hs = Handshake([KEY], True, os.urandom(16))
    sock.sendall(hs.start())
    while not hs.done:
        sock.sendall(hs.feed(sock.recv(65536)))
    return sock, hs.channel


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x00"  # [[[...[0]...]]]


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    key_file = tmp / "office.key"
    key_file.write_text(base64.b64encode(KEY).decode() + "\n")
    cluster = Cluster(tmp, 3, "bad", lambda i: ("--key-file", str(key_file)))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.leftovers()


def test_bad_input_on_both_ports_closes_connections_and_hurts_nobody(office):
    target = office.nodes[0]
    got = {n.name: set() for n in office.nodes}
    listeners = []
    for node in office.nodes:
        antenna = node.antenna()
        antenna.on("tick")(lambda n, who=node.name: got[who].add(n))
        antenna.start()
        listeners.append(antenna)
    published: list[int] = []
    stop = threading.Event()

    def publish() -> None:
        with office.nodes[1].antenna() as antenna:
            n = 0
            while not stop.is_set():
                antenna.publish("tick", n)
                published.append(n)
                n += 1
                stop.wait(0.05)

    before_restarts = sum(restarts(n) for n in office.nodes)
    before_memory = uss(target)
    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for port in (target.peer_port, target.client_port):
            results = {
                "random bytes": attack(port, os.urandom(4096)),
                "truncated frame": attack(port, frame(b"\x82" * 50)[:20]),
                "4 GiB length prefix": attack(port, b"\xff\xff\xff\xff" + b"x" * 100),
                "plaintext hello": attack(
                    port, wire.encode(link.ClientHello(link.PROTOCOL_VERSION, "nokey"))
                ),
            }
            # A handshake under another key.
            hs = Handshake([os.urandom(32)], True, os.urandom(16))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(hs.start())
                challenge = sock.recv(65536)
                with pytest.raises(WrongKey):
                    hs.feed(challenge)
                sock.sendall(os.urandom(36))  # a made-up proof
                results["wrong key"] = closed_soon(sock)
            # Holding the key, but sending garbage inside the sealed channel.
            for name, body in {
                "deeply nested msgpack": frame(nested(100_000)),
                "valid msgpack, wrong schema": frame(msgpack.packb({"hello": [1, 2, 3]})),
                "unknown message type": frame(msgpack.packb(["no_such_type", {}])),
            }.items():
                sock, channel = authenticated(port)
                with sock:
                    sock.sendall(channel.seal(body))
                    results[name] = closed_soon(sock)
            # What only a worker says to Gossip on their pipe, after a proper hello.
            sock, channel = authenticated(port)
            with sock:
                if port == target.client_port:
                    hello = link.ClientHello(link.PROTOCOL_VERSION, "mole")
                else:
                    hello = link.Hello(link.PEER_PROTOCOL_VERSION, "mole", "127.0.0.1:9", 1)
                own = link.Outgoing(wire.encode(link.Ping()), False)
                sock.sendall(channel.seal(wire.encode(hello) + wire.encode(own)))
                results["a worker's message to Gossip"] = closed_soon(sock)
            # A record replayed from one session into another.
            sock, channel = authenticated(port)
            record = channel.seal(wire.encode(link.ClientHello(link.PROTOCOL_VERSION, "x")))
            sock.close()
            sock, _ = authenticated(port)
            with sock:
                sock.sendall(record)
                results["replayed record"] = closed_soon(sock)
            # One byte a second: closed at the greeting deadline.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                for byte in frame(b"\x00" * 64)[:3]:
                    sock.sendall(bytes([byte]))
                    time.sleep(1)  # the attack itself is the slowness
                results["one byte a second"] = closed_soon(sock, 10)
            assert all(results.values()), {k: v for k, v in results.items() if not v}

        # A thousand connections at once, on the client port.
        socks = []
        for _ in range(1000):
            try:
                socks.append(socket.create_connection(("127.0.0.1", target.client_port), 5))
            except OSError:
                break
        assert len(socks) >= 500
        for sock in socks:
            sock.close()
    finally:
        stop.set()
        publisher.join()
    try:
        everywhere = set(published)
        try:
            wait_for(lambda: all(got[n] >= everywhere for n in got), 30, "every event")
        except AssertionError:
            missing = {n: sorted(everywhere - got[n])[:20] for n in got}
            raise AssertionError(f"missing of {len(everywhere)}: {missing}") from None
    finally:
        for antenna in listeners:
            antenna.stop()
    # During the flood, connections beyond the cap were refused; then it serves again.
    wait_for(lambda: [restarts(n) for n in office.nodes], 30, "the office to serve again")
    assert sum(restarts(n) for n in office.nodes) == before_restarts
    # The flood's workers (at most --max-clients) take a while to start and leave.
    wait_for(
        lambda: uss(target) < before_memory + 20 * 2**20,
        90,
        f"node memory back within 20 MB of {before_memory / 2**20:.1f} MiB",
    )
    log = target.log.read_text()
    assert "Traceback" not in log


@pytest.mark.parametrize("bad", ["x:abc", "nocolon", "h:0", "h:65536", ":7400"])
def test_a_join_or_block_of_what_is_not_host_port_is_refused_with_a_clear_error(office, bad):
    # Membership would have dialled it, or sent it a datagram (which failed in the send).
    node = office.nodes[0]
    with node.antenna() as antenna:
        for command in (antenna.join, antenna.block):
            with pytest.raises(AntennaError, match="HOST:PORT"):
                command(bad)
        assert antenna.members()[0]["status"] == "self"  # and the node goes on


def test_the_connection_limits_are_settings(tmp_path):
    from bench.cluster import Node, free_port_block
    from satellite import Antenna, AntennaError

    node = Node("limits", free_port_block(1), tmp_path / "limits", [], ("--max-clients", "2"))
    node.start()
    try:
        node.wait_up()
        # (The slot of wait_up's own client frees as soon as the node sees it leave.)
        first = wait_for(lambda: node.antenna().connect(), 10, "a first client")
        second = wait_for(lambda: node.antenna().connect(), 10, "a second client")
        # Held by two clients: a third connection is closed unserved.
        with pytest.raises(AntennaError):
            Antenna("127.0.0.1", node.client_port, timeout=3).members()
        assert first.members() and second.members()
        first.close()
        wait_for(lambda: node.antenna().members(), 10, "a free slot once one client left")
        second.close()
    finally:
        node.kill()


def test_a_client_that_stops_reading_is_cut_off_and_the_others_carry_on(tmp_path):
    # Gossip writes the clients' connections (their workers hand it the sending side):
    # one that reads nothing must cost at most --send-buffer, then its connection.
    from bench.cluster import Node, free_port_block

    node = Node("lazy", free_port_block(1), tmp_path / "lazy", [], ("--send-buffer", "262144"))
    node.start()
    lazy = socket.socket()
    try:
        node.wait_up()
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.connect(("127.0.0.1", node.client_port))
        lazy.sendall(wire.encode(link.ClientHello(link.PROTOCOL_VERSION, "lazy")))
        lazy.sendall(wire.encode(link.Subscribe(("*",))))
        got, warm = [], []
        listener = node.antenna()
        listener.on("bulk")(lambda value: got.append(len(value)))
        listener.on("warm")(warm.append)
        listener.start()
        try:
            wait_for(
                lambda: node.antenna().metrics().gauges["clients"] == 2, 10, "both subscribed"
            )
            events = 60  # 12 MiB: more than the kernel's buffers and the send buffer
            with node.antenna() as antenna:
                # Until the publisher's own pipe to Gossip is there, what it publishes
                # waits in its worker, within the same small --send-buffer: one event
                # through first, then the big ones.
                antenna.publish("warm", 1)
                wait_for(lambda: warm == [1], 10, "a first event through the publisher's pipe")
                for _ in range(events):
                    antenna.publish("bulk", b"x" * (200 << 10))
            wait_for(lambda: "does not read" in node.log.read_text(), 30, "the lazy client cut off")
            assert closed_soon(lazy)
            wait_for(lambda: len(got) == events, 30, "every event at the client that reads")
            assert node.proc.poll() is None
            assert "Traceback" not in node.log.read_text()
        finally:
            listener.stop()
    finally:
        lazy.close()
        node.kill()
