"""A plain Part 10 file parsed from memory the way pydicom's `dcmread` parses it, only faster.

`pydicom.dcmread` reads a file through a file object, one `read` per element header and
value, and builds its datasets attribute by attribute; for a 512² CT slice of about 70
elements that is most of the parse's cost. `read_plain` walks the same bytes with
`struct.unpack_from` and builds the same thing: a `FileDataset` whose File Meta and dataset
hold the same `RawDataElement`s (tag, VR, length, value, value offset, encoding) pydicom's
generator yields, with the same preamble, encodings, buffer and character set, so every later
conversion is pydicom's own.

It answers only for the plain case: a preamble and ``DICM``, an explicit little-endian File
Meta, no Command Set, a little-endian transfer syntax (implicit or explicit VR, native or
encapsulated), well-formed element headers of known VRs and every value inside the file.
Anything else returns None and the caller reads the file with `dcmread`, which then decides
(and warns, repairs or fails) exactly as before. Warnings are left alone: the conversions
made on the way are the ones `dcmread` makes, and warn alike. (Turning them into errors
here would also turn an unrelated warning, such as a finalizer's that the garbage collector
happens to run meanwhile, into an "Exception ignored" traceback on stderr.)
Undefined-length values (sequences, encapsulated Pixel Data) are read by pydicom's own
`read_sequence` / `read_undefined_length_value`, as its generator reads them.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, MutableSequence
from typing import Any, NamedTuple, cast

import pydicom
from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import _dictionary_vr_fast
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataelem import empty_value_for_VR as _empty_value
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence, read_undefined_length_value
from pydicom.tag import BaseTag, ItemTag, SequenceDelimiterTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

_EXPLICIT_HEADER = struct.Struct("<HH2sH").unpack_from
_IMPLICIT_HEADER = struct.Struct("<HHL").unpack_from
_LENGTH_32 = struct.Struct("<L").unpack_from
_UNDEFINED = 0xFFFFFFFF
_ITEM_DELIMITER = 0xFFFEE00D
_CHARSET = 0x00080005
#: Float, Double Float and Pixel Data: pydicom's ``stop_before_pixels`` stops at the first.
_PIXEL_TAGS = frozenset((0x7FE00008, 0x7FE00009, 0x7FE00010))
_new_raw = RawDataElement._make  # from a tuple of every field (is_raw, is_buffered last)
_ITEM_BYTES = struct.pack("<HH", ItemTag >> 16, ItemTag & 0xFFFF)

#: Each VR's two bytes → (its name as pydicom's generator gives it, whether a 4-byte length
#: follows two reserved bytes). Only the VRs pydicom knows: an unknown pair (or implicit VR
#: inside an explicit dataset) is pydicom's call.
_EXPLICIT_VRS: dict[bytes, tuple[str, bool]] = {
    vr.value.encode(): (vr.value, vr in EXPLICIT_VR_LENGTH_32) for vr in VR if len(vr.value) == 2
}

#: Transfer syntaxes pydicom reads other than as explicit VR little endian, which are not
#: plain here (implicit VR little endian is, and is named apart).
_NOT_PLAIN_SYNTAXES = frozenset(
    (pydicom.uid.ExplicitVRBigEndian, pydicom.uid.DeflatedExplicitVRLittleEndian)
) | frozenset(pydicom.uid.PrivateTransferSyntaxes)


class _NotPlain(Exception):
    """The bytes are not the plain case: the caller reads them with pydicom."""


def read_plain(data: bytes) -> FileDataset | None:
    """The `FileDataset` ``pydicom.dcmread(io.BytesIO(data), force=True)`` gives for a plain
    Part 10 file in memory (see the module docstring), or None when it is not plain."""
    buffer = io.BytesIO(data)
    return _plain(_Bytes(data, len(data), buffer, None), buffer)


#: How much of a file is read first: the header of any ordinary image, whose last element
#: (the Pixel Data) is then read straight into its own value.
HEAD_BYTES = 64 * 1024


def read_plain_file(path: str, limit: int) -> FileDataset | bytes | None:
    """A local file of at most `limit` bytes: the `FileDataset` ``pydicom.dcmread(path,
    force=True)`` gives when the file is plain, else its whole bytes (for pydicom's reading);
    None when it is larger than `limit`. OSError propagates.

    Its first `HEAD_BYTES` are read, and a last element reaching to the end of the file
    (the Pixel Data) with one more read into its value: no copy of the whole file.
    """
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            return None
        head = f.read(HEAD_BYTES)
        walked = walk_head(head, size, f.fileno())
        found = None if walked is None else dataset(walked, path)
        if found is not None:
            return found
        return head if len(head) == size else head + f.read()  # read whole already, or not


class PlainHeader(NamedTuple):
    """A plain file's header (`read_plain_header`) and the file's size, from the same open."""

    ds: FileDataset
    size: int


def read_plain_header(path: str) -> PlainHeader | None:
    """The `FileDataset` ``pydicom.dcmread(path, force=True, stop_before_pixels=True)`` gives
    when the file is plain and its header (everything before the Pixel Data) lies within its
    first `HEAD_BYTES`; else None (the caller reads it with pydicom). Every element of it is
    whole: a file cut in its header is not plain. OSError propagates."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEAD_BYTES)
    ds = _plain(_Bytes(head, size, io.BytesIO(head), None, header_only=True), path)
    return None if ds is None else PlainHeader(ds, size)


class _Bytes(NamedTuple):
    """A file to parse: its bytes (or its first bytes), its size, the whole file as a file
    object for pydicom's undefined-length readers (or None), and a reader of the value of a
    last element reaching past `data` (or None)."""

    data: bytes
    size: int
    buffer: io.BytesIO | None
    tail: Callable[[int, int], bytes] | None
    header_only: bool = False  # stop before the Pixel Data, as ``stop_before_pixels`` does


def _part10(data: bytes) -> bool:
    """A preamble, ``DICM`` and a File Meta element first: where a plain file starts."""
    return len(data) >= 140 and data[128:132] == b"DICM" and data[132:134] == b"\x02\x00"


def _plain(source: _Bytes, fileobj: io.BytesIO | str) -> FileDataset | None:
    if not _part10(source.data):
        return None
    try:  # pydicom's warnings on the way (a value it tolerates) are the ones dcmread gives
        return _read(source, fileobj)
    except Exception:  # _NotPlain, or pydicom's own error: pydicom's reading decides
        return None


def _read(source: _Bytes, fileobj: io.BytesIO | str) -> FileDataset:
    return _build(_walk_file(source), source, fileobj)


class Walked(NamedTuple):
    """A plain file's elements as walked, before pydicom's datasets are built from them: the
    File Meta (a small dataset, already built: it names the syntax), the dataset's raw
    elements in file order, and what `_build` needs to build the rest."""

    file_meta: FileMetaDataset
    meta_raw: dict[BaseTag, Any]  # the File Meta's elements as walked (before conversion)
    raw: dict[BaseTag, Any]
    implicit: bool
    encoding: str | MutableSequence[str]
    preamble: bytes
    syntax: str  # the File Meta's Transfer Syntax UID, as pydicom converted it


def _walk_file(source: _Bytes) -> Walked:
    data = source.data
    meta_raw, position, _ = _walk(source, 132, implicit=False, meta=True)
    file_meta = FileMetaDataset(Dataset(dict(meta_raw)))
    file_meta.set_original_encoding(False, True, default_encoding)
    file_meta[next(iter(meta_raw))]  # converted as pydicom's reader converts them
    if 0x00020000 in meta_raw:
        file_meta[BaseTag(0x00020000)]
    if position + 8 > len(data) or data[position : position + 2] == b"\x00\x00":
        raise _NotPlain  # nothing after the meta, or a Command Set: pydicom's reading
    syntax = file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax in _NOT_PLAIN_SYNTAXES:
        raise _NotPlain
    implicit = syntax == pydicom.uid.ImplicitVRLittleEndian
    vr_bytes = data[position + 4 : position + 6]
    if (not (0x40 < vr_bytes[0] < 0x5B and 0x40 < vr_bytes[1] < 0x5B)) != implicit:
        raise _NotPlain  # the dataset's VR encoding is not the syntax's: pydicom warns
    raw, _, encoding = _walk(source, position, implicit=implicit, meta=False)
    return Walked(file_meta, meta_raw, raw, implicit, encoding, data[:128], syntax)


def _build(walked: Walked, source: _Bytes | None, fileobj: io.BytesIO | str) -> FileDataset:
    file_meta, _, raw, implicit, encoding, preamble, _ = walked
    dataset = Dataset(raw, parent_encoding=default_encoding)
    if _CHARSET in raw:
        charset = convert_raw_data_element(raw[BaseTag(_CHARSET)]).value
        encoding = convert_encodings(charset)
    dataset.set_original_encoding(implicit, True, encoding)
    if source is not None and source.buffer is not None:
        source.buffer.seek(0, io.SEEK_END)  # where pydicom's reading leaves it
    ds = FileDataset(fileobj, dataset, preamble, file_meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


def walk_plain_file(path: str, limit: int) -> tuple[Walked, int] | None:
    """A plain local file of at most `limit` bytes walked as `read_plain_file` walks it, and
    its size; None when it is larger or not plain (`read_plain_file` then decides). Its
    `FileDataset` is `dataset(walked, path)`: the same `read_plain_file` gives."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            return None
        walked = walk_head(f.read(HEAD_BYTES), size, f.fileno())
        return None if walked is None else (walked, size)


def walk_head(head: bytes, size: int, fd: int) -> Walked | None:
    """`walk_plain_file` of a file already open as `fd`, of `size` bytes, whose first
    `HEAD_BYTES` (or all, if fewer) are `head`; the Pixel Data is read from `fd`."""
    whole = len(head) == size
    tail = None if whole else (lambda at, n: os.pread(fd, n, at))
    source = _Bytes(head, size, io.BytesIO(head) if whole else None, tail)
    if not _part10(head):
        return None
    try:
        return _walk_file(source)
    except Exception:  # _NotPlain, or pydicom's own error: pydicom's reading decides
        return None


def dataset(walked: Walked, path: str) -> FileDataset | None:
    """The `FileDataset` of a file `walk_plain_file` walked: what `read_plain_file` gives;
    None when pydicom cannot build it (a value it refuses): its own reading then decides."""
    try:
        return _build(walked, None, path)
    except Exception:
        return None


def _walk(
    source: _Bytes, position: int, *, implicit: bool, meta: bool
) -> tuple[dict[BaseTag, Any], int, str | MutableSequence[str]]:
    """The elements from `position` on, as pydicom's `data_element_generator` yields them:
    to the end of the file, or (`meta`) to the first element outside group 0002."""
    elements: dict[BaseTag, Any] = {}
    data = source.data
    end = len(data)
    encoding: str | MutableSequence[str] = default_encoding
    while position + 8 <= end:
        start = position
        vr: str | None
        if implicit:
            group, number, length = _IMPLICIT_HEADER(data, position)
            vr, position = None, position + 8
        else:
            group, number, vr_pair, length = _EXPLICIT_HEADER(data, position)
            known = _EXPLICIT_VRS.get(vr_pair)
            if known is None:
                raise _NotPlain
            vr, long_length = known
            if long_length:
                if position + 12 > end:
                    raise _NotPlain
                length = _LENGTH_32(data, position + 8)[0]
                position += 12
            else:
                position += 8
        if meta and group != 0x0002:
            return elements, start, encoding
        tag = group << 16 | number
        if source.header_only and tag in _PIXEL_TAGS and not meta:
            return elements, start, encoding  # where pydicom's stop_before_pixels stops
        if tag == _ITEM_DELIMITER:
            raise _NotPlain  # ends a top-level dataset early in pydicom's reading
        if length != _UNDEFINED:
            if position + length <= end:
                value = (
                    data[position : position + length]
                    if length
                    else cast("bytes | None", _empty_value(vr, raw=True))
                )
            elif position + length == source.size and source.tail is not None and not meta:
                value = source.tail(position, length)  # the last element, read into its value
                if len(value) != length:
                    raise _NotPlain  # the file changed under us: pydicom's reading decides
                end = source.size
            else:
                raise _NotPlain  # a cut value: pydicom reads it short, salvage decides
            if tag == _CHARSET:
                encoding = convert_encodings(convert_string(value or b"", True))
            key = BaseTag(tag)  # RawDataElement(key, vr, length, value, position, implicit, True):
            fields = (key, vr, length, value, position, implicit, True, True, False)
            elements[key] = _new_raw(fields)
            position += length
            continue
        if meta or source.buffer is None:
            raise _NotPlain
        elements[BaseTag(tag)], position = _undefined_length(
            data, source.buffer, tag, vr, position, implicit, encoding
        )
    if position != source.size:
        raise _NotPlain  # a few stray bytes at the end (pydicom stops there), or a long header
    return elements, position, encoding


def _undefined_length(
    data: bytes,
    buffer: io.BytesIO,
    tag: int,
    vr: str | None,
    position: int,
    implicit: bool,
    encoding: str | MutableSequence[str],
) -> tuple[RawDataElement | DataElement, int]:
    """An undefined-length element read by pydicom's own functions, decided as its generator
    decides (PS3.5 6.2.2: UN of undefined length is a sequence); the element and where the
    next one starts."""
    buffer.seek(position)
    if vr == VR.UN and config.settings.infer_sq_for_un_vr:
        vr = VR.SQ
    if vr is None or (vr == VR.UN and config.replace_un_with_known_vr):
        try:
            vr = _dictionary_vr_fast(tag)
        except KeyError:
            if data[position : position + 4] == _ITEM_BYTES:  # a private sequence
                vr = VR.SQ
    if vr == VR.SQ:
        sequence = read_sequence(buffer, implicit, True, _UNDEFINED, encoding)
        element: RawDataElement | DataElement = DataElement(
            BaseTag(tag), vr, sequence, position, is_undefined_length=True
        )
    else:
        value = read_undefined_length_value(buffer, True, SequenceDelimiterTag, None)
        element = RawDataElement(BaseTag(tag), vr, _UNDEFINED, value, position, implicit, True)
    return element, buffer.tell()
