"""`dcmexport index`: a table of DICOM headers, one row per instance (or per series).

Why a module of its own: an index answers "what is in this pile of files?" before (or
instead of) a conversion, so it reads headers only (``stop_before_pixels``) and must be fast.
It reuses discovery, `decoding.read_dataset` and the batch engine's executors (in-process,
process pool or Dask), shipping chunks of paths to the top-level, picklable `read_headers`.

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

from __future__ import annotations

import collections
import csv
import dataclasses
import difflib
import enum
import functools
import itertools
import json
import logging
import math
import os
import re
import struct
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydicom.datadict import get_entry, keyword_dict, keyword_for_tag, tag_for_keyword
from pydicom.multival import MultiValue

from . import __version__, decoding
from .batch import IN_FLIGHT_PER_WORKER, check_run, chunks, executor, worker_slots
from .discovery import Found, discover, display_path
from .errors import DcmExportError, NotDicomError, UsageError
from .job import FileResult
from .writers import atomic_path

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from pydicom.dataset import Dataset

    from .batch import Reporter

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COLUMNS",
    "DERIVED_COLUMNS",
    "SERIES_COLUMNS",
    "TABLE_FORMATS",
    "Column",
    "IndexLevel",
    "IndexSummary",
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

Row = dict[str, Any]
Kind = Literal["int", "float", "str"]
T = TypeVar("T")

#: Files per worker task: a header read takes about 1 ms, so 64 amortise pickling and
#: scheduling (a Dask task costs about as much as a read) and still spread small inputs.
CHUNK_SIZE = 64
#: Rows per Parquet record batch: memory stays bounded for a million-file index.
PARQUET_BATCH_ROWS = 8192

#: The columns of a default index: identifiers and UIDs, dates, descriptions, equipment,
#: pixel description, geometry, windows, then what the reader and the file system add.
# fmt: off
DEFAULT_COLUMNS: tuple[str, ...] = (
    "path",
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
    "SeriesInstanceUID", "SeriesDate", "SeriesNumber", "SeriesDescription", "Modality",
    "BodyPartExamined",
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "AcquisitionDate",
    "Manufacturer", "ManufacturerModelName",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "PixelRepresentation",
    "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
    "transfer_syntax", "file_size", "status", "error",
)
# fmt: on

#: Table formats by file suffix (any case).
TABLE_FORMATS: tuple[str, ...] = (".csv", ".parquet")

_INT_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV", "US or SS"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
#: Sequences and bulk binary data have no place in a flat table of header values.
_UNTABULAR_VRS = frozenset(
    {"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "OB or OW", "US or OW", "US or SS or OW", "NONE"}
)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@dataclasses.dataclass(frozen=True)
class Column:
    """How one table column is read and typed: the same for every row and every run."""

    name: str
    #: the DICOM tag read, None for a derived column
    tag: int | None
    kind: Kind
    #: True: a list in every row (the dictionary's Value Multiplicity allows several values)
    multi: bool = False
    vr: str = ""


#: Columns that come from the file system or the reader, not from a tag.
DERIVED_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("path", None, "str"),
        Column("file_size", None, "int"),
        Column("transfer_syntax", None, "str"),
        Column("status", None, "str"),
        Column("error", None, "str"),
    )
}
#: Columns that only a series table has (see `series_rows`).
_SERIES_DERIVED: dict[str, Column] = {
    name: Column(name, None, "int")
    for name in ("files", "instances", "frames", "instance_number_min", "instance_number_max")
}

#: The counts `series_rows` adds to every series row.
SERIES_COLUMNS: tuple[str, ...] = ("files", "instances", "frames")
_FIRST, _LAST = ("path",), ("status", "error")
#: Series columns computed over the instances rather than shared by them.
_AGGREGATED = frozenset(
    {*_FIRST, *_LAST, *SERIES_COLUMNS, "file_size", "instance_number_min", "instance_number_max"}
)
#: What a series row needs from its instances: read even when not asked for.
_SERIES_INPUTS = ("SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber", "NumberOfFrames", "Rows")


class IndexLevel(str, enum.Enum):
    """One row per instance (file) or one per series (``--level``)."""

    INSTANCE = "instance"
    SERIES = "series"


# --------------------------------------------------------------------------- columns


@functools.lru_cache(maxsize=1)
def _names_by_lower_case() -> dict[str, str]:
    """Keywords and derived names by their lower-case form: ``patientname`` works too."""
    names = {k.lower(): k for k in keyword_dict}
    names.update({k.lower(): k for k in DERIVED_COLUMNS})
    return names


_TAG_FORMS = (
    re.compile(r"^\(?\s*([0-9a-f]{4})\s*,\s*([0-9a-f]{4})\s*\)?$", re.IGNORECASE),
    re.compile(r"^0x([0-9a-f]{1,8})$", re.IGNORECASE),
    re.compile(r"^([0-9a-f]{8})$", re.IGNORECASE),
)
#: A ``(GGGG,EEEE)`` or ``GGGG,EEEE`` tag is one token; elsewhere commas and spaces separate.
_TOKEN = re.compile(
    r"\(\s*[0-9a-f]{4}\s*,\s*[0-9a-f]{4}\s*\)|(?<!\w)[0-9a-f]{4},[0-9a-f]{4}(?!\w)|[^,\s]+",
    re.IGNORECASE,
)


def _parse_tag(token: str) -> int | None:
    """The tag of a ``GGGG,EEEE``, ``(GGGG,EEEE)``, ``GGGGEEEE`` or ``0xGGGGEEEE`` token.

    As in ``info --tag``, leading zeros of the hex form may be dropped: ``0x281050``.
    """
    for form in _TAG_FORMS:
        match = form.match(token)
        if match:
            return int("".join(match.groups()), 16)
    return None


def _name_for_tag(tag: int) -> str:
    """The keyword if it names exactly this tag (not another repeater group), else GGGGEEEE."""
    keyword = keyword_for_tag(tag)
    return keyword if keyword and tag_for_keyword(keyword) == tag else f"{tag:08X}"


def _resolve(token: str) -> str:
    """The column name for a keyword (any case), derived name or tag; `UsageError` if none."""
    token = token.strip()
    tag = _parse_tag(token)
    name = _name_for_tag(tag) if tag is not None else _names_by_lower_case().get(token.lower())
    if name is None:
        close = difflib.get_close_matches(token, list(_names_by_lower_case().values()), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"unknown column {token!r}: use a DICOM keyword, a tag such as 0010,0010, "
            f"or one of {', '.join(DERIVED_COLUMNS)}{hint}"
        )
    column_spec(name)  # rejects sequences and bulk data
    return name


def normalize_columns(columns: Iterable[str]) -> tuple[str, ...]:
    """Canonical, de-duplicated column names for keywords, tags or derived names."""
    return tuple(dict.fromkeys(_resolve(c) for c in columns))


def parse_columns(text: str | Iterable[str]) -> tuple[str, ...]:
    """Column names from ``--columns`` text: keywords or tags, separated by commas or spaces.

    ``"PatientID, 0008,0060 (0018,0050) 0x00280030"`` gives
    ``("PatientID", "Modality", "SliceThickness", "PixelSpacing")``. Tags without a keyword
    (private tags) are named ``GGGGEEEE``. Several strings (a repeated option) are joined.
    """
    if not isinstance(text, str):
        text = ",".join(text)
    columns = normalize_columns(_TOKEN.findall(text))
    if not columns:
        raise UsageError("--columns: name at least one keyword or tag")
    return columns


@functools.lru_cache(maxsize=4096)
def column_spec(name: str) -> Column:
    """The `Column` for a canonical name (see `parse_columns`); `UsageError` for sequences."""
    derived = DERIVED_COLUMNS.get(name) or _SERIES_DERIVED.get(name)
    if derived is not None:
        return derived
    tag = tag_for_keyword(name)
    tag = _parse_tag(name) if tag is None else tag
    if tag is None:
        raise UsageError(f"unknown column {name!r}")
    try:
        vr, vm = get_entry(tag)[:2]
    except KeyError:  # a private or unknown tag: its VR is known only per file, so text
        return Column(name, tag, "str")
    if vr in _UNTABULAR_VRS:
        raise UsageError(f"{name} is {vr} (a sequence or bulk data): it cannot be a column")
    kind: Kind = "int" if vr in _INT_VRS else "float" if vr in _FLOAT_VRS else "str"
    return Column(name, tag, kind, multi=vm != "1", vr=vr)


def instance_columns(columns: Iterable[str] = DEFAULT_COLUMNS) -> tuple[str, ...]:
    """`columns` with ``path`` first and ``status``, ``error`` last (every row says its fate)."""
    middle = [c for c in normalize_columns(columns) if c not in (*_FIRST, *_LAST)]
    return (*_FIRST, *middle, *_LAST)


def series_columns(columns: Iterable[str] = DEFAULT_COLUMNS) -> tuple[str, ...]:
    """The columns of a series table made from instance `columns`.

    ``SOPInstanceUID`` goes (it differs per instance), ``InstanceNumber`` becomes its range,
    ``SeriesInstanceUID`` is always there (it is the key), and `SERIES_COLUMNS` are added.
    """
    out: list[str] = []
    for name in instance_columns(columns)[: -len(_LAST)]:
        if name == "InstanceNumber":
            out += ["instance_number_min", "instance_number_max"]
        elif name != "SOPInstanceUID":
            out.append(name)
    if "SeriesInstanceUID" not in out:
        out.insert(len(_FIRST), "SeriesInstanceUID")
    return (*out, *SERIES_COLUMNS, *_LAST)


# --------------------------------------------------------------------------- values


_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # YYYYMMDD, or ACR-NEMA's YYYY.MM.DD
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?$")
_INT64 = range(-(2**63), 2**63)


def _iso_date(text: str) -> str:
    match = _DA.match(text)
    return "-".join(match.groups()) if match else text


def _iso_time(text: str) -> str:
    match = _TM.match(text)
    if not match:
        return text
    hh, mm, ss, fraction = match.groups()
    return ":".join(p for p in (hh, mm, ss) if p) + (fraction or "")


def _to_int(value: Any) -> int | None:
    """IS strings and binary integers (an integral "2.0" too); None if not an int64."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        as_float = _to_float(value)
        if as_float is None or not as_float.is_integer():
            return None
        number = int(as_float)
    return number if number in _INT64 else None


