"""Writing an index table: CSV or Parquet, streamed, atomically."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..dicom.tags import tag_text
from ..engine.executor import chunks
from ..errors import UsageError
from ..manifest import CsvLines
from ..store.guard import check_table_target, locked_table_path
from .columns import ColumnType, Row, column_spec, instance_columns

#: Table formats by file suffix (any case).
TABLE_FORMATS: tuple[str, ...] = (".csv", ".parquet")
#: Rows per Parquet record batch: memory stays bounded for a million-file index.
PARQUET_BATCH_ROWS = 8192


def _table_suffix(path: Path) -> str:
    """The table format, from the name; `UsageError` for anything but .csv or .parquet."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise UsageError(f"{path}: the table's name must end in {' or '.join(TABLE_FORMATS)}")
    if path.is_dir():
        raise UsageError(f"{path} is a folder: name a table file such as index.csv")
    return suffix


def _pyarrow() -> Any:
    """pyarrow, imported on first use: only Parquet output needs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # the submodule is not imported with pyarrow
    except ImportError:
        raise UsageError(
            "Parquet output needs pyarrow: pip install pyarrow, or write a .csv table"
        ) from None
    return pyarrow


#: `json.dumps(value, ensure_ascii=False)` without building an encoder per call.
_JSON = json.JSONEncoder(ensure_ascii=False)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return _JSON.encode(value)
    return repr(value) if isinstance(value, float) else value  # repr: shortest exact float


def _csv_cells(row: Row, columns: Sequence[str]) -> list[Any]:
    """A row's CSV cells; text and integers (most cells) as they are, at no call's cost."""
    cells: list[Any] = []
    for name in columns:
        value = row.get(name)
        kind = type(value)
        cells.append(value if kind is str or kind is int else _csv_cell(value))
    return cells


def _write_csv(rows: Iterable[Row], target: Path, columns: Sequence[str]) -> int:
    count = 0
    lines = CsvLines()  # a bare \r in a value is quoted too
    with open(target, "w", encoding="utf-8", newline="") as f:
        f.write(lines.line(columns))
        for row in rows:
            f.write(lines.line(_csv_cells(row, columns)))
            count += 1
    return count


def _arrow_schema(pa: Any, columns: Sequence[str]) -> Any:
    """Types from the DICOM dictionary (see the module docstring); tag and VR as metadata."""
    types = {
        ColumnType.INT: pa.int64(),
        ColumnType.FLOAT: pa.float64(),
        ColumnType.STR: pa.string(),
    }
    fields = []
    for name in columns:
        spec = column_spec(name)
        arrow_type = pa.list_(types[spec.kind]) if spec.multi else types[spec.kind]
        meta = None if spec.tag is None else {"tag": tag_text(spec.tag), "vr": spec.vr}
        fields.append(pa.field(name, arrow_type, metadata=meta))
    return pa.schema(fields, metadata={"written_by": f"dcmexport {__version__}"})


def _write_parquet(rows: Iterable[Row], target: Path, columns: Sequence[str]) -> int:
    pa = _pyarrow()
    schema = _arrow_schema(pa, columns)
    count = 0
    with pa.parquet.ParquetWriter(target, schema) as writer:
        for batch in chunks(rows, PARQUET_BATCH_ROWS):
            data = {c: [row.get(c) for row in batch] for c in columns}  # 9× from_pylist
            writer.write_batch(pa.RecordBatch.from_pydict(data, schema=schema))
            count += len(batch)
    return count


_WRITERS: dict[str, Callable[[Iterable[Row], Path, Sequence[str]], int]] = {
    ".csv": _write_csv,
    ".parquet": _write_parquet,
}


def _check_table(path: Path) -> str:
    """The table format; fails now, not after an hour of reading, if it cannot be written."""
    suffix = _table_suffix(path)
    if suffix == ".parquet":
        _pyarrow()
    check_table_target(path)
    return suffix


def write_table(
    rows: Iterable[Row], path: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> int:
    """Write `rows` to a ``.csv`` or ``.parquet`` table atomically; returns the row count.

    `columns` fixes the header and the schema (so an empty table has both); by default the
    first row's keys. Lists become JSON arrays in CSV and list columns in Parquet; None is an
    empty cell or null. Rows are streamed, so memory stays bounded.
    """
    target = Path(path)
    suffix = _check_table(target)
    it = iter(rows)
    if columns is None:
        first = next(it, None)
        columns = instance_columns() if first is None else list(first)
        it = itertools.chain([] if first is None else [first], it)
    names = list(columns)
    for name in names:
        column_spec(name)
    with locked_table_path(target) as tmp:  # a killed run's leftover is removed next time
        return _WRITERS[suffix](it, tmp, names)
