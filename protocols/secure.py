"""The cluster key: a mutual challenge-response handshake, then sealed records, sans-IO.

Every node and client of an office holds the same 32-byte key (``satellite keygen``).
A connection starts with three plaintext frames:

    initiator -> responder   AuthHello(nonce_i)
    responder -> initiator   AuthChallenge(nonce_r, key_id, proof_r)
    initiator -> responder   AuthProof(proof_i)

with ``proof_r = HMAC(K, "r" | nonce_i | nonce_r)`` and ``proof_i = HMAC(K, "i" | nonce_r |
nonce_i)``: each side proves it holds K on the other's fresh nonce, so a recorded
handshake proves nothing the next time, and neither proof can be reflected as the
other (their prefixes differ). Then each direction has its own key, derived with
HKDF-SHA256 from K and both nonces, and every record is sealed with ChaCha20-Poly1305
under a nonce that is the record's sequence number: a record replayed, reordered,
dropped from the middle or altered fails to open, and the link closes.

Key rotation, as Serf's keyring: a node holds several keys and answers with its
primary (the first); an initiator accepts any key of its ring that the responder's
``key_id`` names. Install the new key everywhere, make it primary everywhere, then
remove the old one.

Randomness comes in as arguments (the nonces), as everywhere in ``protocols/``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from protocols import wire
from protocols.aead import ChaCha20Poly1305, InvalidTag, hkdf_sha256
from protocols.wire import Blob, register

KEY_BYTES = 32
NONCE_BYTES = 16
KEY_ID_BYTES = 8
TAG_BYTES = 16
MAX_RECORD = 256 * 1024  # plaintext bytes per sealed record
_PREFIX = 4
_HANDSHAKE_FRAME = 512  # a handshake frame is small; anything bigger is not one


class SecureError(wire.WireError):
    """The handshake failed or a record did not open: close the connection."""


class WrongKey(SecureError):
    """The other side does not hold our key (or none at all)."""


@dataclass(frozen=True, slots=True)
class AuthHello:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    nonce: bytes
    key_id: bytes
    proof: bytes


@dataclass(frozen=True, slots=True)
class AuthProof:
    proof: bytes


NONCE = Blob(NONCE_BYTES, NONCE_BYTES)
register("auth_hello", AuthHello, [("nonce", "nonce", NONCE)])
register(
    "auth_challenge",
    AuthChallenge,
    [
        ("nonce", "nonce", NONCE),
        ("key_id", "key_id", Blob(KEY_ID_BYTES, KEY_ID_BYTES)),
        ("proof", "proof", Blob(32, 32)),
    ],
)
register("auth_proof", AuthProof, [("proof", "proof", Blob(32, 32))])


def format_key(key: bytes) -> str:
    """A key's text, as ``satellite keygen`` prints it and ``parse_key`` reads it. (The
    bytes come from the caller: this module draws no randomness of its own.)"""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a cluster key is {KEY_BYTES} bytes, this one {len(key)}")
    return base64.b64encode(key).decode("ascii")


def parse_key(text: str) -> bytes:
    """A key as ``satellite keygen`` prints it (base64 of 32 bytes) -> the bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a cluster key is base64 (make one with `satellite keygen`)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"a cluster key is {KEY_BYTES} bytes, this one {len(key)}")
    return key


def parse_keyring(text: str) -> list[bytes]:
    """A key file: one key per line, the primary first; blank lines and ``#`` comments."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                keys.append(parse_key(line))
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
    if not keys:
        raise ValueError("no key in it (make one with `satellite keygen`)")
    return keys


def key_id(key: bytes) -> bytes:
    """Names a key without revealing it."""
    return hmac.new(key, b"satellite key id", hashlib.sha256).digest()[:KEY_ID_BYTES]


def _proof(key: bytes, side: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(key, side + first + second, hashlib.sha256).digest()


def _derive(key: bytes, nonce_i: bytes, nonce_r: bytes, direction: bytes) -> bytes:
    return hkdf_sha256(key, KEY_BYTES, salt=nonce_i + nonce_r, info=b"satellite " + direction)


class Sealer:
    """The sending half of a channel: its key and how many records it has sealed. It can
    move to another process mid-connection (``handover``), as long as only one side
    seals at a time: the sequence numbers must not repeat."""

    def __init__(self, key: bytes, sent: int = 0) -> None:
        self.key = key
        self._aead = ChaCha20Poly1305(key)
        self.sent = sent

    def seal(self, plaintext: bytes) -> bytes:
        """Records carrying ``plaintext`` (cut in pieces of at most MAX_RECORD)."""
        out = bytearray()
        for start in range(0, max(1, len(plaintext)), MAX_RECORD):
            piece = plaintext[start : start + MAX_RECORD]
            sealed = self._aead.encrypt(self.sent.to_bytes(12, "big"), bytes(piece), None)
            self.sent += 1
            out += len(sealed).to_bytes(_PREFIX, "big") + sealed
        return bytes(out)


class Channel:
    """Sealed records both ways, once the handshake is done."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self.sealer = Sealer(send_key)
        self._receive = ChaCha20Poly1305(receive_key)
        self._received = 0
        self._buffer = bytearray()

    def seal(self, plaintext: bytes) -> bytes:
        """Records carrying ``plaintext`` (cut in pieces of at most MAX_RECORD)."""
        return self.sealer.seal(plaintext)

    def open(self, data: bytes) -> bytes:
        """The plaintext of the records completed by ``data``; SecureError if one does
        not open (altered, replayed, reordered, or sealed under another key)."""
        self._buffer += data
        out = bytearray()
        while len(self._buffer) >= _PREFIX:
            length = int.from_bytes(self._buffer[:_PREFIX], "big")
            if not TAG_BYTES <= length <= MAX_RECORD + TAG_BYTES:
                raise SecureError(f"a sealed record of {length} bytes")
            if len(self._buffer) < _PREFIX + length:
                break
            sealed = bytes(self._buffer[_PREFIX : _PREFIX + length])
            del self._buffer[: _PREFIX + length]
            try:
                out += self._receive.decrypt(self._received.to_bytes(12, "big"), sealed, None)
            except InvalidTag:
                raise SecureError(f"record {self._received} did not open") from None
            self._received += 1
        return bytes(out)

    def pending(self) -> int:
        return len(self._buffer)


