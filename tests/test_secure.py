"""The cluster key handshake and sealed records (protocols/secure.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import wire
from protocols.secure import (
    MAX_RECORD,
    Handshake,
    Sealer,
    SecureError,
    WrongKey,
    format_key,
    key_id,
    parse_key,
    parse_keyring,
)

K1, K2, K3 = (bytes([i]) * 32 for i in (1, 2, 3))


def shake(initiator_ring, responder_ring):
    i = Handshake(initiator_ring, True, os.urandom(16))
    r = Handshake(responder_ring, False, os.urandom(16))
    challenge = r.feed(i.start())
    proof = i.feed(challenge)
    assert r.feed(proof) == b""
    assert i.done and r.done
    return i.channel, r.channel


def test_both_sides_open_what_the_other_seals():
    a, b = shake([K1], [K1])
    assert b.open(a.seal(b"hello")) == b"hello"
    assert a.open(b.seal(b"world")) == b"world"
    big = os.urandom(3 * MAX_RECORD + 5)
    assert b.open(a.seal(big)) == big


def test_a_wrong_key_fails_on_both_sides():
    i = Handshake([K1], True, os.urandom(16))
    r = Handshake([K2], False, os.urandom(16))
    with pytest.raises(WrongKey):
        i.feed(r.feed(i.start()))  # the responder's key is not in our ring
    # A responder facing a forged proof.
    i2 = Handshake([K2], True, os.urandom(16))
    r2 = Handshake([K2], False, os.urandom(16))
    challenge = r2.feed(i2.start())
    proof = bytearray(i2.feed(challenge))
    proof[-1] ^= 1
    with pytest.raises(WrongKey):
        r2.feed(bytes(proof))


def test_rotation_any_key_of_the_ring_is_accepted_the_primary_is_used():
    # Mid-rotation: one node already has the new key as primary, the other not yet.
    a, b = shake([K1, K2], [K2, K1])
    assert b.open(a.seal(b"x")) == b"x"
    a, b = shake([K2, K1], [K1, K2])
    assert b.open(a.seal(b"y")) == b"y"
    with pytest.raises(WrongKey):
        shake([K3], [K1, K2])


def test_a_replayed_reordered_dropped_or_altered_record_does_not_open():
    a, b = shake([K1], [K1])
    r1 = a.seal(b"one")
    assert b.open(r1) == b"one"
    with pytest.raises(SecureError):
        b.open(r1)  # replayed
    a, b = shake([K1], [K1])
    r1, r2 = a.seal(b"one"), a.seal(b"two")
    with pytest.raises(SecureError):
        b.open(r2)  # reordered / the first dropped
    a, b = shake([K1], [K1])
    record = bytearray(a.seal(b"lights on"))
    record[10] ^= 0x40
    with pytest.raises(SecureError):
        b.open(bytes(record))


def test_the_sending_half_moves_to_another_sealer_and_the_records_still_open_in_order():
    # A connection worker hands its channel's sending half to Gossip: key and count.
    a, b = shake([K1], [K1])
    first = a.seal(b"before")
    moved = Sealer(a.sealer.key, a.sealer.sent)
    assert b.open(first + moved.seal(b"after")) == b"beforeafter"
    # Moved without its count, the records would repeat sequence numbers: refused.
    a, b = shake([K1], [K1])
    b.open(a.seal(b"before"))
    with pytest.raises(SecureError):
        b.open(Sealer(a.sealer.key).seal(b"after"))


def test_plaintext_at_a_keyed_responder_is_refused_as_a_wrong_key():
    from protocols import link

    r = Handshake([K1], False, os.urandom(16))
    with pytest.raises(WrongKey, match="cluster key"):
        r.feed(wire.encode(link.ClientHello(1, "nosy")))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_any_bytes_at_a_handshake_give_a_clean_error_or_wait(data, initiator):
    hs = Handshake([K1], initiator, b"\0" * 16)
    hs.start()
    try:
        hs.feed(data)
    except SecureError:
        pass
    except wire.WireError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=8), st.data())
def test_records_open_whatever_the_cut_of_the_stream(pieces, data):
    a, b = shake([K1], [K1])
    stream = b"".join(a.seal(p) for p in pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    got = b""
    last = 0
    for cut in [*cuts, len(stream)]:
        got += b.open(stream[last:cut])
        last = cut
    assert got == b"".join(pieces)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_as_records_never_open(junk):
    _, b = shake([K1], [K1])
    try:
        assert b.open(junk) == b""  # an incomplete record waits
    except SecureError:
        pass


def test_keys_parse_as_keygen_prints_them():
    import base64

    text = base64.b64encode(K1).decode()
    assert parse_key(text) == K1
    assert parse_keyring(f"# primary\n{text}\n\n{base64.b64encode(K2).decode()}  # old\n") == [
        K1,
        K2,
    ]
    for bad in ("not base64!", base64.b64encode(b"short").decode(), ""):
        with pytest.raises(ValueError):
            parse_keyring(bad)
    assert key_id(K1) != key_id(K2) and len(key_id(K1)) == 8


def test_a_formatted_key_parses_back_and_a_short_one_is_refused():
    key = bytes(range(32))
    assert parse_key(format_key(key)) == key
    with pytest.raises(ValueError):
        format_key(b"short")
