"""The wire format: length-prefixed msgpack frames carrying protocol messages.

A frame is a 4-byte big-endian unsigned body length followed by exactly one
msgpack map. The map holds a type tag under ``"t"`` plus the message's fields
under short keys. Every message type has a strict schema (exact types, bounds,
no missing or extra keys), checked on decode and on encode, so a peer can never
hand the protocols a value they did not expect.

Input is untrusted: decoding arbitrary bytes raises only ``WireError``
subclasses, and msgpack limits keep a hostile body from making it allocate
much more than the body itself. No pickle, ever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from protocols.hyparview import (
    Disconnect,
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
    Shuffle,
    ShuffleReply,
)
from protocols.plumtree import Gossip, Graft, IHave, Prune

MAX_FRAME = 1 << 20
"""Default limit on a frame body, in bytes."""

TAG = "t"
"""The map key holding the message type tag."""

_PREFIX = 4
_LENGTH_LIMIT = (1 << 32) - 1  # what a 4-byte prefix can express


# --- errors ----------------------------------------------------------------------------------


class WireError(Exception):
    """Base of every error raised while encoding or decoding frames."""


class FrameTooLarge(WireError):
    """A frame (claimed or actual) is longer than the limit."""


class Truncated(WireError):
    """The input ends before the frame does."""


class MalformedFrame(WireError):
    """Not msgpack, not a map, ext types, non-str keys, msgpack limits, or trailing data."""


class UnknownMessage(WireError):
    """No (or an unregistered) type tag, or an object of an unregistered class."""


class SchemaError(WireError):
    """A field is missing, extra, of the wrong type, or out of bounds."""


class TooDeep(WireError):
    """Containers nested deeper than any schema allows."""


# --- field specs -----------------------------------------------------------------------------
# A spec converts one field between its Python value (``dump``) and its msgpack value
# (``load``), validating both ways. Its class attributes bound what a valid value can look
# like in msgpack, so decoding can refuse anything bigger before building it.


class Spec:
    """Base of field specs."""

    depth = 0  # containers nested
    objects = 1  # msgpack objects, containers included
    max_str = 0  # longest str, in UTF-8 bytes
    max_array = 0  # longest array

    def load(self, value: Any) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        raise NotImplementedError


class UInt(Spec):
    """An ``int`` (never a ``bool``) in ``0..hi``."""

    def __init__(self, hi: int) -> None:
        self.hi = hi

    def load(self, value: Any) -> int:
        if type(value) is not int:  # `type is`, since bool is an int subclass
            raise SchemaError(f"expected int, got {type(value).__name__}")
        if not 0 <= value <= self.hi:
            raise SchemaError(f"{value} not in 0..{self.hi}")
        return value

    dump = load


class Bool(Spec):
    """A ``bool`` (never an ``int``)."""

    def load(self, value: Any) -> bool:
        if type(value) is not bool:
            raise SchemaError(f"expected bool, got {type(value).__name__}")
        return value

    dump = load


class Text(Spec):
    """A ``str`` of ``lo..hi`` characters."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.max_str = 4 * hi  # UTF-8 takes up to 4 bytes a char

    def load(self, value: Any) -> str:
        if type(value) is not str:
            raise SchemaError(f"expected str, got {type(value).__name__}")
        if not self.lo <= len(value) <= self.hi:
            raise SchemaError(f"str of {len(value)} chars not in {self.lo}..{self.hi}")
        return value

    dump = load


def is_peer_address(text: str) -> bool:
    """Whether ``text`` is HOST:PORT as a node dials it: a host of printable characters
    without spaces, a colon, and a port of 1-65535 in decimal."""
    host, colon, port = text.rpartition(":")
    return (
        bool(colon and host)
        and host.isprintable()
        and not any(c.isspace() for c in host)
        and port.isdigit()
        and port.isascii()
        and len(port) <= 5
        and 0 < int(port) < 65536
    )


class PeerAddress(Text):
    """A peer address that a node dials or sends a datagram to (HOST:PORT): a peer's
    Hello, a datagram's sender, the nodes of a join or a shuffle. Anything else there
    would make a node's Membership fail on the send (found by reading the code), and a
    shuffle or the stored state could bring the address back."""

    def load(self, value: Any) -> str:
        Text.load(self, value)
        if not is_peer_address(value):
            raise SchemaError(f"not a HOST:PORT peer address: {value[:80]!r}")
        return value

    dump = load


