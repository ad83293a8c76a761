"""A short coverage-guided fuzzing run of the wire decoder and the key handshake (atheris;
the longer runs are ``python bench/fuzz.py TARGET --seconds N``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris does not install here"
)


@pytest.mark.parametrize("target", ["wire", "handshake"])
def test_fuzzing_finds_no_input_that_raises_anything_but_a_wire_error(tmp_path, target):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), target, "--seconds", "5"]
        + ["--corpus", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", run.stderr)
    assert done and int(done.group(1)) > 1000, run.stderr[-2000:]
    # It kept what widened coverage: the corpus grew beyond the seeds it started from.
    assert len(list(tmp_path.iterdir())) > len(list(tmp_path.glob("seed-*")))


def test_a_crashing_input_fails_the_run(tmp_path, monkeypatch):
    # The harness itself: a decoder bug (here planted) must end the run non-zero.
    script = tmp_path / "planted.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench import fuzz\n"
        "from protocols import wire\n"
        "real = wire.FrameDecoder.feed\n"
        "def feed(self, data):\n"
        "    if b'\\x00\\x00\\x00\\x01' in bytes(self._buffer) + data:\n"
        "        raise IndexError('planted')\n"
        "    return real(self, data)\n"
        "wire.FrameDecoder.feed = feed\n"
        "sys.exit(fuzz.main(['wire', '--seconds', '30', '--corpus', sys.argv[1]]))\n"
    )
    corpus = tmp_path / "corpus"
    run = subprocess.run(
        [sys.executable, str(script), str(corpus)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "IndexError: planted" in run.stdout + run.stderr
