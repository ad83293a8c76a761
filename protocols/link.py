"""Messages of the node's own links (peer connections and the client port), and the
event an Antenna publishes, registered with the wire format.

Client data is arbitrary msgpack inside a ``bytes`` field, so the wire's strict
schemas stay strict while users publish whatever they like.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.wire import INCARNATION, PEER_ADDRESS, Blob, Bool, Seq, Text, UInt, register

PROTOCOL_VERSION = 1  # the client port's (ClientHello, Welcome)
# The peer links' (Hello). 2: Plumtree's messages name their root (one tree per sender,
# protocols/plumtree.py); a node of version 1 is refused with one line, not misread.
PEER_PROTOCOL_VERSION = 2
NAME = Text(1, 255)


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on a peer connection, both ways: who is at the other end."""

    version: int
    node: str  # the node id, for people
    peer: str  # host:port of its peer port: its identity in the overlay
    incarnation: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Keepalive on an idle peer link: a dead link is a membership event."""


@dataclass(frozen=True, slots=True)
class Event:
    """What travels inside a Plumtree GOSSIP: a named event from one node."""

    name: str
    data: bytes  # msgpack of the publisher's value
    origin: str  # node id of the publisher


# -- the client protocol (Antenna <-> node) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientHello:
    version: int
    client: str


@dataclass(frozen=True, slots=True)
class Welcome:
    version: int
    node: str
    peer: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    names: tuple  # event names; "*" for all


@dataclass(frozen=True, slots=True)
class Publish:
    req: int
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Request:
    req: int
    what: str  # "members" | "topology"


@dataclass(frozen=True, slots=True)
class Reply:
    req: int
    ok: int  # 1 ok, 0 error (then body is an error message, utf-8)
    body: bytes  # msgpack


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event pushed to a subscribed client."""

    name: str
    data: bytes
    origin: str
    id: bytes


REQ = UInt((1 << 32) - 1)
register(
    "hello",
    Hello,
    [
        ("v", "version", UInt(65535)),
        ("node", "node", NAME),
        ("peer", "peer", PEER_ADDRESS),
        ("inc", "incarnation", INCARNATION),
    ],
)
register("ping", Ping, [])
register(
    "event", Event, [("name", "name", NAME), ("data", "data", Blob()), ("origin", "origin", NAME)]
)
register("client_hello", ClientHello, [("v", "version", UInt(65535)), ("client", "client", NAME)])
register(
    "welcome",
    Welcome,
    [("v", "version", UInt(65535)), ("node", "node", NAME), ("peer", "peer", PEER_ADDRESS)],
)
register("refused", Refused, [("reason", "reason", Text(1, 1000))])
register("subscribe", Subscribe, [("names", "names", Seq(NAME, 256))])
register(
    "publish", Publish, [("req", "req", REQ), ("name", "name", NAME), ("data", "data", Blob())]
)
register("request", Request, [("req", "req", REQ), ("what", "what", NAME)])
register("reply", Reply, [("req", "req", REQ), ("ok", "ok", UInt(1)), ("body", "body", Blob())])
register(
    "delivery",
    Delivery,
    [
        ("name", "name", NAME),
        ("data", "data", Blob()),
        ("origin", "origin", NAME),
        ("id", "id", Blob(1, 64)),
    ],
)


@dataclass(frozen=True, slots=True)
class StateDelta:
    """Inside a Plumtree GOSSIP: replication entries (``protocols.replication``) as msgpack."""

    entries: bytes


@dataclass(frozen=True, slots=True)
class SetTarget:
    """Client: set target ``name`` to the msgpack value ``data``; the Reply comes once it
    is durable on this node."""

    req: int
    name: str
    data: bytes


register("state_delta", StateDelta, [("entries", "entries", Blob())])
register(
    "set_target",
    SetTarget,
    [("req", "req", REQ), ("name", "name", NAME), ("data", "data", Blob())],
)


@dataclass(frozen=True, slots=True)
class StateDigest:
    """Anti-entropy, first step: a hash per entry (msgpack); ``reply`` asks for the
    peer's own digest back, so both sides learn what the other lacks."""

    digest: bytes
    reply: bool


@dataclass(frozen=True, slots=True)
class StateEntries:
    """Anti-entropy, second step: the entries that differ (msgpack)."""

    entries: bytes


register("state_digest", StateDigest, [("digest", "digest", Blob()), ("reply", "reply", Bool())])
register("state_entries", StateEntries, [("entries", "entries", Blob())])


@dataclass(frozen=True, slots=True)
class Control:
    """Client: an operator's command to the node (``join`` a seed, ``block`` peers for a
    partition drill); ``args`` is msgpack. The Reply carries the outcome."""

    req: int
    command: str
    args: bytes


register(
    "control",
    Control,
    [("req", "req", REQ), ("command", "command", NAME), ("args", "args", Blob())],
)


# -- a connection worker to Gossip, on the node's own pipe between them --------------------
# Never accepted from a peer or a client: their workers close a link that sends one.


@dataclass(frozen=True, slots=True)
class Handover:
    """The worker hands the sending side of its connection to Gossip: the socket comes
    with this frame (SCM_RIGHTS), and ``key``/``sealed`` are the channel's sending half
    (no key: b"" and 0). From then on only Gossip writes to the connection, so that a
    broadcast hop wakes the receiving worker and Gossip, not a third process to send."""

    key: bytes
    sealed: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """After the handover, frames of the worker's own (its pings and replies, the
    membership messages it was given) for Gossip to write; ``close``: close the
    connection once they are written."""

    frames: bytes
    close: bool


register("handover", Handover, [("key", "key", Blob(0, 32)), ("sealed", "sealed", UInt(1 << 62))])
register("outgoing", Outgoing, [("frames", "frames", Blob()), ("close", "close", Bool())])
