"""One-shot HyParView messages by UDP datagram (protocols/datagram.py), sealed and plain,
and on live nodes: a SHUFFLE reply reaches the passive view without a connection, a
full node refuses a low-priority NEIGHBOR by datagram, one with room dials back."""

from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cluster import Cluster, running_cluster, wait_for
from protocols import link, wire
from protocols.datagram import (
    MAX_AGE_MS,
    MAX_DATAGRAM,
    DatagramError,
    Postbox,
    by_datagram,
    travels_by_datagram,
)
from protocols.hyparview import Join, Neighbor, NeighborReply, Shuffle, ShuffleReply
from protocols.plumtree import Prune
from tests.test_security import key_file

K1, K2 = bytes([1]) * 32, bytes([2]) * 32
NOW = 1_790_000_000_000
REPLY = ShuffleReply(("10.0.0.1:7400", "10.0.0.2:7400"))


def nonce() -> bytes:
    return os.urandom(12)


@pytest.mark.parametrize("ring", [None, [K1]])
def test_what_one_node_posts_another_of_the_same_office_opens(ring):
    data = Postbox(ring).seal("10.0.0.9:7400", REPLY, NOW, nonce())
    assert len(data) <= MAX_DATAGRAM
    assert Postbox(ring).open(data, NOW + 5) == ("10.0.0.9:7400", REPLY)


def test_a_sealed_datagram_hides_its_addresses_and_opens_only_under_the_key():
    data = Postbox([K1]).seal("10.0.0.9:7400", REPLY, NOW, nonce())
    assert b"10.0.0.1" not in data
    with pytest.raises(DatagramError, match="another cluster key"):
        Postbox([K2]).open(data, NOW)
    with pytest.raises(DatagramError, match="has none"):
        Postbox(None).open(data, NOW)
    for at in (10, len(data) // 2, len(data) - 1):  # header, nonce, ciphertext and tag
        altered = bytearray(data)
        altered[at] ^= 1
        with pytest.raises(DatagramError):
            Postbox([K1]).open(bytes(altered), NOW)


def test_rotation_any_key_of_the_ring_opens_the_primary_seals():
    old_primary = Postbox([K1, K2]).seal("10.0.0.9:7400", REPLY, NOW, nonce())
    assert Postbox([K2, K1]).open(old_primary, NOW)[1] == REPLY
    new_primary = Postbox([K2, K1]).seal("10.0.0.9:7400", REPLY, NOW, nonce())
    assert Postbox([K1, K2]).open(new_primary, NOW)[1] == REPLY
    with pytest.raises(DatagramError):
        Postbox([K1]).open(new_primary, NOW)


def test_a_keyed_node_refuses_plain_and_stale_datagrams():
    plain = Postbox(None).seal("10.0.0.9:7400", REPLY, NOW, b"")
    with pytest.raises(DatagramError, match="not sealed"):
        Postbox([K1]).open(plain, NOW)
    sealed = Postbox([K1]).seal("10.0.0.9:7400", REPLY, NOW, nonce())
    assert Postbox([K1]).open(sealed, NOW + MAX_AGE_MS)[1] == REPLY
    for late in (NOW + MAX_AGE_MS + 1, NOW - MAX_AGE_MS - 1):
        with pytest.raises(DatagramError, match="from now"):
            Postbox([K1]).open(sealed, late)


def test_only_one_shot_messages_travel_by_datagram():
    for message in (Join(1), Neighbor(1, True), NeighborReply(1, True)):
        with pytest.raises(ValueError, match="does not travel"):
            Postbox(None).seal("10.0.0.9:7400", message, NOW, b"")
    for message in (Neighbor(1, False), NeighborReply(1, False)):
        data = Postbox([K1]).seal("10.0.0.9:7400", message, NOW, nonce())
        assert Postbox([K1]).open(data, NOW) == ("10.0.0.9:7400", message)
    with pytest.raises(ValueError, match="do not fit"):
        many = tuple(f"host-{i:03d}.example.office:7400" for i in range(64))
        Postbox(None).seal("10.0.0.9:7400", ShuffleReply(many), NOW, b"")
    # Hand-made datagrams carrying anything else are refused on arrival.
    letter = Postbox(None).seal("10.0.0.9:7400", REPLY, NOW, b"")
    head = letter[: 4 + 4 + int.from_bytes(letter[4:8], "big")]
    for other in (Join(1), Prune("a:1"), Neighbor(1, True), NeighborReply(1, True)):
        with pytest.raises(DatagramError, match="does not travel"):
            Postbox(None).open(head + wire.encode(other), NOW)
    with pytest.raises(DatagramError, match="where a letter belongs"):
        Postbox(None).open(b"SAT\x01" + wire.encode(REPLY) + wire.encode(REPLY), NOW)


def test_which_messages_a_node_sends_as_datagrams():
    shuffle, reply = Shuffle("10.0.0.1:7400", 3, ("10.0.0.2:7400",)), REPLY
    ask, refuse = Neighbor(1, False), NeighborReply(1, False)
    # (depends on the peer, a connection stands) -> by datagram?
    cases = {
        # A shuffle's every step and its reply, whoever the peer is.
        shuffle: {(False, False): True, (True, True): True, (True, False): True},
        reply: {(False, False): True, (False, True): True, (True, True): True},
        # A request always waits on its answer (depends_on): by datagram unless a
        # connection to the peer already stands.
        ask: {(True, False): True, (True, True): False},
        # A refusal to a peer that dialled to ask goes back on its connection.
        refuse: {(False, False): True, (False, True): False, (True, False): False},
        Neighbor(1, True): {(True, False): False},
        NeighborReply(1, True): {(True, False): False, (False, False): False},
        Join(1): {(False, False): False},
    }
    for message, rules in cases.items():
        assert travels_by_datagram(message) == any(rules.values()), message
        for (depends, connected), expected in rules.items():
            assert by_datagram(message, depends, connected) == expected, (message, depends)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 10), st.booleans())
