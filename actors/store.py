"""The node's durable state: SQLite in WAL mode under the data dir.

What the State actor acknowledges is committed here first, with ``synchronous=FULL``,
so it survives ``kill -9`` and a power cut. Values are opaque bytes (the CRDTs'
compact msgpack encodings), grouped in spaces (``readings``, ``network``,
``targets``...); ``meta`` holds small counters such as the last dot issued, so a
restarted node never reuses one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    space TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (space, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""


class StoreError(Exception):
    """The data dir cannot hold the node's state (permissions, disk, corruption)."""


class Store:
    def __init__(self, data_dir: str | Path, name: str = "state.sqlite3") -> None:
        path = Path(data_dir) / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        self.path = path

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Everything inside commits together, or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def put(self, space: str, key: str, value: bytes) -> None:
        self.db.execute(
            "INSERT INTO kv (space, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
            (space, key, value),
        )

    def put_many(self, space: str, items: Iterable[tuple[str, bytes]]) -> None:
        with self.transaction():
            for key, value in items:
                self.put(space, key, value)

    def delete(self, space: str, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE space = ? AND key = ?", (space, key))

    def get(self, space: str, key: str) -> bytes | None:
        row = self.db.execute(
            "SELECT value FROM kv WHERE space = ? AND key = ?", (space, key)
        ).fetchone()
        return row[0] if row else None

    def items(self, space: str) -> list[tuple[str, bytes]]:
        return list(
            self.db.execute("SELECT key, value FROM kv WHERE space = ? ORDER BY key", (space,))
        )

    def set_meta(self, name: str, value: bytes) -> None:
        self.db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def get_meta(self, name: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()
