"""Tests for protocols.wire: round trips, stream framing, strict schemas, hostile input."""

from __future__ import annotations

import dataclasses
import tracemalloc

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import wire
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
from protocols.wire import (
    MAX_FRAME,
    FrameDecoder,
    FrameTooLarge,
    MalformedFrame,
    SchemaError,
    TooDeep,
    Truncated,
    UnknownMessage,
    WireError,
    decode,
    decode_frame,
    encode,
)

# database=None: the examples are cheap to regenerate, and nothing is written to disk.
FAST = settings(max_examples=100, deadline=None, database=None)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies: written from the spec, independently of wire.py's own specs -----------------

incarnations = st.integers(0, 2**63 - 1)
ttls = st.integers(0, 255)
rounds = st.integers(0, 65535)
ids = st.binary(min_size=1, max_size=64)
payloads = st.binary(max_size=4096)
peers = st.text(min_size=1, max_size=255)  # a tree's root: any name
# What a node dials: HOST:PORT, the host any printable text without spaces.
hosts = st.text(min_size=1, max_size=249).filter(
    lambda h: h.isprintable() and not any(c.isspace() for c in h)
)
addresses = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65535))
peer_tuples = st.lists(addresses, max_size=64).map(tuple)
entries = st.lists(st.tuples(ids, rounds, peers), max_size=200).map(tuple)

MESSAGE_STRATEGIES = {
    Join: st.builds(Join, incarnations),
    ForwardJoin: st.builds(ForwardJoin, addresses, incarnations, ttls),
    Neighbor: st.builds(Neighbor, incarnations, st.booleans()),
    NeighborReply: st.builds(NeighborReply, incarnations, st.booleans()),
    Disconnect: st.builds(Disconnect, incarnations, st.booleans()),
    Shuffle: st.builds(Shuffle, addresses, ttls, peer_tuples),
    ShuffleReply: st.builds(ShuffleReply, peer_tuples),
    Gossip: st.builds(Gossip, ids, rounds, payloads, peers),
    IHave: st.builds(IHave, entries),
    Graft: st.builds(Graft, st.none() | ids, rounds, peers),
    Prune: st.builds(Prune, peers),
}
messages = st.one_of(*MESSAGE_STRATEGIES.values())


