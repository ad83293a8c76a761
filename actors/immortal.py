"""Make the launcher's objects immortal before it forks the node's processes (issue 8).

Every actor is a process forked from the launcher (run_node.py), so all of them start
out sharing the launcher's memory: the modules, classes, functions and strings they
all use. CPython then writes to those pages whenever it counts a reference, and each
page written becomes a private copy in the process that wrote it: measured on Python
3.12, an idle actor had 3.2 MiB of private memory by its first message, nearly all of
it copies of pages it shares with its parent (``python bench/actor_floor.py --mortal``).

Python 3.12 has immortal objects (PEP 683): an object whose reference count holds a
reserved value is never counted again, so its page is never written for that. The
interpreter only makes its own static objects immortal; ``immortalize`` does the same
to every object alive in the launcher just before the first fork, using the value the
interpreter gives ``None``. Those objects are never freed, which is what we want: they
are the node's code and the modules' state, alive until the node stops. What the
actors allocate afterwards is counted and freed as usual.

Measured on this project's machine, 2026-12-03/04: an idle actor by its first message
(``python bench/actor_floor.py`` with and without ``--mortal``) 3.21 -> 1.71 MiB of
private memory on Python 3.12.1, 3.49 -> 1.88 MiB on 3.13.0; a node with 5 peer links
and 1 client (``python bench/node_memory.py``, then 13 processes), PSS of the whole
node 89.2 -> 62.0 MiB on 3.12, 94.4 -> 68.0 MiB on 3.13. Before 3.12 there is no
immortality to borrow and ``immortalize`` does nothing (3.11: 3.85 MiB either way).

Only the layout the interpreter itself uses is relied on (the reference count is the
object's first field; ``None`` carries the immortal value), and it is checked on a
throwaway object before anything else is touched: where it does not hold (a
free-threaded build, another implementation), nothing is changed."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import sysconfig
import types


def immortal_refcount() -> int | None:
    """The reference count that marks an object immortal here, or None where objects
    cannot be made immortal by writing it (before 3.12, free-threaded, not CPython)."""
    if sys.implementation.name != "cpython" or sys.version_info < (3, 12):
        return None
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # another object header
        return None
    mark = ctypes.c_ssize_t.from_address(id(None)).value
    return mark if _holds(mark) else None


def _holds(mark: int) -> bool:
    """Does an object whose count is ``mark`` stay at ``mark`` while it gains and loses
    references? Tried on a throwaway object, whose count is put back afterwards."""
    probe = [bytearray(8)]
    cell = ctypes.c_ssize_t.from_address(id(probe[0]))
    before = cell.value
    cell.value = mark
    more = [probe[0], probe[0], probe[0]]
    held = cell.value == mark
    del more
    held = held and cell.value == mark
    cell.value = before  # the references are as they were before ``mark`` was written
    return held


def immortalize() -> int:
    """Make every object alive now immortal; how many were made so (0 where this
    interpreter has no immortal objects). Call once, in the launcher, with nothing else
    running, just before it starts forking: whatever is alive then stays forever."""
    mark = immortal_refcount()
    if mark is None:
        return 0
    gc.collect()  # the garbage of the start goes now, or never
    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()  # (frozen objects are not listed)
    todo = gc.get_objects()
    if frozen:
        gc.freeze()
    todo += sys.modules.values()
    count = 0
    address = ctypes.c_ssize_t.from_address
    tracked, referents, code = gc.is_tracked, gc.get_referents, types.CodeType
    # The collector lists only the objects it tracks (containers); the strings,
    # numbers and bytes they hold are reached through them. An object already carrying
    # the mark is done (visited, or immortal already): no set of visited ids needed.
    while todo:
        obj = todo.pop()
        cell = address(id(obj))
        if cell.value == mark:
            continue
        cell.value = mark
        count += 1
        if type(obj) is code:
            # Code objects are not tracked and do not list what they hold.
            todo += (
                obj.co_consts,
                obj.co_names,
                obj.co_filename,
                obj.co_name,
                obj.co_qualname,
                obj.co_linetable,
                obj.co_exceptiontable,
            )
            # (these tuples are made on each access: only their names are kept)
            todo += obj.co_varnames + obj.co_cellvars + obj.co_freevars
        elif tracked(obj):
            todo += [o for o in referents(obj) if not tracked(o) or type(o) is code]
        else:
            todo += referents(obj)
    return count


def trim_free_memory() -> bool:
    """Give the C allocator's free pages back to the kernel (glibc's ``malloc_trim``);
    False where there is no such call. Called in the launcher before the first fork:
    what its start allocated and freed would otherwise stay resident, mapped by every
    process of the node (about 1.3 MiB of a node's PSS, ``bench/node_memory.py``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    trim(0)
    return True
