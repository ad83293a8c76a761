"""One-shot HyParView messages as UDP datagrams, sans-IO: a SHUFFLE (each step of its
random walk, and one sent straight to a passive peer) and its reply, and a low-priority
NEIGHBOR request to a node we have no connection with, with its refusal.

The paper sends the reply over a temporary TCP connection. Here a connection costs a
worker process at both ends (a fork, Thespian's start and exit notices, the Hello and
key handshakes); with a shuffle every 10 s, about half of the replies went to a node
that was not a neighbour, and those short-lived workers were the largest part of an
idle node's CPU (issue 8); the direct shuffles with a passive peer (a quarter) were
most of the rest. A datagram is one ``sendto`` and one ``recvfrom``. Losing one costs
nothing the protocol counts on: the paper treats the reply as best effort, the next
shuffle refreshes the passive view anyway, and a passive peer that does not answer a
direct shuffle is dropped (``shuffle_reply_timeout``), as a failed connection to it was.
A low-priority NEIGHBOR (a fill-up request: it only takes a free slot) is refused
whenever its receiver is full, which in a settled office is most of the time: over a
connection, each refusal cost both nodes a worker process for a moment, the largest part
of the idle CPU left on the nodes still short of links (issue 8). By datagram a refusal
is one datagram each way; an acceptance comes back over a connection that the accepting
node dials, the link itself. A lost request or refusal is a NEIGHBOR that gets no answer
within ``neighbor_timeout``, as a connection that does not come up is.
Serf's memberlist splits its traffic the same way: gossip by UDP, state exchange by
TCP, both on the same port number.

Layout (after a 4-byte header ``b"SAT"`` + version)::

    version 1, no cluster key:  letter frame + message frame
    version 2, with a key:      key_id (8) + nonce (12) + ChaCha20-Poly1305 of the same,
                                under a key derived from the cluster key for datagrams only,
                                the header and key_id as associated data

The letter names the sender's peer address and when it was sent (milliseconds of wall
clock, given by the caller): a sealed datagram older or newer than ``MAX_AGE_MS`` is
refused, so a recorded one replays for a minute at most, and all it can repeat is a list
of addresses a key holder once sent, or a request or refusal it once made. Only what
``travels_by_datagram`` allows travels this way; anything else in a datagram is refused
like a malformed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols import wire
from protocols.aead import ChaCha20Poly1305, InvalidTag, hkdf_sha256
from protocols.hyparview import Neighbor, NeighborReply, Shuffle, ShuffleReply
from protocols.secure import KEY_ID_BYTES, key_id
from protocols.wire import PEER_ADDRESS, UInt, register

MAGIC = b"SAT"
PLAIN, SEALED = 1, 2
NONCE_BYTES = 12
MAX_DATAGRAM = 1400  # fits one Ethernet frame: no IP fragments to lose on the office LAN
MAX_AGE_MS = 60_000


def travels_by_datagram(message: Any) -> bool:
    """Whether ``message`` may be a datagram at all: a SHUFFLE or its reply, a NEIGHBOR
    of low priority, a refusing NEIGHBOR_REPLY. (An accepted request makes a link, which
    needs the connection; a high-priority one is never refused, so gains nothing.)"""
    kind = type(message)
    if kind is Neighbor:
        return not message.high_priority
    if kind is NeighborReply:
        return not message.accepted
    return kind is Shuffle or kind is ShuffleReply


def by_datagram(message: Any, depends_on: bool, connected: bool) -> bool:
    """Whether a node sends ``message`` as a datagram rather than over a connection:
    ``depends_on``, the sender waits on or links with the peer (HyParView.depends_on);
    ``connected``, a connection to the peer stands. A SHUFFLE, each step of its walk
    included, and its reply always go by datagram: over a link, each step cost an actor
    message into Membership and one out to the next link's worker, about 3 ms of CPU
    (the largest part of an idle node's). A NEIGHBOR request, and a refusal, only when
    no connection stands: a peer that dialled to ask waits on its connection.

    A dial to a crashed node fails at once (the kernel resets it); a datagram to one
    comes back as ICMP port unreachable, which the sender must take the same way
    (Membership does): left to ``neighbor_timeout`` (0.5 s then), each dead candidate
    cost that, and
    after 80 % of 1,000 simulated nodes crashed the first broadcast reached 4 % of the
    survivors instead of 91 %."""
    if not travels_by_datagram(message):
        return False
    if type(message) is Neighbor:
        return not connected
    if type(message) is NeighborReply:
        return not depends_on and not connected
    return True


class DatagramError(wire.WireError):
    """Not a datagram we take: malformed, sealed under another key, stale, or a message
    that does not travel by datagram."""


@dataclass(frozen=True, slots=True)
class Letter:
    """What comes before the message: who sent it, and when."""

    sender: str  # host:port of its peer port
    sent_ms: int  # wall clock, milliseconds since the epoch


register(
    "letter", Letter, [("from", "sender", PEER_ADDRESS), ("ms", "sent_ms", UInt((1 << 63) - 1))]
)


def _datagram_key(key: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf_sha256(key, 32, salt=None, info=b"satellite datagram"))


class Postbox:
    """Seals and opens datagrams for one node. ``keyring`` as the node's links use it: the
    first key seals; any key of the ring opens what names it. None or empty: plain."""

    def __init__(self, keyring: list[bytes] | None = None) -> None:
        self.keyring = list(keyring or [])
        self._ciphers = {key_id(k): _datagram_key(k) for k in self.keyring}

    def seal(self, sender: str, message: Any, now_ms: int, nonce: bytes) -> bytes:
        """The datagram carrying ``message``; ValueError if it may not go as one or does
        not fit in ``MAX_DATAGRAM`` (send it over a connection instead)."""
        if not travels_by_datagram(message):
            raise ValueError(f"{_kind(message)} does not travel by datagram")
        body = wire.encode(Letter(sender, now_ms)) + wire.encode(message)
        if not self.keyring:
            out = MAGIC + bytes([PLAIN]) + body
        else:
            if len(nonce) != NONCE_BYTES:
                raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
            header = MAGIC + bytes([SEALED]) + key_id(self.keyring[0])
            cipher = self._ciphers[header[4:]]
            out = header + nonce + cipher.encrypt(nonce, body, header)
        if len(out) > MAX_DATAGRAM:
            raise ValueError(f"{len(out)} bytes do not fit in one datagram")
        return out

    def open(self, data: bytes, now_ms: int) -> tuple[str, Any]:
        """(sender, message) of a datagram; DatagramError for anything we do not take."""
        if len(data) > MAX_DATAGRAM:
            raise DatagramError(f"{len(data)} bytes, more than a datagram of ours")
        if data[:3] != MAGIC or len(data) < 4:
            raise DatagramError("not a Satellite datagram")
        version = data[3]
        if version == PLAIN:
            if self.keyring:
                raise DatagramError("not sealed, and this node expects the cluster key")
            body = data[4:]
        elif version == SEALED:
            if not self.keyring:
                raise DatagramError("sealed under a cluster key, and this node has none")
            header_end = 4 + KEY_ID_BYTES
            cipher = self._ciphers.get(bytes(data[4:header_end]))
            if cipher is None:
                raise DatagramError("sealed under another cluster key")
            nonce = bytes(data[header_end : header_end + NONCE_BYTES])
            try:
                body = cipher.decrypt(
                    nonce, bytes(data[header_end + NONCE_BYTES :]), data[:header_end]
                )
            except (InvalidTag, ValueError):
                raise DatagramError("did not open under the cluster key") from None
        else:
            raise DatagramError(f"datagram version {version}")
        letter, message = _two_frames(body)
        if type(letter) is not Letter:
            raise DatagramError(f"{type(letter).__name__} where a letter belongs")
        if not travels_by_datagram(message):
            raise DatagramError(f"{_kind(message)} does not travel by datagram")
        if self.keyring and abs(now_ms - letter.sent_ms) > MAX_AGE_MS:
            raise DatagramError(f"sent {(now_ms - letter.sent_ms) / 1000:.0f} s from now")
        return letter.sender, message


def _kind(message: Any) -> str:
    name = type(message).__name__
    if type(message) is Neighbor:
        return f"{name} of high priority"
    if type(message) is NeighborReply:
        return f"{name} accepting"
    return name


def _two_frames(body: bytes) -> tuple[Any, Any]:
    if len(body) < 4:
        raise DatagramError("no letter")
    first = 4 + int.from_bytes(body[:4], "big")
    if first > len(body):
        raise DatagramError("the letter is cut short")
    return wire.decode_frame(body[:first]), wire.decode_frame(body[first:])