def body(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def frame(obj: object) -> bytes:
    b = body(obj)
    return len(b).to_bytes(4, "big") + b


def assert_only_wire_errors(fn, data):
    """Call ``fn(data)``; a WireError is fine, any other exception fails the test. If it
    decodes, the result must be a registered message that re-encodes to the same thing."""
    try:
        result = fn(data)
    except WireError:
        return
    results = result if isinstance(result, list) else [result]
    for message in results:
        assert decode_frame(encode(message)) == message


# --- round trips -----------------------------------------------------------------------------


def test_every_hyparview_and_plumtree_message_has_a_strategy():
    from protocols import hyparview, plumtree

    assert set(MESSAGE_STRATEGIES) == set(hyparview.MESSAGES) | set(plumtree.MESSAGES)


@pytest.mark.parametrize("cls", list(MESSAGE_STRATEGIES), ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_round_trip(cls, data):
    message = data.draw(MESSAGE_STRATEGIES[cls])
    framed = encode(message)
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4
    for decoded in (decode_frame(framed), decode(framed[4:])):
        assert type(decoded) is cls
        assert decoded == message
        for f in dataclasses.fields(decoded):
            value = getattr(decoded, f.name)
            assert not isinstance(value, list)
            if isinstance(value, tuple):
                assert all(not isinstance(v, list) for v in value)


def test_wire_layout_is_pinned():
    # The format is shared between nodes of different versions: keep it from drifting.
    cases = [
        (Join(7), {"t": "join", "inc": 7}),
        (ForwardJoin("a:1", 1, 2), {"t": "forward_join", "joiner": "a:1", "inc": 1, "ttl": 2}),
        (Neighbor(3, True), {"t": "neighbor", "inc": 3, "prio": True}),
        (NeighborReply(3, False), {"t": "neighbor_reply", "inc": 3, "accepted": False}),
        (Disconnect(4, False), {"t": "disconnect", "inc": 4, "alive": False}),
        (
            Shuffle("o:1", 5, ("x:2", "y:3")),
            {"t": "shuffle", "origin": "o:1", "ttl": 5, "nodes": ["x:2", "y:3"]},
        ),
        (ShuffleReply(("z:4",)), {"t": "shuffle_reply", "nodes": ["z:4"]}),
        (
            Gossip(b"i", 6, b"p", "a:1"),
            {"t": "gossip", "id": b"i", "round": 6, "payload": b"p", "root": "a:1"},
        ),
        (
            IHave(((b"i", 1, "a:1"), (b"j", 2, "b:2"))),
            {"t": "ihave", "entries": [[b"i", 1, "a:1"], [b"j", 2, "b:2"]]},
        ),
        (Graft(None, 9, "a:1"), {"t": "graft", "id": None, "round": 9, "root": "a:1"}),
        (Graft(b"k", 9, "a:1"), {"t": "graft", "id": b"k", "round": 9, "root": "a:1"}),
        (Prune("a:1"), {"t": "prune", "root": "a:1"}),
    ]
    for message, expected in cases:
        framed = encode(message)
        assert msgpack.unpackb(framed[4:], raw=False) == expected
        # bytes must travel as msgpack bin, not str
        assert decode(body(expected)) == message


def test_boundaries_accepted():
    longest_peer = "\U0001f600" * 255  # 4 UTF-8 bytes a char: the widest a root can be
    longest_address = "\U0001f600" * 249 + ":65535"  # and a peer address
    for message in [
        Join(2**63 - 1),
        ForwardJoin(longest_address, 0, 255),
        Shuffle(longest_address, 255, tuple(longest_address for _ in range(64))),
        Gossip(b"x" * 64, 65535, b"", longest_peer),
        # The most entries, each with the longest id and root: still within MAX_FRAME.
        IHave(tuple((bytes([i % 256]) * 64, 65535, longest_peer) for i in range(900))),
    ]:
        assert decode_frame(encode(message)) == message


# --- streaming -------------------------------------------------------------------------------


@FUZZ
@given(st.lists(messages, max_size=20), st.data())
def test_frame_decoder_reassembles_any_split(msgs, data):
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder = FrameDecoder()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out.extend(decoder.feed(stream[start:end]))
    assert out == msgs
    assert decoder.pending() == 0


@FUZZ
@given(st.lists(messages, max_size=20), st.data())
def test_whole_frames_come_out_as_they_went_in_whatever_the_split(msgs, data):
    # feed_frames gives each message's frame as sent, split_frames cuts a local stream
    # at frame boundaries: what a worker forwards is never half a frame.
    frames = [encode(m) for m in msgs]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder, buffer, split, fed = FrameDecoder(), bytearray(), [], []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        fed.extend(decoder.feed_frames(stream[start:end]))
        buffer += stream[start:end]
        whole = wire.split_frames(buffer)
        check = FrameDecoder()
        check.feed(whole)
        assert check.pending() == 0  # whole frames only, nothing cut
        split.append(whole)
    assert fed == list(zip(msgs, frames, strict=True))
    assert b"".join(split) == stream and not buffer


@FUZZ
@given(st.lists(messages, max_size=20), st.data())
def test_trusted_decoding_of_checked_frames_equals_decode_whatever_the_split(msgs, data):
    # Gossip's end of a worker's pipe: frames the worker checked, read in any pieces.
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    buffer, out = bytearray(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buffer += stream[start:end]
        got, error = wire.decode_piped(buffer)
        assert error is None
        out.extend(got)
    assert out == msgs and not buffer
    assert [type(x) for m in out for x in dataclasses.astuple(m)] == [
        type(x) for m in msgs for x in dataclasses.astuple(m)
    ]


@pytest.mark.parametrize(
    "body_bytes",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"t": "nope"}), msgpack.packb({"t": "join"})],
    ids=["not msgpack", "not a map", "unknown tag", "missing field"],
)
def test_trusted_decoding_says_what_no_worker_writes(body_bytes):
    buffer = bytearray(len(body_bytes).to_bytes(4, "big") + body_bytes)
    got, error = wire.decode_piped(buffer)
    assert got == [] and type(error) is MalformedFrame


ALL_TAGS = wire.tags_of(MESSAGE_STRATEGIES)