def _to_float(value: Any) -> float | None:
    """DS strings and binary floats; None for NaN and infinities (no JSON for them in CSV)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _to_text(value: Any, vr: str) -> str:
    """Text for a string VR: ISO dates and times, PN in full, AT as GGGGEEEE."""
    if isinstance(value, bytes):  # UN or a private tag: text if it is text, else hex
        text = value.rstrip(b"\x00 ").decode("latin-1")
        return text if text.isprintable() else value.hex()
    if vr == "AT" and isinstance(value, int):
        return f"{value:08X}"
    if hasattr(value, "isoformat"):  # pydicom's datetime_conversion is on
        return str(value.isoformat())
    text = str(value).rstrip("\0 ")  # trailing spaces are never significant (PS3.5 6.2)
    if vr == "DA":
        return _iso_date(text)
    return _iso_time(text) if vr == "TM" else text


def _convert(value: Any, column: Column) -> Any:
    """An element's value as plain Python, typed and shaped by `column`."""
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    items = [v for v in items if v is not None and v != ""]
    if not items:
        return None
    if column.kind == "int":
        values: list[Any] = [_to_int(v) for v in items]
    elif column.kind == "float":
        values = [_to_float(v) for v in items]
    else:
        values = [_to_text(v, column.vr) for v in items]
    if column.multi:
        return values
    if len(values) > 1 and column.kind == "str":  # a non-conformant repeat: keep it all
        return "\\".join(values)
    return values[0]


