"""What is left of a file cut inside an undefined-length element (PS3.5 7.5, A.4).

pydicom reads a file cut inside a sequence or encapsulated Pixel Data either not at all
("No tag to read at file position …") or as an empty dataset (its top-level reader builds
the elements in one expression, so an end-of-file warning there drops every one of them).
DCMTK reads the elements before the cut. Here: the elements before the cut element as
pydicom reads them, plus what of the cut element is whole: the complete items of a
sequence, the complete fragments of encapsulated Pixel Data. Only called after pydicom
failed, so a whole file costs nothing.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import struct

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial, read_sequence_item
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

log = logging.getLogger(__name__)

#: (FFFE,E000) Item and (FFFE,E00D) Item Delimitation Item
_ITEM, _ITEM_DELIMITER = 0xFFFEE000, 0xFFFEE00D
_PIXEL_DATA = 0x7FE00010


@dataclasses.dataclass(frozen=True)
class Salvaged:
    """A dataset read up to a cut, and where the cut is (for `info` and the manifest)."""

    ds: Dataset
    where: str  # "(7FE1,1020)" or "Pixel Data"
    detail: str  # "2 complete item(s) read", "9 complete fragment(s) read"
    complete: int  # complete items or fragments (Basic Offset Table not counted)

    @property
    def description(self) -> str:
        return f"the file is truncated inside {self.where}: {self.detail}"


def _name(tag: int) -> str:
    if tag == _PIXEL_DATA:
        return "Pixel Data"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def read_truncated(data: bytes, *, stop_before_pixels: bool = False) -> Salvaged | None:
    """The elements of a DICOM file `data` (with or without preamble) before the element it
    is cut inside, and what of that element is whole; None when the cut is not inside such
    an element (or the file is not cut at all)."""
    fp = io.BytesIO(data)
    seen: list[tuple[int, str | None, int, int]] = []  # top level: tag, VR, length, value at

    def record(tag: BaseTag, vr: str | None, length: int) -> bool:
        seen.append((int(tag), vr, length, fp.tell()))
        return stop_before_pixels and int(tag) == _PIXEL_DATA

    try:
        read_partial(fp, stop_when=record, force=True)
    except Exception as exc:  # the cut: whatever pydicom raises on it
        log.debug("read stopped (%s): salvaging up to the cut", exc)
    if not seen:
        return None
    tag, vr, length, value_at = seen[-1]
    if length != 0xFFFFFFFF:
        return None  # pydicom reads a defined length cut short itself (or this is junk)
    implicit = vr is None  # pydicom names the VR before the value only when it is explicit
    start = value_at - (12 if vr in EXPLICIT_VR_LENGTH_32 else 8)
    head = pydicom.dcmread(io.BytesIO(data[:start]), force=True)
    if len(head) == 0:
        return None  # nothing read before the cut: no reason to believe this is DICOM
    little = _little_endian(head)
    if tag == _PIXEL_DATA and vr != "SQ" and not stop_before_pixels:
        value, count = _complete_fragments(data, value_at, little)
        head[tag] = DataElement(tag, vr or "OB", value, is_undefined_length=True)
        detail = f"{count} complete fragment(s) read"
        if value_at + len(value) == len(data):
            detail += ", only its closing delimiter is missing"
        return Salvaged(head, _name(tag), detail, count)
    if vr == "SQ" or _starts_with_item(data, value_at, little):
        items = _complete_items(data, value_at, implicit, little, head)
        head[tag] = DataElement(tag, "SQ", Sequence(items), is_undefined_length=True)
        return Salvaged(head, _name(tag), f"{len(items)} complete item(s) read", len(items))
    return None


def _little_endian(head: Dataset) -> bool:
    """Whether the dataset is little endian: as pydicom read it, else as its meta says."""
    little = head.original_encoding[1]
    if little is not None:
        return bool(little)
    ts = getattr(head, "file_meta", {}).get("TransferSyntaxUID")
    return ts is None or pydicom.uid.UID(ts) != pydicom.uid.ExplicitVRBigEndian


def _starts_with_item(data: bytes, at: int, little: bool) -> bool:
    if at + 4 > len(data):
        return False
    group, element = struct.unpack("<HH" if little else ">HH", data[at : at + 4])
    return (group << 16 | element) == _ITEM


def _complete_fragments(data: bytes, at: int, little: bool) -> tuple[bytes, int]:
    """The encapsulated value from `at` up to its last whole item; the count of whole
    fragments after the Basic Offset Table (PS3.5 A.4)."""
    fmt = "<HHL" if little else ">HHL"
    position, items = at, 0
    while position + 8 <= len(data):
        group, element, length = struct.unpack(fmt, data[position : position + 8])
        if (group << 16 | element) != _ITEM or position + 8 + length > len(data):
            break
        position += 8 + length
        items += 1
    return data[at:position], max(items - 1, 0)


def _complete_items(
    data: bytes, at: int, implicit: bool, little: bool, head: Dataset
) -> list[Dataset]:
    """The sequence items from `at` that end before the cut."""
    fp = io.BytesIO(data)
    fp.seek(at)
    items: list[Dataset] = []
    encoding = head.original_character_set
    while fp.tell() + 8 <= len(data):
        start = fp.tell()
        try:
            item = read_sequence_item(fp, implicit, little, encoding)
        except Exception:
            break
        if item is None:  # the Sequence Delimitation Item: nothing was cut after all
            break
        header_length = struct.unpack("<L" if little else ">L", data[start + 4 : start + 8])[0]
        if header_length == 0xFFFFFFFF:  # whole only if its Item Delimitation Item was read
            end = fp.tell()
            delimiter = struct.unpack("<HH" if little else ">HH", data[end - 8 : end - 4])
            if end > len(data) or (delimiter[0] << 16 | delimiter[1]) != _ITEM_DELIMITER:
                break
        elif start + 8 + header_length > len(data):
            break
        items.append(item)
    return items