class Blob(Spec):
    """``bytes`` of ``lo..hi`` bytes; ``hi=None`` leaves only the frame limit."""

    def __init__(self, lo: int = 0, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi

    def load(self, value: Any) -> bytes:
        if type(value) is not bytes:
            raise SchemaError(f"expected bytes, got {type(value).__name__}")
        if len(value) < self.lo or (self.hi is not None and len(value) > self.hi):
            raise SchemaError(f"{len(value)} bytes not in {self.lo}..{self.hi}")
        return value

    dump = load


class Nullable(Spec):
    """``None`` or a value of ``inner``."""

    def __init__(self, inner: Spec) -> None:
        self.inner = inner
        self.depth, self.objects = inner.depth, inner.objects
        self.max_str, self.max_array = inner.max_str, inner.max_array

    def load(self, value: Any) -> Any:
        return None if value is None else self.inner.load(value)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


class Seq(Spec):
    """A tuple of at most ``max_len`` items of ``item``; an array on the wire."""

    def __init__(self, item: Spec, max_len: int) -> None:
        self.item, self.max_len = item, max_len
        self.depth = 1 + item.depth
        self.objects = 1 + max_len * item.objects
        self.max_str, self.max_array = item.max_str, max(max_len, item.max_array)

    def _check(self, value: Any, kind: type) -> None:
        if type(value) is not kind:
            raise SchemaError(f"expected {kind.__name__}, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise SchemaError(f"{len(value)} items, more than {self.max_len}")

    def load(self, value: Any) -> tuple:
        self._check(value, list)
        return tuple(self.item.load(v) for v in value)

    def dump(self, value: Any) -> list:
        # Tuples only, so that decode(encode(m)) == m exactly.
        self._check(value, tuple)
        return [self.item.dump(v) for v in value]


class Fixed(Spec):
    """A tuple with one item per spec in ``items``; an array on the wire."""

    def __init__(self, *items: Spec) -> None:
        self.items = items
        self.depth = 1 + max((s.depth for s in items), default=0)
        self.objects = 1 + sum(s.objects for s in items)
        self.max_str = max((s.max_str for s in items), default=0)
        self.max_array = max([len(items), *(s.max_array for s in items)])

    def _check(self, value: Any, kind: type) -> None:
        if type(value) is not kind:
            raise SchemaError(f"expected {kind.__name__}, got {type(value).__name__}")
        if len(value) != len(self.items):
            raise SchemaError(f"{len(value)} items, expected {len(self.items)}")

    def load(self, value: Any) -> tuple:
        self._check(value, list)
        return tuple(s.load(v) for s, v in zip(self.items, value, strict=True))

    def dump(self, value: Any) -> list:
        self._check(value, tuple)
        return [s.dump(v) for s, v in zip(self.items, value, strict=True)]


INCARNATION = UInt((1 << 63) - 1)
TTL = UInt(255)
ROUND = UInt(65535)
MSG_ID = Blob(1, 64)
PAYLOAD = Blob()
# A tree's root names a node but is never dialled: checked for its length only (an IHAVE
# carries up to 900, on the path every event takes).
PEER = Text(1, 255)
PEER_ADDRESS = PeerAddress(1, 255)  # what a node dials or sends a datagram to
PEERS = Seq(PEER_ADDRESS, 64)
IHAVE_ENTRIES = Seq(Fixed(MSG_ID, ROUND, PEER), 900)  # (id, round, root): fits MAX_FRAME


# --- registry --------------------------------------------------------------------------------

Field = tuple[str, str, Spec]
"""``(wire key, dataclass attribute, spec)``."""

_BY_TAG: dict[str, tuple[type, tuple[Field, ...]]] = {}
_BY_CLASS: dict[type, tuple[str, tuple[Field, ...]]] = {}

# Decoding limits, derived from the registered schemas so new types widen them as needed.
_limits = {"str": 0, "array": 0, "map": 0, "depth": 0, "objects": 0}
_SLACK = 16  # a few unexpected keys still get a SchemaError naming them


def register(tag: str, cls: type, fields: Sequence[Field]) -> None:
    """Make ``cls`` encodable and decodable under ``tag``; ``fields`` must name every
    dataclass field of ``cls`` exactly once. Raises ``ValueError`` on a clash."""
    fields = tuple(fields)
    keys = [key for key, _, _ in fields]
    attrs = {attr for _, attr, _ in fields}
    if tag in _BY_TAG or cls in _BY_CLASS:
        raise ValueError(f"{tag!r} or {cls.__name__} already registered")
    if TAG in keys or len(set(keys)) != len(keys):
        raise ValueError(f"{tag!r}: duplicate or reserved key in {keys}")
    if attrs != {f.name for f in dataclasses.fields(cls)} or len(attrs) != len(fields):
        raise ValueError(f"{tag!r}: fields do not match the attributes of {cls.__name__}")
    _BY_TAG[tag] = (cls, fields)
    _BY_CLASS[cls] = (tag, fields)

    specs = [spec for _, _, spec in fields]
    names = [len(name.encode()) for name in [TAG, tag, *keys]]
    needs = {
        "str": max([*names, *(s.max_str for s in specs)]),
        "array": max((s.max_array for s in specs), default=0),
        "map": 1 + len(fields) + _SLACK,
        "depth": 1 + max((s.depth for s in specs), default=0),
        # the map, its tag key and value, then a key and a value per field
        "objects": 3 + sum(1 + s.objects for s in specs) + 2 * _SLACK,
    }
    for name, need in needs.items():
        _limits[name] = max(_limits[name], need)


register("join", Join, [("inc", "incarnation", INCARNATION)])
register(
    "forward_join",
    ForwardJoin,
    [("joiner", "joiner", PEER_ADDRESS), ("inc", "incarnation", INCARNATION), ("ttl", "ttl", TTL)],
)
register(
    "neighbor", Neighbor, [("inc", "incarnation", INCARNATION), ("prio", "high_priority", Bool())]
)
register(
    "neighbor_reply",
    NeighborReply,
    [("inc", "incarnation", INCARNATION), ("accepted", "accepted", Bool())],
)
register(
    "disconnect", Disconnect, [("inc", "incarnation", INCARNATION), ("alive", "alive", Bool())]
)
register(
    "shuffle",
    Shuffle,
    [("origin", "origin", PEER_ADDRESS), ("ttl", "ttl", TTL), ("nodes", "nodes", PEERS)],
)
register("shuffle_reply", ShuffleReply, [("nodes", "nodes", PEERS)])
register(
    "gossip",
    Gossip,
    [
        ("id", "id", MSG_ID),
        ("round", "round", ROUND),
        ("payload", "payload", PAYLOAD),
        ("root", "root", PEER),
    ],
)
register("ihave", IHave, [("entries", "entries", IHAVE_ENTRIES)])
register(
    "graft",
    Graft,
    [("id", "id", Nullable(MSG_ID)), ("round", "round", ROUND), ("root", "root", PEER)],
)
register("prune", Prune, [("root", "root", PEER)])


# --- encoding --------------------------------------------------------------------------------


def encode(message: Any, *, max_frame: int = MAX_FRAME) -> bytes:
    """Return the whole frame (length prefix and body) for ``message``."""
    entry = _BY_CLASS.get(type(message))
    if entry is None:
        raise UnknownMessage(f"cannot encode {type(message).__name__}")
    tag, fields = entry
    wire: dict[str, Any] = {TAG: tag}
    for key, attr, spec in fields:
        try:
            wire[key] = spec.dump(getattr(message, attr))
        except SchemaError as e:
            raise SchemaError(f"{tag}.{key}: {e}") from None
    try:
        body = msgpack.packb(wire, use_bin_type=True)
    except Exception as e:  # e.g. a str with lone surrogates is not valid UTF-8
        raise SchemaError(f"{tag}: cannot pack: {e}") from e
    if len(body) > min(max_frame, _LENGTH_LIMIT):
        raise FrameTooLarge(f"{tag}: body of {len(body)} bytes exceeds {max_frame}")
    return len(body).to_bytes(_PREFIX, "big") + body


# --- decoding --------------------------------------------------------------------------------


class _ExtRejected(Exception):
    pass


def _reject_ext(code: int, data: bytes) -> Any:
    raise _ExtRejected(f"ext type {code}")


# Header-only msgpack walk. msgpack itself allocates a container as soon as it reads its
# header (a 3-byte header can claim 4096 slots, and its stack allows 1024 levels), so the
# body's shape is checked against the limits first, without building anything.
_SCALAR_SIZE = {
    0xC0: 0,
    0xC2: 0,
    0xC3: 0,
    0xCA: 4,
    0xCB: 8,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
}
_SIZED = {
    0xC4: ("bin", 1),
    0xC5: ("bin", 2),
    0xC6: ("bin", 4),
    0xD9: ("str", 1),
    0xDA: ("str", 2),
    0xDB: ("str", 4),
    0xDC: ("array", 2),
    0xDD: ("array", 4),
    0xDE: ("map", 2),
    0xDF: ("map", 4),
}


def _scan(body: bytes) -> None:
    limits = _limits
    end = len(body)
    pos = 0
    budget = limits["objects"]
    todo = [1]  # objects still to read in each open container; the first is the top level
    while todo:
        if not todo[-1]:
            todo.pop()
            continue
        todo[-1] -= 1
        budget -= 1
        if budget < 0:
            raise SchemaError(f"more than {limits['objects']} objects, more than any message")
        if pos >= end:
            raise MalformedFrame("incomplete msgpack")
        head = body[pos]
        pos += 1
        if head <= 0x7F or head >= 0xE0:  # fixints
            continue
        if head in _SCALAR_SIZE:
            pos += _SCALAR_SIZE[head]
            continue
        if head <= 0x8F:
            kind, n = "map", head & 0x0F
        elif head <= 0x9F:
            kind, n = "array", head & 0x0F
        elif head <= 0xBF:
            kind, n = "str", head & 0x1F
        elif head in _SIZED:
            kind, width = _SIZED[head]
            if pos + width > end:
                raise MalformedFrame("incomplete msgpack")
            n = int.from_bytes(body[pos : pos + width], "big")
            pos += width
        else:
            raise MalformedFrame(f"msgpack ext type or unused byte 0x{head:02x}")
        if kind == "bin":
            pos += n  # the body length, already capped, bounds it
        elif kind == "str":
            if n > limits["str"]:
                raise SchemaError(f"str of {n} bytes, longer than any field allows")
            pos += n
        else:
            if len(todo) > limits["depth"]:
                raise TooDeep(f"containers nested deeper than {limits['depth']}")
            if n > limits[kind]:
                raise SchemaError(f"{kind} of {n} entries, more than any field allows")
            todo.append(2 * n if kind == "map" else n)
    if pos > end:
        raise MalformedFrame("incomplete msgpack")
    if pos < end:
        raise MalformedFrame("trailing data after the msgpack map")


def _unpack(body: bytes, max_frame: int) -> Any:
    _scan(body)
    # The same limits again, so msgpack never relies on the scan alone. The caller has capped
    # the body at max_frame, which is what Unpacker's max_buffer_size would do.
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            max_ext_len=0,
            max_str_len=_limits["str"],
            max_bin_len=max_frame,
            max_array_len=_limits["array"],
            max_map_len=_limits["map"],
        )
    except (msgpack.StackError, RecursionError) as e:
        raise TooDeep("nesting exceeds the msgpack stack") from e
    except msgpack.ExtraData as e:
        raise MalformedFrame("trailing data after the msgpack map") from e
    except _ExtRejected as e:
        raise MalformedFrame(f"msgpack ext types are not allowed ({e})") from e
    except Exception as e:  # msgpack's failures are not a closed set of types
        raise MalformedFrame(f"not valid msgpack: {type(e).__name__}: {e}") from e


def decode(body: bytes, *, max_frame: int = MAX_FRAME) -> Any:
    """Decode one frame body (without the length prefix) into a message."""
    if len(body) > max_frame:
        raise FrameTooLarge(f"body of {len(body)} bytes exceeds {max_frame}")
    obj = _unpack(body, max_frame)
    if type(obj) is not dict:
        raise MalformedFrame(f"top level is {type(obj).__name__}, not a map")
    if any(type(k) is not str for k in obj):
        raise MalformedFrame("map keys must be str")
    tag = obj.get(TAG)
    entry = _BY_TAG.get(tag) if type(tag) is str else None
    if entry is None:
        raise UnknownMessage(f"unknown message tag {tag!r}"[:200])
    cls, fields = entry
    expected = {key for key, _, _ in fields}
    got = obj.keys() - {TAG}
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise SchemaError(f"{tag}: missing keys {missing}, extra keys {extra}"[:300])
    values = {}
    for key, attr, spec in fields:
        try:
            values[attr] = spec.load(obj[key])
        except SchemaError as e:
            raise SchemaError(f"{tag}.{key}: {e}") from None
    return cls(**values)


def decode_frame(data: bytes, *, max_frame: int = MAX_FRAME) -> Any:
    """Decode exactly one complete frame (length prefix and body)."""
    if len(data) < _PREFIX:
        raise Truncated(f"{len(data)} bytes, the length prefix needs {_PREFIX}")
    length = int.from_bytes(data[:_PREFIX], "big")
    if length > max_frame:
        raise FrameTooLarge(f"frame claims {length} bytes, limit {max_frame}")
    end = _PREFIX + length
    if len(data) < end:
        raise Truncated(f"frame claims {length} bytes, only {len(data) - _PREFIX} present")
    if len(data) > end:
        raise MalformedFrame(f"{len(data) - end} bytes after the frame")
    return decode(bytes(data[_PREFIX:end]), max_frame=max_frame)


class FrameDecoder:
    """Incremental decoder for one byte stream (one connection).

    After any error the stream is out of step and cannot be resynchronised, so the
    decoder stays failed: every later ``feed`` raises the same error type. Messages
    decoded earlier in the failing ``feed`` call are dropped with the stream.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 0 < max_frame <= _LENGTH_LIMIT:
            raise ValueError(f"max_frame must be in 1..{_LENGTH_LIMIT}")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._error: WireError | None = None

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes from the stream; return the messages completed by them, in order."""
        return [message for message, _ in self.feed_frames(data)]

    def feed_frames(
        self, data: bytes, undecoded: frozenset[bytes] = frozenset()
    ) -> list[tuple[Any, bytes]]:
        """As ``feed``, with each message's whole frame beside it (to pass it on as it
        came, without encoding it again). A frame whose tag (``frame_tag``) is in
        ``undecoded`` comes with None for its message: not decoded, so not checked (for a
        reader that only passes it on, to where it is decoded with ``decode``)."""
        if self._error is not None:
            raise type(self._error)(f"decoder failed earlier: {self._error}")
        self._buffer += data
        messages = []
        try:
            while len(self._buffer) >= _PREFIX:
                length = int.from_bytes(self._buffer[:_PREFIX], "big")
                # Checked before waiting for the body, so a huge claim costs nothing.
                if length > self.max_frame:
                    raise FrameTooLarge(f"frame claims {length} bytes, limit {self.max_frame}")
                end = _PREFIX + length
                if len(self._buffer) < end:
                    break
                frame = bytes(self._buffer[:end])
                del self._buffer[:end]
                if undecoded and frame_tag(frame) in undecoded:
                    messages.append((None, frame))
                else:
                    messages.append((decode(frame[_PREFIX:], max_frame=self.max_frame), frame))
        except WireError as e:
            self._error = e
            self._buffer = bytearray()  # nothing in it can be used any more
            raise
        return messages

    def pending(self) -> int:
        """Bytes buffered towards a frame not yet complete."""
        return len(self._buffer)


def tags_of(classes: Iterable[type]) -> frozenset[bytes]:
    """The type tags of registered message classes, as ``frame_tag`` reads them."""
    return frozenset(_BY_CLASS[cls][0].encode() for cls in classes)


def frame_tag(frame: bytes) -> bytes | None:
    """The type tag of a whole frame, read from where ``encode`` puts it (a map of at most
    15 entries whose first key is ``TAG``, its value a short str) without decoding the
    frame; None if it is not there. What a peer wrote there says nothing of the rest of
    its frame: only ``decode`` does."""
    return _tag_at(frame, _PREFIX)


_TAG_KEY = msgpack.packb(TAG)  # b"\xa1t": the key as encode writes it


def _tag_at(data: bytes, at: int) -> bytes | None:
    if (
        len(data) < at + 4
        or not 0x80 <= data[at] <= 0x8F  # fixmap
        or data[at + 1 : at + 3] != _TAG_KEY
        or not 0xA0 <= data[at + 3] <= 0xBF  # the tag, a fixstr
    ):
        return None
    return data[at + 4 : at + 4 + (data[at + 3] & 0x1F)]


def decode_piped(
    buffer: bytearray, checked: frozenset[bytes] = frozenset(), max_frame: int = MAX_FRAME
) -> tuple[list[Any], WireError | None]:
    """The messages of the whole frames at the front of ``buffer``, taken off it (what is
    left is the start of a frame still on its way), from a local stream: Gossip's end of
    a worker's pipe.

    The frames whose tag (``frame_tag``) is in ``checked`` get every check of ``decode``
    (with ``max_frame``): a peer wrote them, and the worker passed them on undecoded
    (``FrameDecoder.feed_frames(undecoded=...)``). The others the worker decoded before
    passing them on as they came, or wrote itself, and are not checked again (checking
    them was about a tenth of Gossip's CPU per broadcast); msgpack builds arrays as
    tuples, which is what the specs' ``load`` makes of them, so the messages equal
    ``decode``'s. One that no worker writes gives ``MalformedFrame``: a bug at the other
    end.

    Returns the messages up to the first frame that fails, and its error (None if none
    did); the frames from that one on stay in ``buffer``: the stream is done with."""
    messages: list[Any] = []
    done = 0
    for start, end in _whole_frames(buffer):
        body = bytes(buffer[start:end])
        if checked and _tag_at(body, 0) in checked:
            try:
                messages.append(decode(body, max_frame=max_frame))
            except WireError as e:
                del buffer[:done]
                return messages, e
        else:
            try:
                obj = msgpack.unpackb(body, raw=False, use_list=False)
                cls, fields = _BY_TAG[obj[TAG]]
                messages.append(cls(**{attr: obj[key] for key, attr, _ in fields}))
            except Exception as e:  # msgpack's failures are not a closed set of types
                del buffer[:done]
                return messages, MalformedFrame(
                    f"not a frame our workers write: {type(e).__name__}: {e}"
                )
        done = end
    del buffer[:done]
    return messages, None


def _whole_frames(buffer: bytearray) -> list[tuple[int, int]]:
    """Where the body of each frame wholly in ``buffer`` lies, from the front."""
    spans: list[tuple[int, int]] = []
    end = 0
    while len(buffer) - end >= _PREFIX:
        length = int.from_bytes(buffer[end : end + _PREFIX], "big")
        if len(buffer) - end - _PREFIX < length:
            break
        spans.append((end + _PREFIX, end + _PREFIX + length))
        end += _PREFIX + length
    return spans


def split_frames(buffer: bytearray) -> bytes:
    """Take the whole frames at the front of ``buffer`` off it, undecoded (what is left
    is the start of a frame still on its way). For trusted local streams only: the
    lengths are not checked against a limit."""
    spans = _whole_frames(buffer)
    end = spans[-1][1] if spans else 0
    frames = bytes(buffer[:end])
    del buffer[:end]
    return frames


__all__ = [
    "MAX_FRAME",
    "TAG",
    "WireError",
    "FrameTooLarge",
    "Truncated",
    "MalformedFrame",
    "UnknownMessage",
    "SchemaError",
    "TooDeep",
    "Spec",
    "UInt",
    "Bool",
    "Text",
    "Blob",
    "Nullable",
    "Seq",
    "Fixed",
    "Field",
    "INCARNATION",
    "TTL",
    "ROUND",
    "MSG_ID",
    "PAYLOAD",
    "PEER",
    "PEER_ADDRESS",
    "PeerAddress",
    "is_peer_address",
    "PEERS",
    "IHAVE_ENTRIES",
    "register",
    "encode",
    "decode",
    "decode_frame",
    "FrameDecoder",
    "frame_tag",
    "tags_of",
    "decode_piped",
    "split_frames",
]
