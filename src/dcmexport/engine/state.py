"""Crash-safe resume: what each earlier run wrote, kept in `OUT/.dcmexport/state.sqlite`
(for an object-store OUT, or with `--state-dir`, in a local folder: never in the bucket).

A rerun skips an input whose file is unchanged (size and modification time), whose outputs
were made with the same options and still exist; everything else is converted again. The
manifest of every run is generated from this table, so it accounts for every input, whether
converted now or earlier. SQLite in WAL mode with periodic commits survives `kill -9`: at
worst the last second of results is redone, and outputs are only ever renamed into place.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

from ..manifest import COLUMNS, ManifestRow, Status
from ..naming import display_path
from ..store import Store

STATE_FILE = "state-v2.sqlite"  # a new name whenever the schema changes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (  -- rows: JSON lists in manifest.COLUMNS order
    source TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    options_key TEXT,
    status TEXT,
    rows TEXT,
    outputs TEXT,  -- JSON {output: [size, mtime_ns]} as written: proof nobody replaced them
    run INTEGER,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS files_run ON files (run, seq);
CREATE TABLE IF NOT EXISTS runs (run INTEGER PRIMARY KEY, started REAL, options_key TEXT);
"""


_INSERT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _rows_to_json(rows: list[ManifestRow]) -> str:
    # lists in COLUMNS order: several times faster than dataclasses.asdict on the hot path
    return json.dumps([[getattr(r, c) for c in COLUMNS] for r in rows], separators=(",", ":"))


def _rows_from_json(text: str) -> list[ManifestRow]:
    return [ManifestRow(*values) for values in json.loads(text)]


_RESUMABLE = (Status.OK, Status.SKIPPED)


def _output_base(output: str) -> str:
    """An output's base: its name without the extension (both parts of ``.nii.gz``)."""
    stem = output[:-3] if output.endswith(".gz") else output
    return stem.rpartition(".")[0]


class RunState:
    """The state database of one output folder, for one run."""

    def __init__(self, store: Store, options_key: str, *, commit_every: float = 1.0) -> None:
        self.store = store
        self.options_key = options_key
        store.state_dir.mkdir(parents=True, exist_ok=True)
        database = store.state_dir / STATE_FILE
        self._db = sqlite3.connect(database, isolation_level=None, timeout=1)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cursor = self._db.execute(
            "INSERT INTO runs (started, options_key) VALUES (?, ?)", (time.time(), options_key)
        )
        self.run = int(cursor.lastrowid or 0)
        # a fresh output folder has nothing to resume: skip a lookup per input
        self._has_history = self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None
        self._commit_every = commit_every
        self._last_commit = time.monotonic()
        self._db.execute("BEGIN")

    @property
    def has_history(self) -> bool:
        """False for a fresh output folder: nothing can be up to date (no lookups needed)."""
        return self._has_history

    def up_to_date(
        self,
        source: str,
        seq: int,
        base: str | tuple[str, ...],
        fingerprint: tuple[int, int] | None,
    ) -> list[ManifestRow] | None:
        """The rows of an earlier conversion of `source` that still holds, else None.

        It holds when the input is unchanged, the options are the same, the earlier result was
        `ok` or `skipped`, and every output it lists lies under the output `base` (or one of
        the bases: a series' volumes) planned for it in this run and is exactly the file
        written then (same size and modification time: another input may have taken the name
        since). It is then counted in this run.
        `fingerprint` is what the input's source says changes with it (a file's size and
        mtime; for a series, a digest of its slices).
        """
        if not self._has_history:
            return None
        found = self._db.execute(
            "SELECT size, mtime_ns, options_key, status, rows, outputs FROM files WHERE source = ?",
            (display_path(source),),
        ).fetchone()
        if found is None or found[2] != self.options_key or found[3] not in _RESUMABLE:
            return None
        if fingerprint != (found[0], found[1]):
            return None
        rows = _rows_from_json(found[4])
        written = json.loads(found[5] or "{}")
        bases = (base,) if isinstance(base, str) else base
        for row in rows:
            if not row.output:
                continue
            mine = any(
                row.output.startswith(f"{b}/") or _output_base(row.output) == b for b in bases
            )
            if not mine or self._output_stat(row.output) != tuple(written.get(row.output, ())):
                return None
        self._db.execute(
            "UPDATE files SET run = ?, seq = ? WHERE source = ?",
            (self.run, seq, display_path(source)),
        )
        self._maybe_commit()
        return rows

    def record(
        self,
        source: str,
        seq: int,
        status: Status | str,
        rows: list[ManifestRow],
        fingerprint: tuple[int, int] | None,
        *,
        written: dict[str, tuple[int, int] | None] | None = None,
    ) -> None:
        """Remember what this run did with `source`; remove outputs it no longer makes.

        An earlier run with other options may have written files this one does not (PNG then
        JPEG, other frames): they are deleted if they are still exactly as written then.
        `written` is each output's (size, mtime_ns) if the worker took it (else stat here).
        """
        if written is None:
            written = {r.output: self._output_stat(r.output) for r in rows if r.output}
        if self._has_history:
            self._remove_orphans(display_path(source), written)
        self._db.execute(_INSERT, self._values(source, seq, status, rows, fingerprint, written))
        self._maybe_commit()

    def record_many(
        self,
        records: list[tuple[str, int, Status | str, list[ManifestRow], tuple[int, int] | None]],
        written: list[dict[str, tuple[int, int] | None] | None],
    ) -> None:
        """`record` for a chunk of inputs, (source, seq, status, rows, fingerprint) each with
        its `written`: one statement for the chunk on a fresh output folder."""
        taken = [outputs for outputs in written if outputs is not None]
        if self._has_history or len(taken) < len(written):  # orphans to remove, stats to take
            for (source, seq, status, rows, fingerprint), outputs in zip(
                records, written, strict=True
            ):
                self.record(source, seq, status, rows, fingerprint, written=outputs)
            return
        pairs = zip(records, taken, strict=True)
        self._db.executemany(_INSERT, [self._values(*record, outputs) for record, outputs in pairs])
        self._maybe_commit()

    def _values(
        self,
        source: str,
        seq: int,
        status: Status | str,
        rows: list[ManifestRow],
        fingerprint: tuple[int, int] | None,
        written: dict[str, tuple[int, int] | None],
    ) -> tuple[object, ...]:
        """One input's row of the `files` table."""
        size, mtime_ns = fingerprint or (None, None)
        return (
            display_path(source),
            size,
            mtime_ns,
            self.options_key,
            str(status),
            _rows_to_json(rows),
            json.dumps(written),
            self.run,
            seq,
        )

    def _remove_orphans(self, key: str, keep: dict[str, tuple[int, int] | None]) -> None:
        found = self._db.execute("SELECT outputs FROM files WHERE source = ?", (key,)).fetchone()
        for output, was in json.loads((found and found[0]) or "{}").items():
            if output not in keep and was and self._output_stat(output) == tuple(was):
                self.store.remove(output)

    def _output_stat(self, output: str) -> tuple[int, int] | None:
        return self.store.stat(output)

    def rows_of_this_run(self) -> Iterator[ManifestRow]:
        """Every manifest row of the inputs seen in this run, in discovery order."""
        self.commit()
        query = "SELECT rows FROM files WHERE run = ? ORDER BY seq"
        for (text,) in self._db.execute(query, (self.run,)):
            yield from _rows_from_json(text)

    def _maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit >= self._commit_every:
            self.commit()

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()