def test_any_bytes_give_a_message_or_a_wire_error(data, keyed):
    box = Postbox([K1] if keyed else None)
    for candidate in (data, b"SAT\x01" + data, b"SAT\x02" + data):
        try:
            sender, message = box.open(candidate, NOW)
        except wire.WireError:
            continue
        assert travels_by_datagram(message) and isinstance(sender, str)


# --- live nodes ----------------------------------------------------------------------------


def known(node) -> set[str]:
    with node.antenna() as antenna:
        return {m.addr for m in antenna.members() if m.status == "known"}


def post(node, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, ("127.0.0.1", node.peer_port))


def test_a_node_takes_a_shuffle_reply_by_datagram_and_logs_what_it_refuses(tmp_path):
    ring = [os.urandom(32)]
    cluster = Cluster(
        tmp_path, 1, "dgk", lambda i: ("--key-file", str(key_file(tmp_path / "k", *ring)))
    )
    try:
        cluster.start()
        node = cluster.nodes[0]
        now = lambda: int(time.time() * 1000)  # noqa: E731
        # Garbage, a plain datagram and one sealed under another key: a log line each.
        post(node, b"\x00garbage")
        post(node, Postbox(None).seal("127.0.0.1:9", ShuffleReply(("127.0.0.1:1",)), now(), b""))
        other = Postbox([os.urandom(32)])
        post(node, other.seal("127.0.0.1:9", ShuffleReply(("127.0.0.1:2",)), now(), nonce()))
        wait_for(lambda: node.log.read_text().count("refused") >= 3, 15, "three refusals logged")
        assert "not a Satellite datagram" in node.log.read_text()
        assert "Traceback" not in node.log.read_text()
        assert known(node) == set()
        # One sealed under the office's key is taken: its addresses join the passive view.
        addrs = ("127.0.0.1:3", "127.0.0.1:4")
        post(node, Postbox(ring).seal("127.0.0.1:9", ShuffleReply(addrs), now(), nonce()))
        wait_for(lambda: known(node) == set(addrs), 15, "the passive view to take the reply")
        with node.antenna() as antenna:
            counters = antenna.metrics()["counters"]
        assert counters["datagrams_refused"] == 3
        assert counters["datagrams_received"] == 1
    finally:
        cluster.stop()
        assert not cluster.leftovers()


def test_shuffle_replies_to_non_neighbours_go_by_datagram_and_none_is_lost(tmp_path):
    """Ten nodes, active views of five: within a few shuffle rounds (every 10 s) some
    walk ends at a node that is not a neighbour of its origin, and a quarter of the
    shuffles go straight to a passive peer. Both go by datagram, and every reply
    arrives (one over the temporary connection of a direct shuffle was lost, before)."""

    def totals(*names: str) -> list[int]:
        sums = [0] * len(names)
        for node in cluster.nodes:
            with node.antenna() as antenna:
                counters = antenna.metrics()["counters"]
            for i, name in enumerate(names):
                sums[i] += counters.get(name, 0)
        return sums

    with running_cluster(tmp_path, 10, "dgs") as cluster:
        wait_for(lambda: totals("datagrams_received")[0] >= 2, 90, "replies by datagram", step=1.0)
        # Read node by node: the sends are read after the receipts, so each datagram
        # counted received was sent before its sender was read.
        (received,) = totals("datagrams_received")
        (sent,) = totals("datagrams_sent")
        assert received <= sent
        # Every reply sent arrives (loopback, nobody dies): the totals meet, in a pass
        # that no reply crosses.
        replies = ("hyparview_shufflereply_sent", "hyparview_shufflereply_received")
        wait_for(lambda: len(set(totals(*replies))) == 1, 30, "every shuffle reply", step=0.2)
        for node in cluster.nodes:
            assert "Traceback" not in node.log.read_text()


