"""`OUT/manifest.csv`: one row per written file and per skipped or failed input."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable
from pathlib import Path

from .writers import write_atomic


@dataclasses.dataclass
class ManifestRow:
    """One manifest line; the first ten columns are pinned by CONTRACT.md."""

    source: str
    frame: int | None = None
    output: str = ""
    status: str = "ok"  # ok | error | skipped
    error: str = ""
    window_center: float | None = None
    window_width: float | None = None
    raw_offset: int | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    voi: str = ""
    kind: str = ""  # what `output` is: image | metadata (empty on error/skipped rows)
    note: str = ""


COLUMNS = tuple(f.name for f in dataclasses.fields(ManifestRow))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def manifest_text(rows: Iterable[ManifestRow]) -> str:
    """The CSV text (RFC 4180, header first) for `rows`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in COLUMNS])
    return buffer.getvalue()


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write the manifest atomically (a reader never sees half of it)."""
    # surrogateescape: a file name that is not UTF-8 is written back as its own bytes
    write_atomic(path, manifest_text(rows).encode("utf-8", "surrogateescape"))
