"""The columns of an index: names in the one tag grammar, types from the DICOM dictionary.

A column's type comes from the dictionary, never from the data, so every table (and every
file of a partitioned data set) has the same schema; see the package docstring.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterable
from typing import Any

from pydicom.datadict import get_entry, tag_for_keyword

from ..dicom import tags
from ..errors import UsageError

Row = dict[str, Any]


class ColumnType(str, enum.Enum):
    """How a column's values are typed (and stored in Parquet)."""

    INT = "int"
    FLOAT = "float"
    STR = "str"


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

_INT_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV", "US or SS"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
#: Sequences and bulk binary data have no place in a flat table of header values.
_UNTABULAR_VRS = frozenset(
    {"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "OB or OW", "US or OW", "US or SS or OW", "NONE"}
)


@dataclasses.dataclass(frozen=True)
class Column:
    """How one table column is read and typed: the same for every row and every run."""

    name: str
    #: the DICOM tag read, None for a derived column
    tag: int | None
    kind: ColumnType
    #: True: a list in every row (the dictionary's Value Multiplicity allows several values)
    multi: bool = False
    vr: str = ""


#: Columns that come from the file system or the reader, not from a tag.
DERIVED_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("path", None, ColumnType.STR),
        Column("file_size", None, ColumnType.INT),
        Column("transfer_syntax", None, ColumnType.STR),
        Column("status", None, ColumnType.STR),
        Column("error", None, ColumnType.STR),
    )
}
#: Columns that only a series table has (see `series_rows`).
_SERIES_DERIVED: dict[str, Column] = {
    name: Column(name, None, ColumnType.INT)
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


@functools.lru_cache(maxsize=1)
def _derived_by_lower_case() -> dict[str, str]:
    """Derived column names by their lower-case form: ``FILE_SIZE`` works too."""
    return {k.lower(): k for k in DERIVED_COLUMNS}


def _resolve(token: str) -> str:
    """The column name for a derived name or a tag in the one tag grammar (`dicom.tags`);
    `UsageError` if it is neither."""
    token = token.strip()
    name = _derived_by_lower_case().get(token.lower())
    if name is None:
        try:
            name = tags.column_name(tags.parse_tag(token))
        except UsageError:
            close = tags.close_keywords(token, DERIVED_COLUMNS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"unknown column {token!r}: use a DICOM keyword, a tag such as 0010,0010, "
                f"or one of {', '.join(DERIVED_COLUMNS)}{hint}"
            ) from None
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
    columns = normalize_columns(tags.split_tags(text))
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
    if tag is None:
        try:
            tag = int(tags.parse_tag(name))
        except UsageError:
            raise UsageError(f"unknown column {name!r}") from None
    try:
        vr, vm = get_entry(tag)[:2]
    except KeyError:  # a private or unknown tag: its VR is known only per file, so text
        return Column(name, tag, ColumnType.STR)
    if vr in _UNTABULAR_VRS:
        raise UsageError(f"{name} is {vr} (a sequence or bulk data): it cannot be a column")
    kind = ColumnType.STR
    if vr in _INT_VRS:
        kind = ColumnType.INT
    elif vr in _FLOAT_VRS:
        kind = ColumnType.FLOAT
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
