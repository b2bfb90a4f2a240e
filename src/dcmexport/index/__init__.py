"""`dcmexport index`: a table of DICOM headers, one row per instance (or per series).

Why a room of its own: an index answers "what is in this pile of files?" before (or
instead of) a conversion, so it reads headers only (``stop_before_pixels``) and must be fast.
It reuses the sources' discovery, `dicom.decoding.read_dataset` and the engine's executor and
bounded map (in-process, process pool or Dask), shipping chunks of paths to the top-level,
picklable `read_headers`. Never imports render or exporters.

Modules: `columns` (names in the one tag grammar, types), `values` (cells), `read` (the
worker), `series` (``--level series``), `table` (CSV/Parquet), `build` (the run).

How a table is shaped, and why:

- Columns are DICOM keywords (``PatientName``), ``GGGGEEEE`` for tags without one (private
  tags), and the derived columns of `DERIVED_COLUMNS`. ``path`` always comes first and
  ``status``, ``error`` last, so every file found gets a row that says what became of it.
- A column's type comes from the DICOM dictionary, never from the data, so every table (and
  every file of a partitioned data set) has the same schema: IS, SS, US, UL, SL, SV, UV are
  integers; DS, FL, FD floats; all else text. A column whose Value Multiplicity allows more
  than one value (``WindowCenter`` is 1-n, ``PixelSpacing`` 2) is a list in *every* row, even
  where a file has one value: a Parquet list column, a JSON array in CSV. A single-valued
  attribute that a non-conformant file repeats keeps its first number, or for text all its
  values joined with DICOM's ``\\``.
- DA values become ISO 8601 dates (``2024-01-15``) and TM values ISO times (``09:30:00``), so
  CSV readers (DuckDB, pandas' ``parse_dates``) recognise them; a value not in DICOM form is
  kept as it is. DT values stay in DICOM form (an offset suffix maps onto no single ISO type).
  PN values are the whole DICOM string (``Yamada^Tarou=山田^太郎=やまだ^たろう``).
- ``status`` is ``ok``, ``skipped`` (not DICOM: no ``DICM`` marker and no parsable header) or
  ``error`` (a DICOM file whose header cannot be read, e.g. truncated); ``error`` says why.
- CSV is UTF-8 with RFC 4180 quoting; an empty cell is a missing value. Identifiers that look
  like numbers (PatientID ``00123``) are text in Parquet, but CSV readers guess types: read
  such columns as text (``dtype=str``, ``types={...}``) or use Parquet.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): the command line imports `columns` for its `--level`
# choices on every run, and a conversion never needs the rest of this room.
_EXPORTS = {
    **dict.fromkeys(
        ("CHUNK_SIZE", "IndexSummary", "RowOutcome", "build_index", "index_rows"), "build"
    ),
    **dict.fromkeys(
        (
            "DEFAULT_COLUMNS",
            "DERIVED_COLUMNS",
            "SERIES_COLUMNS",
            "Column",
            "ColumnType",
            "IndexLevel",
            "column_spec",
            "instance_columns",
            "normalize_columns",
            "parse_columns",
            "series_columns",
        ),
        "columns",
    ),
    **dict.fromkeys(("read_header", "read_headers"), "read"),
    "series_rows": "series",
    **dict.fromkeys(("TABLE_FORMATS", "write_table"), "table"),
}

if TYPE_CHECKING:
    from .build import CHUNK_SIZE, IndexSummary, RowOutcome, build_index, index_rows
    from .columns import (
        DEFAULT_COLUMNS,
        DERIVED_COLUMNS,
        SERIES_COLUMNS,
        Column,
        ColumnType,
        IndexLevel,
        column_spec,
        instance_columns,
        normalize_columns,
        parse_columns,
        series_columns,
    )
    from .read import read_header, read_headers
    from .series import series_rows
    from .table import TABLE_FORMATS, write_table


_MODULES = frozenset((*_EXPORTS.values(), "values"))


def __getattr__(name: str) -> Any:
    if name in _MODULES:  # a submodule, as an eager package would have bound it
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_COLUMNS",
    "DERIVED_COLUMNS",
    "SERIES_COLUMNS",
    "TABLE_FORMATS",
    "Column",
    "ColumnType",
    "IndexLevel",
    "IndexSummary",
    "RowOutcome",
    "build_index",
    "column_spec",
    "index_rows",
    "instance_columns",
    "normalize_columns",
    "parse_columns",
    "read_header",
    "read_headers",
    "series_columns",
    "series_rows",
    "write_table",
]