#: VRs whose bytes mean the same in every character set (PS3.5 6.1.2.3).
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: Multi-valued text VRs decoded per Specific Character Set, unless the bytes are plain
#: ASCII without ESC (ISO 2022 code extensions): those read the same in every character set.
_TEXT_VRS = frozenset({"LO", "PN", "SH", "UC"})
_BINARY_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_USE_PYDICOM = object()


def _raw_items(raw: Any, vr: str) -> Any:
    """The items of a raw element's bytes, decoded here, or `_USE_PYDICOM`.

    Why: pydicom's per-element conversion (character set look-up, validation, value
    classes) costs more than reading the file; decoding the plain cases directly makes an
    index about 1.4× faster. Anything unusual goes through pydicom, and a test checks
    that both give the same values.
    """
    value, vr = raw.value, raw.VR or vr
    if not isinstance(value, bytes) or raw.length == 0xFFFFFFFF:  # undefined length
        return _USE_PYDICOM
    if vr in _ASCII_VRS or (vr in _TEXT_VRS and value.isascii() and b"\x1b" not in value):
        return [item.rstrip("\0 ") for item in value.decode("latin-1").split("\\")]
    code = _BINARY_VRS.get(vr)
    if code is None:
        return _USE_PYDICOM
    order = "<" if raw.is_little_endian else ">"
    size = struct.calcsize(order + code)
    if len(value) % size:
        return _USE_PYDICOM
    return list(struct.unpack(f"{order}{len(value) // size}{code}", value))


