"""State-based replication, sans-IO: deltas out, deltas in, and anti-entropy.

The office state is a few named spaces (``readings``, ``network``, ``targets``), each
a map of keys to state-based CRDTs. A local change produces a delta, which the node
broadcasts over Plumtree; a replica joins whatever delta arrives, in any order, any
number of times (join is commutative, associative and idempotent). What the tree
misses is repaired by anti-entropy with each active peer: a digest (a short hash per
key) goes first, and only the entries that differ follow (a Merkle-free version of the
exchange in Demers et al., "Epidemic algorithms for replicated database
maintenance", 1987).

A CRDT class here needs ``join(other) -> CRDT`` (a new state), ``to_wire()`` returning
plain msgpack-able data, a classmethod ``from_wire(data)``, and a ``bottom()``
classmethod for the empty state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgpack


def _hash(wire: Any) -> bytes:
    return hashlib.blake2b(msgpack.packb(wire, use_bin_type=True), digest_size=8).digest()


class ReplicationError(ValueError):
    """A message that is not a valid entry (unknown space, undecodable CRDT)."""


class Replica:
    def __init__(self, spaces: Mapping[str, type]) -> None:
        self.spaces = dict(spaces)
        self.state: dict[str, dict[str, Any]] = {name: {} for name in spaces}
        self._hashes: dict[tuple[str, str], bytes] = {}

    # -- local and remote changes ---------------------------------------------------------

    def get(self, space: str, key: str) -> Any:
        found = self.state[space].get(key)
        return found if found is not None else self.spaces[space].bottom()

    def join(self, space: str, key: str, delta: Any) -> bool:
        """Join ``delta`` into the entry; True when the entry changed."""
        if space not in self.spaces:
            raise ReplicationError(f"unknown space {space!r}")
        before = self.state[space].get(key)
        after = delta if before is None else before.join(delta)
        wire = after.to_wire()
        digest = _hash(wire)
        if self._hashes.get((space, key)) == digest:
            return False
        self.state[space][key] = after
        self._hashes[(space, key)] = digest
        return True

    def remove_entry(self, space: str, key: str) -> None:
        """Forget an entry outright (pruning; the CRDT decides what may be dropped)."""
        self.state[space].pop(key, None)
        self._hashes.pop((space, key), None)

    @staticmethod
    def entry(space: str, key: str, crdt: Any) -> list:
        """The wire form of one entry (a delta or a whole state)."""
        return [space, key, crdt.to_wire()]

    def receive(self, entries: list) -> list[tuple[str, str]]:
        """Join entries from a peer; the (space, key) pairs that changed."""
        changed = []
        for item in entries:
            try:
                space, key, wire = item
                cls = self.spaces[space]
                crdt = cls.from_wire(wire)
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplicationError(f"bad entry: {exc}") from None
            if self.join(space, str(key), crdt):
                changed.append((space, str(key)))
        return changed

    # -- anti-entropy ---------------------------------------------------------------------

    def digest(self) -> dict:
        """space -> key -> 8-byte hash of the entry's state."""
        out: dict = {name: {} for name in self.spaces}
        for (space, key), digest in self._hashes.items():
            out[space][key] = digest
        return out

    def differing(self, remote: Mapping) -> list:
        """Entries the peer with digest ``remote`` lacks or holds differently: send them.
        (It joins them; where it held something we lack, its own answer brings that.)"""
        out = []
        for (space, key), digest in self._hashes.items():
            if remote.get(space, {}).get(key) != digest:
                out.append(self.entry(space, key, self.state[space][key]))
        return out

    def wanted(self, remote: Mapping) -> int:
        """How many entries the peer has that we lack or hold differently."""
        count = 0
        for space, keys in remote.items():
            for key, digest in keys.items():
                if self._hashes.get((space, key)) != digest:
                    count += 1
        return count
