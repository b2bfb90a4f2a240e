"""A fast, read-only scan of a few top-level header values, for tools that touch many files.

Why: the HTML report needs a dozen identifying values (study, series, modality, size) of every
converted input; pydicom's `dcmread` takes ~0.35 ms per small file, which alone would make a
report of 10 000 slices cost more than a tenth of their conversion. This walks the common case
(Part 10, a dataset in Explicit VR Little Endian, a single-byte or UTF-8 character set) in
~50 µs and returns None for anything else, so the caller falls back to a full pydicom read.
Values come back as text, as pydicom's `str()` of the element gives them (numbers in decimal).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

__all__ = ["SCAN_KEYWORDS", "scan_header"]

#: The elements `scan_header` can return, by keyword: (group, element) and how to decode it.
SCAN_KEYWORDS: dict[str, int] = {
    "SpecificCharacterSet": 0x00080005,
    "StudyDate": 0x00080020,
    "Modality": 0x00080060,
    "StudyDescription": 0x00081030,
    "SeriesDescription": 0x0008103E,
    "PatientName": 0x00100010,
    "PatientID": 0x00100020,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SeriesNumber": 0x00200011,
    "InstanceNumber": 0x00200013,
    "NumberOfFrames": 0x00280008,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
}

#: Transfer syntaxes whose dataset is not Explicit VR Little Endian (every encapsulated,
#: i.e. compressed, syntax encodes its dataset that way, PS3.5 A.4).
_OTHER_ENCODINGS = frozenset(
    (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.2")
)
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
#: Specific Character Set values whose text decodes with one Python codec (PS3.3 C.12.1.1.2).
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_HEAD_SIZES = (16 * 1024, 256 * 1024)  # most headers fit the first read; a few need more

_tag_vr = struct.Struct("<HH2s")
_u16 = struct.Struct("<H")
_u32 = struct.Struct("<I")


class _Unusual(Exception):
    """The file leaves the fast path: the caller reads it with pydicom instead."""


class _NeedMore(_Unusual):
    """The header goes on beyond the bytes read."""


def _element(buf: bytes, pos: int) -> tuple[int, bytes, int, int]:
    """(tag, VR, value offset, value length) of the explicit-VR element at `pos`."""
    if pos + 8 > len(buf):
        raise _NeedMore
    group, elem, vr = _tag_vr.unpack_from(buf, pos)
    tag = group << 16 | elem
    if group == 0xFFFE:  # item and delimiters carry no VR
        return tag, b"", pos + 8, _u32.unpack_from(buf, pos + 4)[0]
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _NeedMore
        return tag, vr, pos + 12, _u32.unpack_from(buf, pos + 8)[0]
    if not vr.isalpha():
        raise _Unusual
    return tag, vr, pos + 8, _u16.unpack_from(buf, pos + 6)[0]


def _skip_undefined(buf: bytes, pos: int, end_tag: int) -> int:
    """The offset after the delimiter `end_tag` closing an undefined-length value at `pos`."""
    while True:
        tag, vr, start, length = _element(buf, pos)
        if tag == end_tag:
            return start
        if length == _UNDEFINED:
            inner_end = _SEQ_END if vr == b"SQ" or vr == b"UN" else _ITEM_END
            if tag == _ITEM:
                inner_end = _ITEM_END
            pos = _skip_undefined(buf, start, inner_end)
        else:
            pos = start + length
        if pos > len(buf):
            raise _NeedMore


def _decode(vr: bytes, raw: bytes, codec: str) -> str:
    if vr == b"US":
        return str(_u16.unpack_from(raw)[0]) if len(raw) >= 2 else ""
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"SS", b"UL", b"SL", b"FL", b"FD", b"AT"):
        raise _Unusual  # none of our keywords has these VRs in a conformant file
    text = raw.decode(codec if vr in (b"LO", b"SH", b"PN", b"LT", b"ST", b"UT", b"UC") else "ascii")
    return text.rstrip("\x00 ").lstrip(" ") if vr != b"UI" else text.rstrip("\x00 ")


def _meta_end_and_syntax(buf: bytes) -> tuple[int, bytes]:
    """Where the dataset starts after the file meta, and the Transfer Syntax UID."""
    if buf[128:132] != b"DICM":
        raise _Unusual
    pos, syntax = 132, b""
    while pos + 8 <= len(buf) and buf[pos : pos + 2] == b"\x02\x00":
        tag, _vr, start, length = _element(buf, pos)
        if length == _UNDEFINED:
            raise _Unusual
        if tag == 0x00020010:
            syntax = buf[start : start + length].rstrip(b"\x00 ")
        pos = start + length
    return pos, syntax


def _scan(buf: bytes, complete: bool, wanted: dict[int, str]) -> dict[str, str]:
    """The wanted values; `complete` says `buf` is the whole file."""
    pos, syntax = _meta_end_and_syntax(buf)
    if not syntax or syntax in _OTHER_ENCODINGS:
        raise _Unusual
    last = max(wanted)
    raw_values: dict[int, tuple[bytes, bytes]] = {}
    while pos < len(buf):
        tag, vr, start, length = _element(buf, pos)
        if tag > last or tag == 0x7FE00010:
            break
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, start, _SEQ_END)
            continue
        if tag in wanted or tag == 0x00080005:
            if start + length > len(buf):
                raise _NeedMore
            raw_values[tag] = (vr, buf[start : start + length])
        pos = start + length
    else:
        if not complete:
            raise _NeedMore
    charset = raw_values.get(0x00080005, (b"", b""))[1].decode("ascii", "replace").strip(" \x00")
    codec = _CODECS.get(charset)
    if codec is None:
        raise _Unusual  # multi-valued or ISO 2022 character sets: leave them to pydicom
    return {
        wanted[tag]: _decode(vr, raw, codec)
        for tag, (vr, raw) in raw_values.items()
        if tag in wanted
    }


def scan_header(
    path: str | os.PathLike[str], keywords: Iterable[str] = tuple(SCAN_KEYWORDS)
) -> dict[str, str] | None:
    """The present `keywords` (a subset of `SCAN_KEYWORDS`) of a top-level dataset as text, or
    None when the file is not a Part 10 file with an Explicit VR Little Endian dataset
    that this scan reads.

    Raises OSError when the file cannot be read. Values nested in sequences are never returned.
    """
    wanted = {SCAN_KEYWORDS[k]: k for k in keywords}
    with open(path, "rb") as f:
        buf = b""
        for size in _HEAD_SIZES:
            buf += f.read(size - len(buf))
            try:
                return _scan(buf, len(buf) < size, wanted)
            except _NeedMore:
                continue
            except (_Unusual, struct.error, UnicodeDecodeError, ValueError):
                return None
    return None