def _element_value(ds: Dataset, tag: int, vr: str) -> Any:
    """The value of `tag` (from the file meta for group 0002); None if absent."""
    source = getattr(ds, "file_meta", None) if tag >> 16 == 0x0002 else ds
    if source is None or tag not in source:
        return None
    element = source.get_item(tag)
    if getattr(element, "is_raw", False):
        items = _raw_items(element, vr)
        if items is not _USE_PYDICOM:
            return items
    return source[tag].value


def _dicom_values(ds: Dataset, specs: Sequence[Column], path: str) -> Row:
    row: Row = {}
    for column in specs:
        if column.tag is None:
            continue
        try:
            row[column.name] = _convert(_element_value(ds, column.tag, column.vr), column)
        except Exception as exc:  # a malformed value spoils one cell, not the row
            log.debug("%s: cannot read %s (%s)", path, _tag_text(column.tag), type(exc).__name__)
            row[column.name] = None
    return row


# --------------------------------------------------------------------------- the worker


def _truncation(ds: Dataset) -> str | None:
    """Why a header that pydicom read without complaint is cut short, or None.

    pydicom stops silently at the end of a file, so a file cut inside its header reads as
    a shorter data set, whose last element holds fewer bytes than its length says.
    """
    tags = list(ds.keys())
    if not tags:
        return "truncated DICOM file: no data set after the file meta"
    last = ds.get_item(max(tags))
    length, value = getattr(last, "length", None), getattr(last, "value", None)
    if isinstance(value, bytes) and isinstance(length, int) and len(value) < length:
        return f"truncated DICOM file: it ends inside {_tag_text(max(tags))}"
    return None


def _read_values(path: str, specs: Sequence[Column]) -> Row:
    """The DICOM columns of one file; `NotDicomError` for an unusable header."""
    ds = decoding.read_dataset(path, stop_before_pixels=True)
    problem = _truncation(ds)
    if problem:
        raise NotDicomError(problem)
    row = _dicom_values(ds, specs, path)
    row["transfer_syntax"] = str(decoding.transfer_syntax(ds))
    return row


