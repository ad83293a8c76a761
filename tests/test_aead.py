"""protocols/aead.py: ChaCha20-Poly1305 through this Python's OpenSSL, HKDF-SHA256 with hmac."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.aead import ChaCha20Poly1305, InvalidTag, hkdf_sha256

# RFC 8439 section 2.8.2: the AEAD construction's test vector.
RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = bytes.fromhex("070000004041424344454647")
RFC8439_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC8439_PLAIN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
RFC8439_SEALED = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
    "1ae10b594f09e26a7e902ecbd0600691"  # the tag
)


def test_the_rfc_8439_vector_seals_and_opens():
    aead = ChaCha20Poly1305(RFC8439_KEY)
    assert aead.encrypt(RFC8439_NONCE, RFC8439_PLAIN, RFC8439_AAD) == RFC8439_SEALED
    assert aead.decrypt(RFC8439_NONCE, RFC8439_SEALED, RFC8439_AAD) == RFC8439_PLAIN


def test_one_object_seals_many_messages_each_under_its_own_nonce():
    # The key is set once per context and each message only sets its nonce: a second
    # message must not carry state over from the first.
    aead = ChaCha20Poly1305(RFC8439_KEY)
    first = aead.encrypt(bytes(12), b"first", None)
    assert aead.encrypt(RFC8439_NONCE, RFC8439_PLAIN, RFC8439_AAD) == RFC8439_SEALED
    assert aead.decrypt(bytes(12), first, None) == b"first"
    assert aead.decrypt(RFC8439_NONCE, RFC8439_SEALED, RFC8439_AAD) == RFC8439_PLAIN
    assert ChaCha20Poly1305(RFC8439_KEY).encrypt(bytes(12), b"first", None) == first


@pytest.mark.parametrize(
    "change",
    [
        "flip a ciphertext bit",
        "flip a tag bit",
        "other associated data",
        "no associated data",
        "other nonce",
        "other key",
        "cut short",
        "shorter than a tag",
    ],
)
def test_anything_altered_does_not_open(change):
    aead, nonce = ChaCha20Poly1305(RFC8439_KEY), RFC8439_NONCE
    sealed, aad = RFC8439_SEALED, RFC8439_AAD
    if change == "flip a ciphertext bit":
        sealed = bytes([sealed[0] ^ 1]) + sealed[1:]
    elif change == "flip a tag bit":
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    elif change == "other associated data":
        aad = aad[:-1] + b"\x00"
    elif change == "no associated data":
        aad = None
    elif change == "other nonce":
        nonce = bytes(12)
    elif change == "other key":
        aead = ChaCha20Poly1305(bytes(32))
    elif change == "cut short":
        sealed = sealed[:-17] + sealed[-16:]
    else:
        sealed = sealed[:15]
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, sealed, aad)
    # and the object still opens what is intact afterwards
    assert ChaCha20Poly1305(RFC8439_KEY).decrypt(RFC8439_NONCE, RFC8439_SEALED, RFC8439_AAD)


def test_bad_keys_and_nonces_are_refused():
    for key in (b"", bytes(31), bytes(33), "x" * 32):
        with pytest.raises(ValueError):
            ChaCha20Poly1305(key)
    aead = ChaCha20Poly1305(bytes(32))
    for nonce in (bytes(8), bytes(16)):
        with pytest.raises(ValueError):
            aead.encrypt(nonce, b"x", None)
        with pytest.raises(ValueError):
            aead.decrypt(nonce, bytes(20), None)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    data=st.binary(max_size=2000),
    aad=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_it_agrees_with_the_cryptography_package(key, nonce, data, aad):
    reference = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    theirs = reference.ChaCha20Poly1305(key).encrypt(nonce, data, aad)
    ours = ChaCha20Poly1305(key)
    assert ours.encrypt(nonce, data, aad) == theirs
    assert ours.decrypt(nonce, theirs, aad) == data


# RFC 5869 appendix A, test cases 1 and 3.
@pytest.mark.parametrize(
    "ikm, salt, info, length, okm",
    [
        (
            b"\x0b" * 22,
            bytes(range(13)),
            bytes(range(0xF0, 0xFA)),
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            b"\x0b" * 22,
            b"",
            b"",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
)
def test_hkdf_meets_rfc_5869(ikm, salt, info, length, okm):
    assert hkdf_sha256(ikm, length, salt, info).hex() == okm


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64),
    salt=st.one_of(st.none(), st.binary(max_size=64)),
    info=st.binary(max_size=64),
    length=st.integers(1, 255 * 32),
)
def test_hkdf_agrees_with_the_cryptography_package(key, salt, info, length):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    theirs = HKDF(hashes.SHA256(), length, salt=salt, info=info).derive(key)
    assert hkdf_sha256(key, length, salt, info) == theirs


def test_hkdf_refuses_lengths_it_cannot_give():
    for length in (0, 255 * 32 + 1):
        with pytest.raises(ValueError):
            hkdf_sha256(b"k", length, None, b"")
