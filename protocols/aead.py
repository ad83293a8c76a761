"""ChaCha20-Poly1305 (RFC 8439) and HKDF-SHA256 (RFC 5869) from the OpenSSL Python already has.

The cluster key needs one AEAD cipher and one key derivation. The ``cryptography``
package has both, and costs 8.4 MiB of private memory to import and use once (measured
under Python 3.11.7 and 3.13.0: 5.6 MiB of its Rust extension mapped, the rest its
Python modules), about an eighth of a node's 64 MiB (issue 8). Python's own ``hashlib``
already loads OpenSSL's libcrypto, which has the cipher (``EVP_chacha20_poly1305``,
OpenSSL 1.1.0 and later): called here through ctypes, the same cipher costs 0.07 MiB
more. HKDF is two HMACs (RFC 5869 section 2), done with the standard library.

The interface is ``cryptography``'s (``ChaCha20Poly1305(key).encrypt(nonce, data, aad)``,
``decrypt`` raising ``InvalidTag``), and tests/test_aead.py holds both to RFC 8439's
and RFC 5869's test vectors and to each other. The library is looked up from the
``_hashlib`` extension, so it is the very libcrypto this Python was built against.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_INPUT = 1 << 30  # OpenSSL takes C ints; nothing of ours comes near

# <openssl/evp.h>
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11


class InvalidTag(Exception):
    """The data was altered, or sealed under another key, nonce or associated data."""


class CryptoUnavailable(RuntimeError):
    """This Python's OpenSSL has no ChaCha20-Poly1305 (or there is no OpenSSL)."""


_P, _INT, _BUF = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
_INT_P = ctypes.POINTER(ctypes.c_int)
_libcrypto = None
_cipher = None


def _library() -> tuple[ctypes.CDLL, int]:
    """libcrypto, with the prototypes we call declared, and the cipher; loaded once."""
    global _libcrypto, _cipher
    if _libcrypto is not None:
        return _libcrypto, _cipher
    lib = None
    try:
        import _hashlib  # its dependencies are searched too: the libcrypto it links

        lib = ctypes.CDLL(_hashlib.__file__)
        lib.EVP_CIPHER_CTX_new  # noqa: B018 - is it there?
    except (ImportError, AttributeError, OSError):
        name = ctypes.util.find_library("crypto")
        try:
            lib = ctypes.CDLL(name) if name else None
            if lib is not None:
                lib.EVP_CIPHER_CTX_new  # noqa: B018
        except (OSError, AttributeError):
            lib = None
    if lib is None:
        raise CryptoUnavailable("the cluster key needs OpenSSL's libcrypto, and none was found")
    lib.EVP_CIPHER_CTX_new.restype = _P
    lib.EVP_CIPHER_CTX_new.argtypes = []
    lib.EVP_CIPHER_CTX_free.restype = None
    lib.EVP_CIPHER_CTX_free.argtypes = [_P]
    lib.EVP_CIPHER_CTX_ctrl.restype = _INT
    lib.EVP_CIPHER_CTX_ctrl.argtypes = [_P, _INT, _INT, _P]
    for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
        getattr(lib, name).restype = _INT
        getattr(lib, name).argtypes = [_P, _P, _P, _BUF, _BUF]
    for name in ("EVP_EncryptUpdate", "EVP_DecryptUpdate"):
        getattr(lib, name).restype = _INT
        getattr(lib, name).argtypes = [_P, _P, _INT_P, _BUF, _INT]
    for name in ("EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex"):
        getattr(lib, name).restype = _INT
        getattr(lib, name).argtypes = [_P, _P, _INT_P]
    try:
        lib.EVP_chacha20_poly1305.restype = _P
        lib.EVP_chacha20_poly1305.argtypes = []
        cipher = lib.EVP_chacha20_poly1305()
    except AttributeError:
        cipher = None
    if not cipher:
        raise CryptoUnavailable("this OpenSSL has no ChaCha20-Poly1305 (1.1.0 or later has)")
    _libcrypto, _cipher = lib, cipher
    return lib, cipher