def read_until(sock: socket.socket, want: type, timeout: float = 15.0) -> object:
    """Frames from ``sock`` until one of type ``want`` (the node may send others first)."""
    decoder = wire.FrameDecoder()
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        assert data, f"closed before a {want.__name__}"
        for message in decoder.feed(data):
            if type(message) is want:
                return message
    raise AssertionError(f"no {want.__name__} within {timeout} s")


def fake_peer_socket() -> tuple[socket.socket, socket.socket]:
    """A fake node's TCP listener and UDP socket, on the same port as a node has them."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.listen(4)
        return tcp, udp
    raise AssertionError("no free port for a fake peer")


def hello(addr: str) -> bytes:
    return wire.encode(link.Hello(link.PEER_PROTOCOL_VERSION, "fake", addr, 1))


def ask(node, udp: socket.socket, addr: str) -> None:
    """A low-priority NEIGHBOR from the fake node at ``addr``, by datagram."""
    letter = Postbox(None).seal(addr, Neighbor(1, False), int(time.time() * 1000), b"")
    udp.sendto(letter, ("127.0.0.1", node.peer_port))


def test_a_node_with_room_accepts_a_neighbor_datagram_over_a_connection_it_dials(tmp_path):
    cluster = Cluster(tmp_path, 1, "dga")
    tcp, udp = fake_peer_socket()
    try:
        cluster.start()
        node = cluster.nodes[0]
        addr = f"127.0.0.1:{tcp.getsockname()[1]}"
        ask(node, udp, addr)
        tcp.settimeout(15)
        conn, _ = tcp.accept()  # the node dials back: the link needs a connection
        with conn:
            assert type(read_until(conn, link.Hello)) is link.Hello
            conn.sendall(hello(addr))
            assert read_until(conn, NeighborReply).accepted
            with node.antenna() as antenna:
                alive = {m.addr for m in antenna.members() if m.status == "alive"}
            assert alive == {addr}
    finally:
        tcp.close()
        udp.close()
        cluster.stop()
        assert not cluster.leftovers()


def test_a_full_node_refuses_a_neighbor_datagram_by_datagram(tmp_path):
    cluster = Cluster(tmp_path, 1, "dgf")
    tcp, udp = fake_peer_socket()
    links: list[socket.socket] = []
    try:
        cluster.start()
        node = cluster.nodes[0]
        # Five fake neighbours fill its active view (high priority: always accepted).
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", node.peer_port), timeout=15)
            links.append(sock)
            read_until(sock, link.Hello)
            sock.sendall(hello(f"127.0.0.1:{sock.getsockname()[1]}"))
            sock.sendall(wire.encode(Neighbor(1, True)))
            assert read_until(sock, NeighborReply).accepted
        addr = f"127.0.0.1:{tcp.getsockname()[1]}"
        ask(node, udp, addr)
        udp.settimeout(15)
        data, _ = udp.recvfrom(MAX_DATAGRAM + 1)
        sender, reply = Postbox(None).open(data, int(time.time() * 1000))
        assert sender == node.peer and type(reply) is NeighborReply and not reply.accepted
        tcp.setblocking(False)
        with pytest.raises(BlockingIOError):
            tcp.accept()  # and no connection came for it
        with node.antenna() as antenna:
            members = {m.addr: m.status for m in antenna.members()}
        assert members[addr] == "known"  # a passive candidate, as the paper keeps it
        assert sum(status == "alive" for status in members.values()) == 5
    finally:
        for sock in links:
            sock.close()
        tcp.close()
        udp.close()
        cluster.stop()
        assert not cluster.leftovers()


def test_a_neighbor_datagram_to_a_dead_node_bounces_and_fails_at_once(tmp_path):
    """A node short of links asks a passive peer that is down: its datagram comes back
    (ICMP port unreachable), read as the failure a reset dial would be."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"  # nobody there once closed
    with running_cluster(tmp_path, 2, "dgb") as cluster:
        node = cluster.nodes[0]
        # The dead address joins the node's passive view by a shuffle reply.
        reply = Postbox(None).seal(
            "127.0.0.1:9", ShuffleReply((dead,)), int(time.time() * 1000), b""
        )
        post(node, reply)

        def bounced() -> int:
            with node.antenna() as antenna:
                return antenna.metrics()["counters"].get("datagrams_bounced", 0)

        # One link, below the minimum of 3: every promote round (5 s) asks its passive
        # peers, with low priority (it has a neighbour), so by datagram.
        wait_for(lambda: bounced() >= 1, 30, "the request to the dead node to bounce")
        wait_for(lambda: dead not in known(node), 10, "the dead node dropped")
        assert "Traceback" not in node.log.read_text()
