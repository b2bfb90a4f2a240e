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
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    items = [v for v in items if v is not None and v != ""]
    if not items:
        return None
    if column.kind is ColumnType.INT:
        values: list[Any] = [_to_int(v) for v in items]
    elif column.kind is ColumnType.FLOAT:
        values = [_to_float(v) for v in items]
    else:
        values = [_to_text(v, column.vr) for v in items]
    if column.multi:
        return values
    if len(values) > 1 and column.kind is ColumnType.STR:  # a non-conformant repeat: keep it all
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
    if source is None:
        return None
    element = source.get_item(tag)  # None when absent
    if element is None:
        return None
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
            log.debug("%s: cannot read %s (%s)", path, tag_text(column.tag), type(exc).__name__)
            row[column.name] = None
    return row