class Handshake:
    """One side of the handshake. ``start()`` gives the first bytes to send (the
    initiator's hello); ``feed(data)`` gives the bytes to send in answer and, once
    ``done``, ``channel`` is ready and ``rest`` holds what came after the handshake."""

    def __init__(self, keyring: list[bytes], initiator: bool, nonce: bytes) -> None:
        if not keyring:
            raise ValueError("a handshake needs at least one key")
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
        self.keyring = list(keyring)
        self.initiator = initiator
        self.nonce = nonce
        self.peer_nonce: bytes | None = None
        self.key: bytes | None = None
        self.channel: Channel | None = None
        self.rest = b""
        self._buffer = bytearray()

    @property
    def done(self) -> bool:
        return self.channel is not None

    def start(self) -> bytes:
        return wire.encode(AuthHello(self.nonce)) if self.initiator else b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            raise SecureError("the handshake is over")
        self._buffer += data
        out = bytearray()
        while not self.done and len(self._buffer) >= _PREFIX:
            length = int.from_bytes(self._buffer[:_PREFIX], "big")
            if length > _HANDSHAKE_FRAME:
                raise WrongKey("not a handshake: it expects the cluster key")
            if len(self._buffer) < _PREFIX + length:
                break
            body = bytes(self._buffer[_PREFIX : _PREFIX + length])
            del self._buffer[: _PREFIX + length]
            try:
                message = wire.decode(body)
            except wire.WireError as exc:
                raise WrongKey(f"not a handshake ({exc}): it expects the cluster key") from None
            out += self._step(message)
        if self.done:
            self.rest = bytes(self._buffer)
            self._buffer = bytearray()
        return bytes(out)

    def _step(self, message: object) -> bytes:
        kind = type(message)
        if self.initiator and kind is AuthChallenge and self.peer_nonce is None:
            key = next((k for k in self.keyring if key_id(k) == message.key_id), None)
            if key is None:
                raise WrongKey("the other side holds another cluster key")
            expected = _proof(key, b"r", self.nonce, message.nonce)
            if not hmac.compare_digest(expected, message.proof):
                raise WrongKey("the other side could not prove it holds the cluster key")
            self.key, self.peer_nonce = key, message.nonce
            self._open(self.nonce, message.nonce)
            return wire.encode(AuthProof(_proof(key, b"i", message.nonce, self.nonce)))
        if not self.initiator and kind is AuthHello and self.peer_nonce is None:
            self.key, self.peer_nonce = self.keyring[0], message.nonce
            proof = _proof(self.key, b"r", message.nonce, self.nonce)
            return wire.encode(AuthChallenge(self.nonce, key_id(self.key), proof))
        if not self.initiator and kind is AuthProof and self.peer_nonce is not None:
            expected = _proof(self.key, b"i", self.nonce, self.peer_nonce)
            if not hmac.compare_digest(expected, message.proof):
                raise WrongKey("the other side does not hold the cluster key")
            self._open(self.peer_nonce, self.nonce)
            return b""
        reason = getattr(message, "reason", None)
        if isinstance(reason, str):  # a Refused from a node that does not use a key
            raise WrongKey(f"refused: {reason}")
        name = getattr(kind, "__name__", "?")
        raise WrongKey(f"{name} out of turn in the key handshake: it expects the cluster key")

    def _open(self, nonce_i: bytes, nonce_r: bytes) -> None:
        to_r = _derive(self.key, nonce_i, nonce_r, b"i->r")
        to_i = _derive(self.key, nonce_i, nonce_r, b"r->i")
        self.channel = Channel(to_r, to_i) if self.initiator else Channel(to_i, to_r)