@FAST
@given(messages)
def test_frame_tag_reads_the_tag_of_what_encode_makes(message):
    framed = encode(message)
    assert wire.frame_tag(framed) == msgpack.unpackb(framed[4:])["t"].encode()
    assert wire.frame_tag(framed) in ALL_TAGS


@pytest.mark.parametrize(
    "obj",
    [[1, 2], {"a": 1, "t": "join"}, {"t": 5}, {"t": "x" * 40}, {}],
    ids=["not a map", "tag not first", "tag not a str", "tag longer than a fixstr", "empty"],
)
def test_frame_tag_is_none_where_encode_puts_no_tag(obj):
    assert wire.frame_tag(frame(obj)) is None
    assert wire.frame_tag(b"\x00\x00") is None  # not even a length prefix


@FUZZ
@given(st.lists(messages, max_size=20), st.data())
def test_undecoded_frames_come_whole_and_the_others_decoded_whatever_the_split(msgs, data):
    undecoded = wire.tags_of([Gossip, IHave])
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder, fed = FrameDecoder(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        fed += decoder.feed_frames(stream[start:end], undecoded)
    assert [frame for _, frame in fed] == [encode(m) for m in msgs]
    for (got, _), sent in zip(fed, msgs, strict=True):
        assert got == (None if type(sent) in (Gossip, IHave) else sent)


def test_piped_decoding_checks_the_frames_a_peer_wrote_and_keeps_what_came_before():
    good, after = encode(Prune("a:1")), encode(Graft(None, 1, "a:1"))
    bad = frame({"t": "gossip", "id": b"x", "round": "one", "payload": b"", "root": "a:1"})
    buffer = bytearray(good + bad + after)
    got, error = wire.decode_piped(buffer, ALL_TAGS)
    assert got == [Prune("a:1")] and type(error) is SchemaError and "gossip.round" in str(error)
    assert buffer == bad + after  # the stream stops there
    # Unchecked (as a worker's own frames are), the same frame passes as it is.
    got, error = wire.decode_piped(bytearray(good + bad + after))
    assert error is None and [type(m) for m in got] == [Prune, Gossip, Graft]
    assert got[1].round == "one"


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(ALL_TAGS)), st.binary(max_size=64)), max_size=8))
def test_piped_decoding_of_checked_frames_says_what_is_wrong_and_raises_nothing(bodies):
    # Anything after a tag of ours, behind a right length prefix: a map of 1 to 15
    # entries whose first key is the tag, then whatever bytes.
    tagged = [
        bytes([0x80 | (1 + len(rest) % 15), 0xA1, 0x74, 0xA0 | len(tag)]) + tag + rest
        for tag, rest in bodies
    ]
    buffer = bytearray(b"".join(len(b).to_bytes(4, "big") + b for b in tagged))
    got, error = wire.decode_piped(buffer, ALL_TAGS)
    assert error is None or isinstance(error, WireError)
    for message in got:
        assert decode_frame(encode(message)) == message


def test_frame_decoder_byte_by_byte_reports_pending():
    framed = encode(Gossip(b"id", 1, b"payload", "a:1"))
    decoder = FrameDecoder()
    for i, byte in enumerate(framed[:-1]):
        assert decoder.feed(bytes([byte])) == []
        assert decoder.pending() == i + 1
    assert decoder.feed(framed[-1:]) == [Gossip(b"id", 1, b"payload", "a:1")]
    assert decoder.pending() == 0


def test_huge_length_prefix_rejected_after_four_bytes():
    decoder = FrameDecoder()
    assert decoder.feed(b"\xff\xff\xff") == []
    assert decoder.pending() == 3
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\xff")  # 4 GiB - 1 claimed: no waiting for (or allocating) it
    assert decoder.pending() <= 4
    # the stream is out of step for good
    with pytest.raises(FrameTooLarge):
        decoder.feed(encode(Prune("a:1")))
    with pytest.raises(FrameTooLarge):
        decode_frame(b"\xff\xff\xff\xff")