def _failure(path: str, exc: Exception) -> tuple[str, str]:
    """(status, reason) for a file that could not be indexed."""
    if isinstance(exc, NotDicomError):
        try:
            part10 = decoding.has_dicm_prefix(path)
        except OSError:
            part10 = True
        return ("error" if part10 else "skipped"), str(exc)
    if isinstance(exc, DcmExportError):  # e.g. the file could not be read
        return "error", str(exc)
    if isinstance(exc, OSError):
        return "error", f"cannot read the file ({exc.strerror or type(exc).__name__})"
    return "error", f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def read_header(path: str, columns: Sequence[str]) -> Row:
    """The row of one file, with exactly the keys `columns`; never raises for the file."""
    row: Row = dict.fromkeys(columns)
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            values = _read_values(path, [column_spec(c) for c in columns])
        row.update((k, v) for k, v in values.items() if k in row)
        row["status"] = "ok"
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        row["status"], row["error"] = _failure(path, exc)
        log.debug("%s: %s", path, row["error"])
    row["path"] = display_path(path)
    if "file_size" in row:
        row["file_size"] = _file_size(path)
    return row


def read_headers(paths: Sequence[str], columns: Sequence[str]) -> list[Row]:
    """The rows of a chunk of files: the picklable unit of work for a process pool or Dask."""
    return [read_header(path, columns) for path in paths]


# --------------------------------------------------------------------------- running


def _as_found(chunk: list[Found], future: Future[list[Row]]) -> list[Row]:
    """A chunk's rows with the paths as found: workers read absolute ones (Dask)."""
    rows = future.result()
    for found, row in zip(chunk, rows, strict=True):
        row["path"] = display_path(found.path)
    return rows


def _rows_in_order(
    found: Iterable[Found], executor: Executor | None, columns: tuple[str, ...], jobs: int
) -> Iterator[Row]:
    """Rows in discovery order, whichever chunk finishes first: one table from any scheduler.

    At most `jobs` × `IN_FLIGHT_PER_WORKER` chunks are queued, so discovery streams and
    memory stays bounded; waiting for the oldest chunk costs little as chunks are alike.
    """
    if executor is None:
        for f in found:
            yield read_header(str(f.path), columns)
        return
    pending: collections.deque[tuple[list[Found], Future[list[Row]]]] = collections.deque()
    for chunk in chunks(found, CHUNK_SIZE):
        paths = [os.path.abspath(f.path) for f in chunk]
        pending.append((chunk, executor.submit(read_headers, paths, columns)))
        if len(pending) >= jobs * IN_FLIGHT_PER_WORKER:
            yield from _as_found(*pending.popleft())
    while pending:
        yield from _as_found(*pending.popleft())


def _index(
    inputs: list[Path],
    columns: tuple[str, ...],
    jobs: int,
    scheduler: str | None,
    exclude: Iterable[Path] = (),
    table: Path | None = None,
) -> Iterator[Row]:
    """The rows, made within the executor's lifetime (closing the generator ends both)."""
    with executor(jobs, scheduler) as pool:
        found: Iterable[Found] = discover(inputs, exclude)
        if table is not None:
            found = _not_the_table(found, table)
        yield from _rows_in_order(found, pool, columns, worker_slots(pool, jobs))


def _not_the_table(found: Iterable[Found], table: Path) -> Iterator[Found]:
    """Leave out the table being written (and its temporary file) if it lies under an input."""
    folder, name, suffix = table.parent.resolve(), table.name, table.suffix
    for f in found:
        temporary = f.path.name.startswith(".tmp-") and f.path.name.endswith(suffix)
        named_so = f.path.name == name or temporary  # `writers.atomic_path` names
        if not (named_so and f.path.parent.resolve() == folder):  # resolves only if named so
            yield f


def index_rows(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    columns: Iterable[str] = DEFAULT_COLUMNS,
    jobs: int | None = None,
    scheduler: str | None = None,
    exclude: Iterable[Path] = (),
) -> Iterator[Row]:
    """One row per file under `inputs`, in discovery order, from header-only reads.

    Rows have the keys `instance_columns(columns)`. `jobs` worker processes (default: all
    cores; 1 = in-process) or a Dask `scheduler` address (``tcp://host:8786``); `exclude`
    folders are not searched. A missing input or an unknown column raises `UsageError` now,
    before any file is read; a problem with one file becomes that file's row.
    """
    paths = [Path(p) for p in inputs]
    names = instance_columns(columns)
    return _index(paths, names, check_run(paths, jobs), scheduler, list(exclude))


