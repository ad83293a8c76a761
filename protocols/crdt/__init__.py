"""State-based CRDTs with delta mutators (Almeida, Shoker, Baquero, "Delta state
replicated data types", 2018).

Conventions shared by every type here:

* ``join(other)`` returns a NEW state and never changes either input; it is commutative,
  associative and idempotent, so deltas and full states may arrive in any order, any
  number of times.
* Mutators (``write``, ``increment``, ``add``, ``remove``, ``put``, ``prune``) change the
  state IN PLACE and return the delta: a small state of the same type such that
  ``before.join(delta) == after``. Ship the delta; a replica joins it.
* ``value()`` is what applications read; ``to_wire()`` is plain msgpack-able data in a
  canonical order (equal states encode to equal bytes) and ``from_wire`` rebuilds it.
* ``bottom()`` is the empty state (what ``protocols.replication`` starts from).

Dot-based types (``MVRegister``, ``AWORSet``, ``ORMap``) keep a causal context: a dot in
the context but not in the entries has been removed, so an old delta cannot bring it
back. ``prune(node, upto)`` relies on that to forget what a departed node wrote.
"""

from protocols.crdt.counters import GCounter, PNCounter
from protocols.crdt.ormap import ORMap
from protocols.crdt.registers import LWWRegister, MVRegister
from protocols.crdt.sets import AWORSet

__all__ = ["AWORSet", "GCounter", "LWWRegister", "MVRegister", "ORMap", "PNCounter"]