def test_max_frame_is_configurable():
    message = Gossip(b"id", 0, b"x" * 200, "a:1")
    framed = encode(message)
    with pytest.raises(FrameTooLarge):
        encode(message, max_frame=100)
    with pytest.raises(FrameTooLarge):
        decode(framed[4:], max_frame=100)
    with pytest.raises(FrameTooLarge):
        decode_frame(framed, max_frame=100)
    small = FrameDecoder(max_frame=100)
    with pytest.raises(FrameTooLarge):
        small.feed(framed[:4])
    assert FrameDecoder(max_frame=len(framed) - 4).feed(framed) == [message]
    big = Gossip(b"id", 0, b"x" * MAX_FRAME, "a:1")
    with pytest.raises(FrameTooLarge):
        encode(big)
    assert decode_frame(encode(big, max_frame=2 * MAX_FRAME), max_frame=2 * MAX_FRAME) == big


def test_bad_frame_poisons_decoder_with_same_error_type():
    decoder = FrameDecoder()
    with pytest.raises(UnknownMessage):
        decoder.feed(encode(Prune("a:1")) + frame({"t": "nope"}))
    with pytest.raises(UnknownMessage):
        decoder.feed(encode(Prune("a:1")))


def test_truncated_frame():
    framed = encode(ShuffleReply(("a:1", "b:2")))
    for cut in (0, 2, 4, len(framed) - 1):
        with pytest.raises(Truncated):
            decode_frame(framed[:cut])
    decoder = FrameDecoder()
    assert decoder.feed(framed[:-1]) == []
    assert decoder.pending() == len(framed) - 1


def test_trailing_bytes_after_frame():
    with pytest.raises(MalformedFrame):
        decode_frame(encode(Prune("a:1")) + b"\x00")
    # and trailing msgpack inside a body
    b = body({"t": "prune"})
    with pytest.raises(MalformedFrame):
        decode(b + b"\xc0")


# --- schema violations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"t": "nope"},
        {"inc": 1},  # no tag at all
        {"t": 1, "inc": 1},
        {"t": None},
        {"t": b"join", "inc": 1},
    ],
)
def test_unknown_or_missing_tag(obj):
    with pytest.raises(UnknownMessage):
        decode(body(obj))


@pytest.mark.parametrize(
    "obj",
    [
        {"t": "join", "inc": True},  # bool in an int field
        {"t": "join", "inc": 1.0},
        {"t": "join", "inc": "1"},
        {"t": "join", "inc": -1},
        {"t": "join", "inc": 2**63},
        {"t": "join"},  # missing
        {"t": "join", "inc": 1, "x": 1},  # extra
        {"t": "neighbor", "inc": 1, "prio": 1},  # int in a bool field
        {"t": "neighbor", "inc": 1, "prio": None},
        {"t": "forward_join", "joiner": "a:1", "inc": 1, "ttl": -1},  # negative ttl
        {"t": "forward_join", "joiner": "a:1", "inc": 1, "ttl": 256},
        {"t": "forward_join", "joiner": "", "inc": 1, "ttl": 1},
        {"t": "forward_join", "joiner": "a" * 251 + ":7400", "inc": 1, "ttl": 1},
        {"t": "forward_join", "joiner": b"a:1", "inc": 1, "ttl": 1},
        {"t": "forward_join", "joiner": 5, "inc": 1, "ttl": 1},
        {"t": "forward_join", "joiner": "a", "inc": 1, "ttl": 1},  # not HOST:PORT
        {"t": "shuffle", "origin": "o:1", "ttl": 1, "nodes": ["a:1"] * 65},
        {"t": "shuffle", "origin": "o:1", "ttl": 1, "nodes": "ab"},
        {"t": "shuffle", "origin": "o:1", "ttl": 1, "nodes": [1]},
        {"t": "shuffle", "origin": "o:1", "ttl": 1, "nodes": ["a:1", "10.0.0.1:99999"]},
        {"t": "shuffle_reply", "nodes": ["garbage"]},
        {"t": "gossip", "id": b"x" * 65, "round": 0, "payload": b""},  # oversize id
        {"t": "gossip", "id": b"", "round": 0, "payload": b""},
        {"t": "gossip", "id": None, "round": 0, "payload": b""},  # only graft's id may be nil
        {"t": "gossip", "id": "x", "round": 0, "payload": b""},
        {"t": "gossip", "id": b"x", "round": 65536, "payload": b""},
        {"t": "gossip", "id": b"x", "round": 0, "payload": "text"},
        {"t": "graft", "id": b"x" * 65, "round": 0},
        {"t": "ihave", "entries": [[b"x", 1, 2]]},
        {"t": "ihave", "entries": [[b"x"]]},
        {"t": "ihave", "entries": [[1, b"x"]]},
        {"t": "ihave", "entries": [{"id": b"x", "round": 1}]},
        {"t": "ihave", "entries": [[b"x", 1]] * 4097},
        {"t": "prune", "extra": None},
    ],
)
def test_schema_errors(obj):
    with pytest.raises(SchemaError):
        decode(body(obj))