class _Context:
    """One EVP_CIPHER_CTX, keyed once; each message only sets its nonce."""

    def __init__(self, key: bytes, encrypt: bool) -> None:
        self.lib, cipher = _library()
        self.ctx = self.lib.EVP_CIPHER_CTX_new()
        if not self.ctx:
            raise MemoryError("EVP_CIPHER_CTX_new")
        init = self.lib.EVP_EncryptInit_ex if encrypt else self.lib.EVP_DecryptInit_ex
        if init(self.ctx, cipher, None, key, None) != 1:
            raise CryptoUnavailable("OpenSSL refused a ChaCha20-Poly1305 key")
        self.init = init
        self.update = self.lib.EVP_EncryptUpdate if encrypt else self.lib.EVP_DecryptUpdate
        self.final = self.lib.EVP_EncryptFinal_ex if encrypt else self.lib.EVP_DecryptFinal_ex

    def begin(self, nonce: bytes, aad: bytes | None, n: ctypes.c_int) -> bool:
        """A new message under this key: its nonce, then its associated data."""
        ok = self.init(self.ctx, None, None, None, nonce) == 1
        if ok and aad:
            aad = bytes(aad)
            ok = self.update(self.ctx, None, ctypes.byref(n), aad, len(aad)) == 1
        return ok

    def __del__(self) -> None:
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx:
            self.lib.EVP_CIPHER_CTX_free(ctx)


def _check(nonce: bytes, data: bytes, aad: bytes | None) -> None:
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
    if len(data) > MAX_INPUT or (aad is not None and len(aad) > MAX_INPUT):
        raise OverflowError("more than 1 GiB to seal or open at once")


class ChaCha20Poly1305:
    """The AEAD of RFC 8439 under one 32-byte key. Not for two threads at once (ours
    seal and open under their actor's lock)."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ValueError(f"a ChaCha20-Poly1305 key is {KEY_BYTES} bytes")
        self._key = bytes(key)
        _library()  # fail here, not at the first record
        self._sealing: _Context | None = None
        self._opening: _Context | None = None

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """``data`` sealed: the ciphertext, then the 16-byte tag."""
        nonce, data = bytes(nonce), bytes(data)
        _check(nonce, data, associated_data)
        c = self._sealing or self._context(True)
        n = _INT()
        out = ctypes.create_string_buffer(len(data) + TAG_BYTES)
        ok = c.begin(nonce, associated_data, n)
        ok = ok and c.update(c.ctx, out, ctypes.byref(n), data, len(data)) == 1
        ok = ok and n.value == len(data)
        ok = ok and c.final(c.ctx, None, ctypes.byref(n)) == 1
        tag = ctypes.addressof(out) + len(data)
        ok = ok and self._ctrl(c, _CTRL_AEAD_GET_TAG, tag) == 1
        if not ok:
            raise RuntimeError("OpenSSL failed to seal")
        return out.raw

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """The plaintext of ``data`` (ciphertext and tag); InvalidTag if it does not open."""
        nonce, data = bytes(nonce), bytes(data)
        _check(nonce, data, associated_data)
        if len(data) < TAG_BYTES:
            raise InvalidTag
        body = len(data) - TAG_BYTES
        c = self._opening or self._context(False)
        n = _INT()
        out = ctypes.create_string_buffer(max(body, 1))
        tag = ctypes.create_string_buffer(data[body:], TAG_BYTES)
        ok = c.begin(nonce, associated_data, n)
        ok = ok and c.update(c.ctx, out, ctypes.byref(n), data, body) == 1
        ok = ok and n.value == body
        ok = ok and self._ctrl(c, _CTRL_AEAD_SET_TAG, ctypes.addressof(tag)) == 1
        if not ok or c.final(c.ctx, None, ctypes.byref(n)) != 1:
            raise InvalidTag
        return out.raw[:body]

    def _context(self, encrypt: bool) -> _Context:
        c = _Context(self._key, encrypt)
        if encrypt:
            self._sealing = c
        else:
            self._opening = c
        return c

    @staticmethod
    def _ctrl(c: _Context, op: int, tag: int) -> int:
        return c.lib.EVP_CIPHER_CTX_ctrl(c.ctx, op, TAG_BYTES, tag)


def hkdf_sha256(key: bytes, length: int, salt: bytes | None, info: bytes) -> bytes:
    """RFC 5869's HKDF with SHA-256: ``length`` bytes of key material from ``key``."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-SHA256 gives 1 to 8160 bytes")
    prk = hmac.new(salt or bytes(32), key, hashlib.sha256).digest()  # extract
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):  # expand
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]
