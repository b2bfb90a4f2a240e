"""The common case, read lean: a file read once into memory, its File Meta's transfer syntax
read from the bytes, and native (uncompressed) single-sample frames taken by offset.

Each function answers only when the case is plainly the common one and returns None
otherwise, so the caller goes on with the general path (pydicom's readers and decoders): the
fast path never decides anything the general path would decide differently.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

#: Files up to this size are read whole and parsed from memory (larger ones keep their pixel
#: data on disk: `decoding.read_dataset` defers elements over 8 MB).
WHOLE_READ_LIMIT = 8 * 1024 * 1024

#: Explicit VR elements with a 4-byte length after two reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"))
_TRANSFER_SYNTAX_TAG = b"\x02\x00\x10\x00"
#: Native little-endian syntaxes whose frames are the pixel bytes as they lie.
_NATIVE_LITTLE = frozenset((pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian))


def meta_transfer_syntax(data: bytes) -> str | None:
    """The Transfer Syntax UID of a Part 10 file's File Meta, read from its bytes (PS3.10 7.1);
    None when the meta is not the plain explicit little-endian group 0002 with one such
    element (then pydicom's own reader decides)."""
    position, end, found = 132, len(data), None
    while position + 8 <= end and data[position : position + 2] == b"\x02\x00":
        tag = data[position : position + 4]
        vr = data[position + 4 : position + 6]
        if not vr.isalpha() or not vr.isupper():
            return None
        if vr in _LONG_VRS:
            length = int.from_bytes(data[position + 8 : position + 12], "little")
            start = position + 12
        else:
            length = int.from_bytes(data[position + 6 : position + 8], "little")
            start = position + 8
        if length == 0xFFFFFFFF or start + length > end:
            return None
        if tag == _TRANSFER_SYNTAX_TAG:
            if found is not None:
                return None
            found = data[start : start + length].rstrip(b"\0 ").decode("ascii", "replace")
        position = start + length
    return found


class _Layout(NamedTuple):
    value: bytes
    rows: int
    columns: int
    frames: int
    dtype: np.dtype[Any]


_LAYOUT = "_dcmexport_native_layout"


def _layout(ds: Dataset, ts: UID) -> _Layout | None:
    """Where the frames lie in native little-endian, one-sample, 8/16/32-bit pixel data of
    exactly the described length (remembered on the dataset); None for anything else."""
    cached = vars(ds).get(_LAYOUT, False)
    if cached is not False:
        return cast("_Layout | None", cached)
    layout = None
    if ts in _NATIVE_LITTLE and "PixelData" in ds:
        value = getattr(ds.get_item("PixelData", keep_deferred=True), "value", None)
        try:
            rows, columns = us_value(ds, 0x00280010), us_value(ds, 0x00280011)
            bits_allocated, bits_stored = us_value(ds, 0x00280100), us_value(ds, 0x00280101)
            signed, samples = us_value(ds, 0x00280103), us_value(ds, 0x00280002, 1)
            frames = int(ds.get("NumberOfFrames") or 1) if 0x00280008 in ds._dict else 1
        except (AttributeError, KeyError, TypeError, ValueError):
            value = None
        if isinstance(value, bytes) and (
            samples == 1
            and bits_allocated in (8, 16, 32)
            and 1 <= bits_stored <= bits_allocated
            and signed in (0, 1)
            and rows >= 1
            and columns >= 1
            and frames >= 1
        ):
            total = rows * columns * bits_allocated // 8 * frames
            if len(value) == total or (len(value) == total + 1 and total % 2):
                dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
                layout = _Layout(value, rows, columns, frames, dtype)
    vars(ds)[_LAYOUT] = layout
    return layout


def us_value(ds: Dataset, tag: int, default: int | None = None) -> int:
    """An US element of a little-endian dataset, from its raw two bytes when not yet
    converted (pydicom's attribute access costs ~15 µs); KeyError when absent without a
    `default`, ValueError when it is not one plain US value."""
    element = ds._dict.get(BaseTag(tag))
    if element is None:
        if default is None:
            raise KeyError(tag)
        return default
    if isinstance(element, RawDataElement):
        raw = element.value
        if element.VR not in (None, "US") or not isinstance(raw, bytes) or len(raw) != 2:
            raise ValueError(tag)
        return int.from_bytes(raw, "little")
    value = element.value
    if not isinstance(value, int):
        raise ValueError(tag)
    return value


def whole_native(ds: Dataset, ts: UID) -> bool:
    """True for plain native pixel data of exactly its described length (so not truncated)."""
    return _layout(ds, ts) is not None


def native_frame(ds: Dataset, ts: UID, frame_index: int) -> np.ndarray | None:
    """Frame `frame_index` of plain native pixel data (`whole_native`), as the bytes lie: what
    pydicom's `pixel_array` gives with ``correct_unused_bits=False``, read-only; None for
    anything else (then pydicom decodes it)."""
    layout = _layout(ds, ts)
    if layout is None or not 0 <= frame_index < layout.frames:
        return None
    count = layout.rows * layout.columns
    offset = frame_index * count * layout.dtype.itemsize
    pixels = np.frombuffer(layout.value, dtype=layout.dtype, count=count, offset=offset)
    return pixels.reshape(layout.rows, layout.columns)
