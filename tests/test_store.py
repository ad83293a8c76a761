"""The durable store: what was committed survives kill -9 of the process that wrote it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from actors.store import Store, StoreError
from bench.cluster import ROOT, wait_for

WRITER = textwrap.dedent(
    """
    import sys, time
    from actors.store import Store
    store = Store(sys.argv[1])
    n = 0
    while True:
        n += 1
        with store.transaction():
            store.put("targets", f"k{n}", str(n).encode())
            store.set_meta("last", str(n).encode())
        print(n, flush=True)  # acknowledged only once committed
        time.sleep(0.001)
    """
)


def test_committed_writes_survive_kill_9(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acked = []
    try:
        wait_for(
            lambda: acked.append(int(proc.stdout.readline())) or len(acked) >= 200,
            20,
            "200 acknowledged writes",
            step=0,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    store = Store(tmp_path)
    keys = {k for k, _ in store.items("targets")}
    assert {f"k{n}" for n in acked} <= keys  # every acknowledged write is there
    assert int(store.get_meta("last")) >= acked[-1]


def test_transactions_are_all_or_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.put("s", "a", b"1")
            raise RuntimeError("half-way")
    assert store.get("s", "a") is None
    store.put_many("s", [("a", b"1"), ("b", b"2")])
    assert store.items("s") == [("a", b"1"), ("b", b"2")]
    store.put("s", "a", b"3")
    store.delete("s", "b")
    assert store.items("s") == [("a", b"3")]


def test_wal_mode_and_a_clear_error_for_an_unusable_dir(tmp_path):
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open"):
        Store(blocker / "sub")