# --------------------------------------------------------------------------- series level


@dataclasses.dataclass
class _Series:
    """A series row under construction: shared values, counts, ranges, common folder."""

    row: Row
    folder: str | None
    instances: set[Any] = dataclasses.field(default_factory=set)
    varying: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def start(cls, row: Row, columns: Sequence[str]) -> _Series:
        out = {c: row.get(c) for c in columns if c not in SERIES_COLUMNS}
        out.update(files=0, instances=0, frames=0 if row["status"] == "ok" else None)
        out.update(instance_number_min=None, instance_number_max=None, file_size=0)
        series = cls(out, os.path.dirname(row["path"]))
        series.add(row)
        return series

    def add(self, row: Row) -> None:
        out = self.row
        out["files"] += 1
        out["file_size"] = _plus(out["file_size"], row.get("file_size"))
        uid = row.get("SOPInstanceUID") or object()  # no UID: an instance of its own
        if row["status"] == "ok" and uid not in self.instances:
            self.instances.add(uid)
            out["instances"] += 1
            out["frames"] += _frames(row)
        number = row.get("InstanceNumber")
        if number is not None:
            low, high = out["instance_number_min"], out["instance_number_max"]
            out["instance_number_min"] = number if low is None else min(low, number)
            out["instance_number_max"] = number if high is None else max(high, number)
        for name in out.keys() - _AGGREGATED - self.varying:
            if row.get(name) != out[name]:
                self.varying.add(name)
                out[name] = None
        self.folder = _common_folder(self.folder, row["path"])

    def finish(self) -> Row:
        if self.row["files"] > 1:
            self.row["path"] = self.folder
        return self.row


def _frames(row: Row) -> int:
    """Number of Frames; 1 when absent from an image, 0 for an instance without one."""
    return row.get("NumberOfFrames") or (1 if row.get("Rows") else 0)


def _plus(total: int | None, value: int | None) -> int | None:
    return None if total is None or value is None else total + value


def _common_folder(folder: str | None, path: str) -> str | None:
    if folder is None:
        return None
    try:
        return os.path.commonpath([folder, os.path.dirname(path)]) or None
    except ValueError:  # relative and absolute paths, or two drives
        return None


def series_rows(rows: Iterable[Row], columns: Sequence[str] | None = None) -> list[Row]:
    """One row per series (by Series Instance UID), in the order series first appear.

    A cell holds the value every instance of the series shares; a value that varies within
    the series (a per-slice window, say) is left empty, so a row never passes one instance's
    value off as the series', and the table does not depend on file order. ``files``,
    ``instances`` (distinct SOP Instance UIDs: a copy of a file counts once) and ``frames``
    (Number of Frames; 1 for a single-frame image, 0 for no image) are counts,
    ``file_size`` is a total, ``instance_number_min``/``_max`` a range, and ``path`` the
    deepest folder holding all the series' files. Files without a Series Instance UID (a
    DICOMDIR, unreadable and non-DICOM files) keep a row each, with their own path and
    reason. `columns` defaults to `series_columns` of the rows' keys; the rows need the
    columns of `_SERIES_INPUTS`.
    """
    groups: dict[tuple[str, Any], _Series] = {}
    names: Sequence[str] = columns or ()
    for position, row in enumerate(rows):
        names = names or series_columns(row.keys())
        uid = row.get("SeriesInstanceUID")
        key = ("series", uid) if row["status"] == "ok" and uid else ("file", position)
        if key in groups:
            groups[key].add(row)
        else:
            groups[key] = _Series.start(row, names)
    return [{c: g.finish().get(c) for c in names} for g in groups.values()]


