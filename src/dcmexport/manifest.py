"""`OUT/manifest.csv`: one row per written file and per skipped or failed input.

Shared ground: rows and their enums are used by every room that writes outputs; writing the
file itself is the engine's job (through the store).
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import os
from collections.abc import Iterable, Iterator


class Status(str, enum.Enum):
    """What became of an input (the manifest's `status` column, docs/cli.md)."""

    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    """What a manifest row's `output` is (empty on error and skipped rows)."""

    IMAGE = "image"
    VIDEO = "video"
    SERIES_VIDEO = "series-video"
    METADATA = "metadata"
    VOLUME = "volume"
    DICOM = "dicom"  # a DICOM file: a de-identified copy (`anonymize`) or fetched (`pull`)

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass
class ManifestRow:
    """One manifest line; the first ten columns are pinned by docs/cli.md."""

    source: str
    frame: int | None = None
    output: str = ""
    status: Status | str = Status.OK
    error: str = ""
    window_center: float | None = None
    window_width: float | None = None
    raw_offset: int | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    voi: str = ""
    kind: Kind | str = ""
    note: str = ""


COLUMNS = tuple(f.name for f in dataclasses.fields(ManifestRow))

#: The manifest note (and stderr summary) of an image that may carry burned-in text.
BURNED_IN_NOTE = "burned-in text possible"


def count_burned_in(rows: Iterable[ManifestRow]) -> bool:
    """True if one of an input's rows notes possible burned-in text."""
    return any(BURNED_IN_NOTE in row.note for row in rows)


#: The manifest's file name inside OUT.
MANIFEST_NAME = "manifest.csv"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


class CsvLines:
    """CSV lines (RFC 4180 quoting) ending in ``\n``, for the manifest and the index.

    Why not `csv.writer(f, lineterminator="\n")`: it quotes a field only for the characters
    of its line terminator, so a value holding a bare ``\r`` (a damaged header's window
    explanation, a file name) was written unquoted and broke the row for every reader. Each
    row is written with ``\r\n`` (so both are quoted) and ends in ``\n``.
    """

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def line(self, cells: Iterable[object]) -> str:
        """One row as a CSV line."""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()[:-2] + "\n"


def manifest_lines(rows: Iterable[ManifestRow]) -> Iterator[str]:
    """The CSV lines (RFC 4180, header first) for `rows`, one at a time."""
    lines = CsvLines()
    yield lines.line(COLUMNS)
    for row in rows:
        yield lines.line([_cell(getattr(row, c)) for c in COLUMNS])


def manifest_text(rows: Iterable[ManifestRow]) -> str:
    """The CSV text (RFC 4180, header first) for `rows`."""
    return "".join(manifest_lines(rows))


def manifest_bytes(rows: Iterable[ManifestRow]) -> bytes:
    """The manifest as bytes; a file name that is not UTF-8 is written back as its own bytes."""
    return manifest_text(rows).encode("utf-8", "surrogateescape")


def write_manifest_file(path: str | os.PathLike[str], rows: Iterable[ManifestRow]) -> None:
    """The manifest streamed into the file `path`: a run's rows never sit in memory at once
    (at 200,000 inputs the whole text cost the main process some 30 MB at its end)."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.writelines(manifest_lines(rows))
