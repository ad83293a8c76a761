"""actors/immortal.py: the launcher's objects made immortal stay shared with its forks.

Each check runs in a fresh interpreter (immortal objects are never freed, so never in
pytest's own process), under this Python and under every other CPython 3.11+ found on
the machine: the immortal path exists only on 3.12 and later, while CI's own Python may
be older. The module needs nothing beyond the standard library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.cluster import ROOT
from tests.pythons import installed

# In the child: objects made before ``immortalize`` and after it, each a bytes object
# larger than a page, so that its header (its reference count) sits on a page of its
# own. A forked process then takes a reference to each; the pages it wrote are the
# ones now mapped only by it (/proc/self/pagemap, "exclusively mapped").
SCRIPT = textwrap.dedent(
    """
    import ctypes, gc, json, os, struct, sys
    from actors.immortal import _holds, immortal_refcount, immortalize

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def made(n):
        return [bytes([i % 251]) * (3 * PAGE) for i in range(n)]

    def exclusive(addresses):
        # (addresses, not the objects: iterating over objects would reference them)
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        try:
            count = 0
            for a in addresses:
                entry, = struct.unpack("Q", os.pread(fd, 8, a // PAGE * 8))
                count += entry >> 56 & 1
            return count
        finally:
            os.close(fd)

    def refcount(o):
        return ctypes.c_ssize_t.from_address(id(o)).value

    class Kept:
        pass

    before = made(64)
    text = "".join(["imm", "ortal"])  # a string made at run time
    gc.freeze()  # as the launcher has done by then (actors.base.lean_actor_system)
    holds = [_holds(1_000_000), _holds(refcount(None))]
    mark = immortal_refcount()
    count = immortalize()
    after = made(64)
    out = {"version": list(sys.version_info[:2]), "mark": mark, "count": count,
           "frozen_still": gc.get_freeze_count(), "holds": holds}
    # Counts seen from here: more references must not move an immortal one.
    counts = [refcount(o) for o in (before[0], text, Kept, after[0])]
    more = [before[0], text, Kept, after[0]] * 3
    out["moved"] = [refcount(o) != c for o, c in zip(more, counts)]
    del more
    where = [[id(o) for o in before], [id(o) for o in after]]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        baseline = [exclusive(where[0]), exclusive(where[1])]
        held = list(before) + list(after)  # one reference more to each
        child = {"baseline": baseline, "written": [exclusive(where[0]), exclusive(where[1])]}
        os.write(w, json.dumps(child).encode())
        os._exit(0)
    os.close(w)
    out["child"] = json.loads(os.read(r, 65536))
    os.waitpid(pid, 0)
    print(json.dumps(out))
    """
)


def interpreters() -> list[str]:
    """This Python and every other CPython 3.11+ on the machine (pyenv's, Debian's)."""
    found = {os.path.realpath(sys.executable): sys.executable}
    for path in installed("3.1[1-9]"):
        found.setdefault(os.path.realpath(path), path)
    return list(found.values())


def run(python: str, script: str = SCRIPT) -> dict:
    """``script`` in a fresh ``python``, the project importable; what it printed, as JSON."""
    proc = subprocess.run(
        [python, "-c", script],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("python", interpreters())
def test_objects_alive_at_the_fork_stay_shared_only_where_python_has_immortal_objects(python):
    out = run(python)
    child = out["child"]
    n = 64
    # (a page may hold something else the child writes: the allocator's own records)
    assert max(child["baseline"]) <= 2, "hardly anything was written before the references"
    # Objects made after immortalize are counted as usual: each header page is copied.
    assert child["written"][1] >= n - 2
    if tuple(out["version"]) >= (3, 12):
        assert out["mark"] is not None and out["count"] > 1000
        # Only the interpreter's own immortal count survives new references.
        assert out["holds"] == [False, True]
        # Made before: their pages stay shared with the parent, however referenced.
        assert child["written"][0] <= 2
        assert out["moved"] == [False, False, False, True]
        assert out["frozen_still"] > 0, "the collector still leaves the heap alone"
    else:
        # No immortal objects to borrow: nothing is touched, everything is counted.
        assert out["mark"] is None and out["count"] == 0
        assert out["holds"] == [False, False]
        assert child["written"][0] >= n - 2
        assert out["moved"] == [True, True, True, True]


def test_the_immortal_mark_is_refused_where_it_would_not_hold(monkeypatch):
    import actors.immortal as immortal

    # A layout where writing the mark does not stop the counting (checked on a
    # throwaway object): nothing may be made immortal.
    monkeypatch.setattr(immortal, "_holds", lambda mark: False)
    monkeypatch.setattr(immortal.sys, "version_info", (3, 12, 0))
    assert immortal.immortal_refcount() is None
    assert immortal.immortalize() == 0


TRIM = textwrap.dedent(
    """
    import json
    from actors.immortal import trim_free_memory

    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    # 40 MiB in blocks the C allocator serves from its heap, one in ten kept: the
    # freed ones cannot go back by themselves (the heap's top is still in use).
    blocks = [bytearray(2000) for _ in range(20000)]
    kept = blocks[::10]
    del blocks
    before = resident()
    trimmed = trim_free_memory()
    print(json.dumps({"trimmed": trimmed, "freed": before - resident(), "kept": len(kept)}))
    """
)


def test_free_memory_goes_back_to_the_kernel_before_the_forks():
    out = run(sys.executable, TRIM)
    assert out["trimmed"] is True  # glibc, as on Raspberry Pi OS
    assert out["freed"] > 20 << 20  # most of the 36 MiB freed