@pytest.mark.parametrize(
    "message",
    [
        Join(-1),
        Join(True),
        Join(2**63),
        Neighbor(1, 1),
        Disconnect(1, None),
        ForwardJoin(7, 1, 1),  # the simulator's int peers are not for the wire
        ForwardJoin("a:1", 1, 256),
        Shuffle("o:1", 1, ["a:1"]),  # a list would not round-trip to an equal message
        Shuffle("o:1", 1, ("a:1",) * 65),
        Prune("\ud800"),  # lone surrogate: not encodable as UTF-8
        # Not HOST:PORT: what a node would dial or send a datagram to.
        ForwardJoin("a", 1, 1),
        ShuffleReply(("garbage",)),
        ShuffleReply(("h:0",)),
        ShuffleReply(("h:65536",)),
        ShuffleReply((":7400",)),
        ShuffleReply(("h :7400",)),
        ShuffleReply(("h:7400 ",)),
        ShuffleReply(("h:\u0663",)),  # a digit, but not an ASCII one
        Shuffle("o", 1, ("a:1",)),
        Gossip(b"", 0, b"", "a:1"),
        Gossip(bytearray(b"x"), 0, b"", "a:1"),
        Gossip(b"x", 0, b"", ""),  # every message names its root
        Graft(b"x" * 65, 0, "a:1"),
        Prune(7),  # the simulator's int peers are not for the wire
        IHave(([b"x", 1, "a:1"],)),
        IHave(((b"x", 1),)),  # no root
        IHave(((b"x", 1, "a:1"),) * 901),
    ],
)
def test_encode_validates(message):
    with pytest.raises(SchemaError):
        encode(message)


def test_encode_unknown_objects():
    for obj in (object(), {"t": "join", "inc": 1}, None, wire):
        with pytest.raises(UnknownMessage):
            encode(obj)


# --- hostile structure -----------------------------------------------------------------------


def nested(depth: int, leaf: object = None) -> bytes:
    return b"\x91" * depth + body(leaf)  # fixarray of one element, ``depth`` times


@pytest.mark.parametrize("depth", [4, 1000, 5000])
def test_nesting_too_deep(depth):
    with pytest.raises(TooDeep):
        decode(nested(depth))
    # deep inside an otherwise valid message
    head = body({"t": "gossip", "round": 0, "payload": b""})
    deep = b"\x84" + head[1:] + body("id") + nested(depth)
    with pytest.raises(TooDeep):
        decode(deep)


def test_nesting_exactly_as_deep_as_schema_allows():
    # map > entries array > entry array is legal depth: wrong content there is a SchemaError,
    # one level more is TooDeep.
    with pytest.raises(SchemaError):
        decode(body({"t": "ihave", "entries": [[b"x", "1"]]}))
    with pytest.raises(TooDeep):
        decode(body({"t": "ihave", "entries": [[[b"x"], 1]]}))


@pytest.mark.parametrize(
    "raw",
    [
        body({"t": "gossip", "id": msgpack.ExtType(5, b"x"), "round": 0, "payload": b""}),
        body({"t": "prune", "x": msgpack.ExtType(1, b"")}),
        body(msgpack.ExtType(0, b"abc")),
        b"\xd6\xff\x00\x00\x00\x00",  # timestamp ext
        b"\x81\xc4\x01t\xa5prune",  # bin (bytes) map key
        b"\x82\xa1t\xa5prune\x01\x02",  # int map key
        body([1, 2]),  # not a map
        body("prune"),
        body(None),
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x81\xa1t\xa2\xff\xfe",  # invalid UTF-8 str
        b"\xc6\xff\xff\xff\xff",  # bin claiming 4 GiB
        b"\x81\xa1t",  # map missing its value
    ],
)
def test_malformed_bodies(raw):
    with pytest.raises(MalformedFrame):
        decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 Gi elements
        b"\xdf\x00\x01\x00\x00",  # map claiming 64 Ki pairs
        b"\xdb\x00\x01\x00\x00" + b"a" * 10,  # str longer than any field allows
        body({"t": "prune", **{str(i): i for i in range(40)}}),  # far too many keys
        body({"t": "ihave", "entries": [[b"x", 1]] * 4000, "x": [[b"x", 1]] * 4000}),
    ],
)
def test_bodies_bigger_than_any_schema(raw):
    with pytest.raises(SchemaError):
        decode(raw)