# --------------------------------------------------------------------------- writing


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
            "Parquet output needs pyarrow: pip install pyarrow (or pip install "
            "'dcmexport[parquet]'), or write a .csv table"
        ) from None
    return pyarrow


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return repr(value) if isinstance(value, float) else value  # repr: shortest exact float


def _write_csv(rows: Iterable[Row], target: Path, columns: Sequence[str]) -> int:
    count = 0
    with open(target, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
            count += 1
    return count


def _arrow_schema(pa: Any, columns: Sequence[str]) -> Any:
    """Types from the DICOM dictionary (see the module docstring); tag and VR as metadata."""
    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    fields = []
    for name in columns:
        spec = column_spec(name)
        arrow_type = pa.list_(types[spec.kind]) if spec.multi else types[spec.kind]
        meta = None if spec.tag is None else {"tag": _tag_text(spec.tag), "vr": spec.vr}
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
    with atomic_path(target) as tmp:
        return _WRITERS[suffix](it, tmp, names)


# --------------------------------------------------------------------------- one call


@dataclasses.dataclass
class IndexSummary:
    """The outcome of `build_index`: what was found, what was written, how fast."""

    table: Path
    level: IndexLevel = IndexLevel.INSTANCE
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    rows: int = 0
    elapsed: float = 0.0

    @property
    def files(self) -> int:
        return self.ok + self.skipped + self.failed

    @property
    def files_per_second(self) -> float:
        return self.files / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 every DICOM file indexed, 1 some could not be read, 2 no DICOM file found."""
        if self.failed:
            return 1
        return 0 if self.ok else 2

    def count(self, row: Row) -> None:
        if row["status"] == "ok":
            self.ok += 1
        elif row["status"] == "skipped":
            self.skipped += 1
        else:
            self.failed += 1


def _counted(
    rows: Iterable[Row], summary: IndexSummary, reporter: Reporter | None
) -> Iterator[Row]:
    """Pass rows on, counting them and telling `reporter` (the CLI's progress bar)."""
    for row in rows:
        summary.count(row)
        if reporter is not None:
            reporter.result(FileResult(row["path"], row["status"], [], row["error"] or ""))
        yield row


def _level(level: IndexLevel | str) -> IndexLevel:
    try:
        return IndexLevel(level)
    except ValueError:
        choices = " or ".join(v.value for v in IndexLevel)
        raise UsageError(f"--level {level}: use {choices}") from None


def build_index(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    columns: Iterable[str] = DEFAULT_COLUMNS,
    level: IndexLevel | str = IndexLevel.INSTANCE,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
) -> IndexSummary:
    """Index every file under `inputs` into the table `output` (``.csv`` or ``.parquet``).

    All of ``dcmexport index`` in one call: checks every argument before reading a file,
    reads headers on `jobs` processes or a Dask `scheduler`, groups by series for
    ``level="series"``, writes the table atomically. `reporter` (as for `batch.convert`)
    gets the number of files, then a `FileResult` per file.
    """
    started = time.perf_counter()
    table, level = Path(output), _level(level)
    _check_table(table)
    paths = [Path(p) for p in inputs]
    wanted = instance_columns(columns)
    n_jobs = check_run(paths, jobs)
    if level is IndexLevel.SERIES:
        read, out_columns = instance_columns([*wanted, *_SERIES_INPUTS]), series_columns(wanted)
    else:
        read = out_columns = wanted
    if reporter is not None:  # a second walk of the folders: cheap beside reading files
        reporter.start(sum(1 for _ in _not_the_table(discover(paths), table)))
    summary = IndexSummary(table, level)
    rows = _counted(_index(paths, read, n_jobs, scheduler, table=table), summary, reporter)
    if level is IndexLevel.SERIES:
        rows = iter(series_rows(rows, out_columns))
    summary.rows = write_table(rows, table, out_columns)
    summary.elapsed = time.perf_counter() - started
    log.info("indexed %d file(s) into %s: %d row(s)", summary.files, table, summary.rows)
    return summary
