"""Coverage-guided fuzzing of what a network peer can make a node parse (issue 7), with
atheris (libFuzzer for Python), where it installs.

    python bench/fuzz.py wire      [--seconds 60] [--corpus DIR]
    python bench/fuzz.py handshake [--seconds 60] [--corpus DIR]

``wire``: the bytes go to ``protocols.wire.FrameDecoder`` in pieces whose sizes the input
chooses (as TCP would cut them), and whole to ``decode_frame``. ``handshake``: the bytes
are what the other side of a key handshake sends, to a responder and an initiator, and
then sealed records on an established channel. Any exception other than ``WireError``
(``SecureError`` is one) is a bug: atheris prints the input that caused it (and saves it
beside the corpus) and the run exits non-zero. The corpus starts from real frames and
handshake messages, so mutations begin inside valid structure rather than at noise.
Hypothesis covers the same code with structured inputs (tests/test_wire.py, test_secure.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocols import hyparview, link, plumtree, secure, wire  # noqa: E402

KEY = bytes(range(32))
MAX_FRAME = 64 * 1024  # small, so length checks are hit as often as bodies


def _pieces(data: bytes) -> list[bytes]:
    """Cut ``data`` after its first byte into pieces of sizes 1..16 chosen by that byte."""
    if not data:
        return []
    step, rest = data[0] % 16 + 1, data[1:]
    return [rest[i : i + step] for i in range(0, len(rest), step)]


def fuzz_wire(data: bytes) -> None:
    decoder = wire.FrameDecoder(MAX_FRAME)
    try:
        for piece in _pieces(data):
            decoder.feed(piece)
    except wire.WireError:
        pass
    try:
        wire.decode_frame(data[1:], max_frame=MAX_FRAME)
    except wire.WireError:
        pass


def fuzz_handshake(data: bytes) -> None:
    for initiator in (False, True):
        shake = secure.Handshake([KEY], initiator, bytes(16))
        try:
            if initiator:
                shake.start()
            for piece in _pieces(data):
                shake.feed(piece)
        except wire.WireError:
            pass
    # An established channel, fed records it did not seal.
    sender = secure.Channel(KEY, KEY)
    receiver = secure.Channel(KEY, KEY)
    try:
        receiver.open(sender.seal(b"hello"))
        for piece in _pieces(data):
            receiver.open(piece)
    except wire.WireError:
        pass


TARGETS = {"wire": fuzz_wire, "handshake": fuzz_handshake}


def seeds(target: str) -> list[bytes]:
    """Valid inputs to start from, with a leading piece-size byte."""
    if target == "wire":
        messages = [
            link.Hello(link.PEER_PROTOCOL_VERSION, "desk-1", "127.0.0.1:7401", 3),
            link.Ping(),
            hyparview.Join(1),
            hyparview.Shuffle("127.0.0.1:7402", 3, ("127.0.0.1:7403", "127.0.0.1:7404")),
            plumtree.Gossip(
                bytes(16), 2, wire.encode(link.Event("lights", b"\x01", "desk-1")), "10.0.0.7:7401"
            ),
            plumtree.IHave(
                ((bytes(16), 1, "10.0.0.7:7401"), (bytes(range(16)), 2, "10.0.0.8:7401"))
            ),
            plumtree.Graft(bytes(16), 1, "10.0.0.7:7401"),
            plumtree.Prune("10.0.0.7:7401"),
        ]
        frames = [wire.encode(m) for m in messages]
        return [bytes([7]) + f for f in frames] + [bytes([3]) + b"".join(frames)]
    # The responder's view of an initiator's first two messages, and a sealed record.
    initiator = secure.Handshake([KEY], True, bytes(range(16)))
    responder = secure.Handshake([KEY], False, bytes(16))
    first = initiator.start()
    second = responder.feed(first)
    third = initiator.feed(second)
    return [bytes([15]) + first, bytes([15]) + first + third, bytes([5]) + second]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz.py", description=__doc__.splitlines()[0])
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--seconds", type=int, default=60, help="how long to run (default 60)")
    p.add_argument("--corpus", type=Path, help="corpus directory (default: a fresh one)")
    args = p.parse_args(argv)
    try:
        import atheris
    except ImportError:
        print("fuzz.py: atheris is not installed (pip install atheris)", file=sys.stderr)
        return 2
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    target = TARGETS[args.target]
    atheris.instrument_all()  # protocols/ is imported already: instrument what is loaded
    libfuzzer = [
        sys.argv[0],
        f"-max_total_time={args.seconds}",
        "-max_len=4096",
        f"-rss_limit_mb={int(os.environ.get('FUZZ_RSS_MB', '1024'))}",
        # A crashing input is saved beside the corpus, not in the working directory.
        f"-artifact_prefix={corpus.parent / (corpus.name + '-crash-')}",
        str(corpus),
    ]
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()  # exits the process: 0 when no input crashed it
    return 0


if __name__ == "__main__":
    sys.exit(main())