def test_hostile_headers_are_refused_before_allocating():
    # 1023 nested arrays each claiming 900 slots (the widest a field allows): msgpack
    # alone would allocate ~7 MiB.
    bomb = b"\xdc\x03\x84" * 1023
    # 4000 arrays of 255 nils: a million objects from 1 MiB.
    wide = b"\x81\xa1t\xdc\x0f\xa0" + (b"\xdc\x00\xff" + b"\xc0" * 255) * 4000
    for raw, error in [(bomb, TooDeep), (wide, SchemaError)]:
        tracemalloc.start()
        try:
            with pytest.raises(error):
                decode(raw)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 * 1024


# --- fuzzing ---------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_wire_errors(raw):
    assert_only_wire_errors(decode, raw)
    assert_only_wire_errors(decode_frame, raw)
    assert_only_wire_errors(decode_frame, len(raw).to_bytes(4, "big") + raw)
    assert_only_wire_errors(FrameDecoder().feed, raw)
    assert_only_wire_errors(FrameDecoder().feed, len(raw).to_bytes(4, "big") + raw)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255)
    ),
    min_size=1,
    max_size=5,
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, where, byte in ops:
        i = where % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, byte)
        elif buf and i < len(buf):
            if op == "flip":
                buf[i] ^= byte or 1
            else:
                del buf[i]
    return bytes(buf)


@FUZZ
@given(messages, mutations, st.data())
def test_mutated_frames_raise_only_wire_errors(message, ops, data):
    framed = mutate(encode(message), ops)
    assert_only_wire_errors(decode_frame, framed)
    assert_only_wire_errors(decode, framed[4:])
    # a stream with a good frame on each side of the damaged one
    stream = encode(Prune("a:1")) + framed + encode(Join(1))
    cut = data.draw(st.integers(0, len(stream)))
    decoder = FrameDecoder()
    assert_only_wire_errors(decoder.feed, stream[:cut])
    assert_only_wire_errors(decoder.feed, stream[cut:])


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=70)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
tags = st.sampled_from(
    [
        "join",
        "forward_join",
        "neighbor",
        "neighbor_reply",
        "disconnect",
        "shuffle",
        "shuffle_reply",
        "gossip",
        "ihave",
        "graft",
        "prune",
        "other",
    ]
)
keys = st.sampled_from(
    [
        "inc",
        "joiner",
        "ttl",
        "prio",
        "accepted",
        "alive",
        "origin",
        "nodes",
        "id",
        "round",
        "payload",
        "entries",
        "t",
        "zz",
    ]
)


@FUZZ
@given(tags, st.dictionaries(keys, values, max_size=5))
def test_hostile_maps_raise_only_wire_errors(tag, fields):
    assert_only_wire_errors(decode, body({"t": tag, **fields}))


# --- registry --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Ping:
    nonce: int
    sender: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Pong:
    nonce: int
    sender: str


def test_register_new_message_type():
    wire.register("test_ping", _Ping, [("n", "nonce", wire.UInt(10)), ("s", "sender", wire.PEER)])
    assert decode_frame(encode(_Ping(3, "me"))) == _Ping(3, "me")
    assert decode(body({"t": "test_ping", "n": 3, "s": "me"})) == _Ping(3, "me")
    with pytest.raises(SchemaError):
        encode(_Ping(11, "me"))
    with pytest.raises(ValueError):
        wire.register("test_ping", _Ping, [])
    with pytest.raises(ValueError):  # fields must cover the dataclass exactly
        wire.register("test_pong", _Pong, [("n", "nonce", wire.UInt(10))])
    with pytest.raises(ValueError):  # the tag key is reserved
        wire.register(
            "test_pong", _Pong, [("t", "nonce", wire.UInt(1)), ("s", "sender", wire.PEER)]
        )
    with pytest.raises(UnknownMessage):  # failed registrations leave nothing behind
        encode(_Pong(1, "a"))
