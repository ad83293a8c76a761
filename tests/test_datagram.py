"""One-shot HyParView messages by UDP datagram (protocols/datagram.py), sealed and plain,
and on live nodes: a SHUFFLE reply reaches the passive view without a connection."""

from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cluster import Cluster, running_cluster, wait_for
from protocols import wire
from protocols.datagram import MAX_AGE_MS, MAX_DATAGRAM, DatagramError, Postbox
from protocols.hyparview import Join, ShuffleReply
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
    with pytest.raises(ValueError, match="does not travel"):
        Postbox(None).seal("10.0.0.9:7400", Join(1), NOW, b"")
    with pytest.raises(ValueError, match="do not fit"):
        many = tuple(f"host-{i:03d}.example.office:7400" for i in range(64))
        Postbox(None).seal("10.0.0.9:7400", ShuffleReply(many), NOW, b"")
    # Hand-made datagrams carrying anything else are refused on arrival.
    letter = Postbox(None).seal("10.0.0.9:7400", REPLY, NOW, b"")
    head = letter[: 4 + 4 + int.from_bytes(letter[4:8], "big")]
    for other in (Join(1), Prune()):
        with pytest.raises(DatagramError, match="does not travel"):
            Postbox(None).open(head + wire.encode(other), NOW)
    with pytest.raises(DatagramError, match="where a letter belongs"):
        Postbox(None).open(b"SAT\x01" + wire.encode(REPLY) + wire.encode(REPLY), NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 10), st.booleans())
def test_any_bytes_give_a_message_or_a_wire_error(data, keyed):
    box = Postbox([K1] if keyed else None)
    for candidate in (data, b"SAT\x01" + data, b"SAT\x02" + data):
        try:
            sender, message = box.open(candidate, NOW)
        except wire.WireError:
            continue
        assert type(message) is ShuffleReply and isinstance(sender, str)


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
