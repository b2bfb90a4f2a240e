"""Header values as plain, typed Python for a table cell (see the package docstring)."""

from __future__ import annotations

import logging
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..dicom.tags import tag_text
from .columns import Column, ColumnType, Row

log = logging.getLogger(__name__)


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
    if type(value) is not list:  # `_raw_items` gives lists: they need no copy
        value = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    if len(value) == 1:  # the common case, without the list building below
        item = value[0]
        if not (item is not None and item != ""):
            return None
        one = _typed(item, column)
        return [one] if column.multi else one
    items = [v for v in value if v is not None and v != ""]
    if not items:
        return None
    values = [_typed(v, column) for v in items]
    if column.multi:
        return values
    if len(values) > 1 and column.kind is ColumnType.STR:  # a non-conformant repeat: keep it all
        return "\\".join(values)
    return values[0]


def _typed(item: Any, column: Column) -> Any:
    """One value item as the column's type."""
    if column.kind is ColumnType.INT:
        return _to_int(item)
    if column.kind is ColumnType.FLOAT:
        return _to_float(item)
    return _to_text(item, column.vr)


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


def _elements(source: Dataset | None) -> dict[int, Any]:
    """A data set's elements by plain int tag, as read (raw until a value is asked for).

    Why: one dict look-up per column instead of `Dataset.get_item`'s tag conversion and
    tag comparisons, a fifth of the columns' cost."""
    if source is None:
        return {}
    return {int(tag): element for tag, element in source.items()}


#: Cells decoded from raw bytes by (column, VR, little endian, bytes): most header values
#: repeat from file to file of a series, so most cells are one look-up. Bounded: cleared
#: when full, and long values are not kept.
_CELLS: dict[tuple[str, str | None, bool, bytes], Any] = {}
_CELLS_MAX = 16384  # a few MB at most: keys and cells of up to 256 bytes
_CELL_BYTES_MAX = 256


def forget_cells() -> None:
    """Empty the cell cache: each run starts cold (and a forked worker with an empty one)."""
    _CELLS.clear()


def _raw_cell(raw: Any, column: Column) -> Any:
    """The cell of a raw element decoded by `_raw_items`, or `_USE_PYDICOM`.

    A cell depends on nothing but the key of `_CELLS` (`_raw_items` decodes only what
    reads the same in every character set), so a cached one is the one decoded again.
    """
    value = raw.value
    if not isinstance(value, bytes) or len(value) > _CELL_BYTES_MAX or raw.length == 0xFFFFFFFF:
        items = _raw_items(raw, column.vr)
        return items if items is _USE_PYDICOM else _convert(items, column)
    key = (column.name, raw.VR, raw.is_little_endian, value)
    cell = _CELLS.get(key, _CELLS)
    if cell is _CELLS:
        items = _raw_items(raw, column.vr)
        cell = items if items is _USE_PYDICOM else _convert(items, column)
        if len(_CELLS) >= _CELLS_MAX:
            _CELLS.clear()
        _CELLS[key] = cell
    return list(cell) if type(cell) is list else cell  # each row its own list


def _cell(source: Dataset, element: Any, tag: int, column: Column) -> Any:
    """The cell of `element` (`tag` of `source`); None if absent."""
    if element is None:
        return None
    if getattr(element, "is_raw", False):
        cell = _raw_cell(element, column)
        if cell is not _USE_PYDICOM:
            return cell
    return _convert(source[tag].value, column)  # converted by pydicom (or a deferred read)


def _dicom_values(ds: Dataset, specs: Sequence[Column], path: str) -> Row:
    """The cells of the DICOM columns `specs` (group 0002 from the file meta)."""
    row: Row = {}
    elements = _elements(ds)
    meta: Dataset | None = None
    meta_elements: dict[int, Any] | None = None
    for column in specs:
        tag = column.tag
        if tag is None:
            continue
        source, found = ds, elements
        if tag >> 16 == 0x0002:
            if meta_elements is None:
                meta = getattr(ds, "file_meta", None)
                meta_elements = _elements(meta)
            source, found = meta, meta_elements  # type: ignore[assignment]
        try:
            row[column.name] = _cell(source, found.get(tag), tag, column)
        except Exception as exc:  # a malformed value spoils one cell, not the row
            log.debug("%s: cannot read %s (%s)", path, tag_text(tag), type(exc).__name__)
            row[column.name] = None
    return row
