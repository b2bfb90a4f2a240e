"""The run's scratch sets: the names claimed and the inputs seen, in a private temporary
SQLite database instead of Python sets.

Both sets gain an entry per input and are needed until the run ends (a name may be claimed
again by the last input; the same file may be named twice), so in memory they grew the main
process by about 0.25 KB per input — 50 MB at 200,000 inputs (docs/notes/scale.md). SQLite
keeps a temporary database in its page cache (`CACHE_KIB`) and spills the rest to a file
that is deleted when the connection closes, so the main process stays flat at any count,
for a few microseconds per input.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: SQLite's page cache for the scratch database (KiB): what it may hold in memory
CACHE_KIB = 2048
#: folder levels whose kind (a base or a folder) is remembered here: they repeat across
#: inputs (every file of a folder), and a key's kind never changes once claimed
_KNOWN_MAX = 4096

_SCHEMA = """
CREATE TABLE claimed (key BLOB PRIMARY KEY, base INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE seen (key BLOB PRIMARY KEY) WITHOUT ROWID;
"""


def _blob(key: str) -> bytes:
    """A key as SQLite stores it: UTF-8 bytes, with a file name's undecodable bytes (lone
    surrogates in Python, which SQLite's text refuses) kept one to one."""
    return key.encode("utf-8", "surrogatepass")


class Scratch:
    """A private temporary database (one per run, never shared, gone when closed)."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary on-disk database: cached, spilled to a temp file
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode=OFF")  # nothing to recover: the run owns it
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)
        self._db.execute("BEGIN")  # one transaction: no commit per statement

    def claims(self) -> SqliteClaims:
        """The `naming.ClaimedNames` of this run's `NameRegistry`."""
        return SqliteClaims(self._db)

    def seen(self) -> SeenKeys:
        """The inputs planned so far (a file named twice is converted once)."""
        return SeenKeys(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteClaims:
    """`naming.ClaimedNames` in the scratch database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._known: dict[str, bool] = {}

    def is_base(self, key: str) -> bool | None:
        known = self._known.get(key)
        if known is not None:
            return known
        query = "SELECT base FROM claimed WHERE key = ?"
        found = self._db.execute(query, (_blob(key),)).fetchone()
        if found is None:
            return None
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known[key] = kind = bool(found[0])  # a key's kind never changes
        return kind

    def take(self, key: str, folders: Sequence[str]) -> bool:
        cursor = self._db.execute("INSERT OR IGNORE INTO claimed VALUES (?, 1)", (_blob(key),))
        if cursor.rowcount != 1:
            return False
        new = [f for f in folders if f not in self._known]  # the registry checked them
        if new:
            folder_rows = [(_blob(f),) for f in new]
            self._db.executemany("INSERT OR IGNORE INTO claimed VALUES (?, 0)", folder_rows)
            if len(self._known) + len(new) > _KNOWN_MAX:
                self._known.clear()
            self._known.update(dict.fromkeys(new, False))
        return True


class SeenKeys:
    """A set of input keys in the scratch database; `first_time` adds and tells."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def first_time(self, key: str) -> bool:
        """True, and remembered, if `key` was not seen before."""
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (_blob(key),))
        return cursor.rowcount == 1
