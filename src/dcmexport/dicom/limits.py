"""Safety limits, checked before anything is allocated: a hostile or broken file is refused
with a reason that names the limit, instead of taking the machine's memory or an hour.

Three places can claim a huge size: the header (Rows, Columns, Samples per Pixel, Number of
Frames), each frame's own codestream header (JPEG and JPEG-LS SOF, JPEG 2000 SIZ, the RLE
header), and compressed containers (a deflated dataset, an archive member). Each is checked
against the limits in force (`options.Limits`: ``--max-pixels``, ``--max-frames``,
``--max-inflate``) and the count of frames is validated against what the pixel data can hold,
so that per-frame
arrays and walks are sized from a count the file can back.

The limits in force are process-wide (`current`), set per unit of work with `applied`: the
dataset readers deep in the call tree need them and a worker process receives them pickled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import VR

from ..errors import LimitError, PixelDataError
from .tags import tag_text

#: Inflating is always allowed up to this many bytes; beyond it, the output may be at most
#: `MAX_INFLATE_RATIO` times the compressed input (real DICOM deflates 2-20x; a bomb 1000x).
INFLATE_FLOOR = 64 * 2**20
MAX_INFLATE_RATIO = 100
_CHUNK = 2**20
#: Bits Allocated a pixel cell can have: 1 (bitmaps), whole bytes up to 64, and the packed
#: 12 of pre-3.0 ACR-NEMA files
VALID_BITS_ALLOCATED = frozenset({1, 12, *range(8, 65, 8)})


class LimitValues(Protocol):
    """What `applied` needs: `options.Limits` (the dicom room cannot import options)."""

    @property
    def max_pixels(self) -> int: ...
    @property
    def max_frames(self) -> int: ...
    @property
    def max_inflate(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class DefaultLimits:
    """The defaults, as `options.Limits` has them (tests/test_hostile.py checks they agree)."""

    max_pixels: int = 2**28
    max_frames: int = 2**20
    max_inflate: int = 2**30


_active: LimitValues = DefaultLimits()


def current() -> LimitValues:
    """The limits in force in this process."""
    return _active


@contextlib.contextmanager
def applied(limits: LimitValues) -> Iterator[LimitValues]:
    """Use `limits` for the block (one unit of work), then restore the previous ones."""
    global _active
    previous, _active = _active, limits
    try:
        yield limits
    finally:
        _active = previous


def _raise_hint(option: str, value: int) -> str:
    return f"raise it with {option} (now {value})"


def check_frame_pixels(rows: int, columns: int, samples: int, what: str = "a frame") -> None:
    """`LimitError` if one frame of rows x columns x samples exceeds ``--max-pixels``."""
    limit = _active.max_pixels
    if rows * columns * max(samples, 1) > limit:
        raise LimitError(
            f"refused: {what} of {columns} x {rows} pixels"
            f"{f' x {samples} samples' if samples > 1 else ''} is over the pixel limit; "
            + _raise_hint("--max-pixels", limit)
        )


def check_frame_count(n_frames: int) -> None:
    """`LimitError` if Number of Frames exceeds ``--max-frames``."""
    limit = _active.max_frames
    if n_frames > limit:
        raise LimitError(
            f"refused: {n_frames} frames is over the frame limit; "
            + _raise_hint("--max-frames", limit)
        )


def _int(ds: Dataset, keyword: str, default: int = 0) -> int:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError):
        return default


def _declared_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError, OverflowError):
        return 1


#: The Image Pixel elements that are one unsigned number (US); a damaged file may carry
#: another VR or several values, which the decoders compare as numbers and crash on
_DESCRIPTION_NUMBERS = (
    "SamplesPerPixel",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
_KNOWN_VRS = frozenset(str(vr) for vr in VR)
#: Every header element `check_dataset` reads besides the Pixel Data: a cache of its answer
#: for a series keys on their raw bytes (`decoding.check_limits`).
HEADER_TAGS = tuple(Tag(keyword) for keyword in (*_DESCRIPTION_NUMBERS, "NumberOfFrames"))


def check_pixel_description(ds: Dataset) -> None:
    """`PixelDataError` if an Image Pixel element that must be one number is not, or Bits
    Allocated is no size a pixel cell can have: checked before a frame is sized by them."""
    for keyword in _DESCRIPTION_NUMBERS:
        try:
            value = ds.get(keyword)
        except Exception:  # a value pydicom cannot convert (an unknown VR): said below
            value = object()
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue  # absent (or empty, as pydicom reads an empty US) is the decoder's call
        vr = str(getattr(ds.get_item(keyword), "VR", "") or "")
        what = (
            f"has an unknown value representation {vr!r}"
            if vr not in _KNOWN_VRS
            else f"is not one number (VR {vr})"
        )
        tag = tag_text(tag_for_keyword(keyword) or 0)
        raise PixelDataError(f"the image pixel description is invalid: {keyword} {tag} {what}")
    bits = _int(ds, "BitsAllocated", 8)
    if bits not in VALID_BITS_ALLOCATED:
        raise PixelDataError(
            f"the image pixel description is invalid: Bits Allocated (0028,0100) is {bits}; "
            "it must be 1 or a multiple of 8 up to 64 (12 in old ACR-NEMA files)"
        )


def check_dataset(
    ds: Dataset, encapsulated: bool, *, video: bool = False, truncated: bool = False
) -> int:
    """Check an image's header before any decoding; the number of frames worth sizing for.

    Refuses a frame over ``--max-pixels``, more frames than ``--max-frames``, and an
    encapsulated Number of Frames its fragments cannot hold (one fragment at least per frame;
    a video stream holds all its frames in one). Native pixel data shorter than Number of
    Frames says is a truncated file, not a refusal: the count returned is what the data can
    hold (the decoder renders those frames and notes the rest), so that nothing sized from it
    can be bigger than the file itself. So are fewer fragments in a file known to be cut
    inside its pixel data (`truncated`): the count is the fragments there are.
    """
    if "PixelData" in ds:
        check_pixel_description(ds)
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel", 1)
    check_frame_pixels(rows, columns, samples)
    bits = _int(ds, "BitsAllocated", 8)
    n_frames = _declared_frames(ds)
    check_frame_count(n_frames)
    if "PixelData" not in ds:
        return n_frames
    element = ds.get_item("PixelData", keep_deferred=True)
    value = getattr(element, "value", None)
    if video:
        return n_frames
    if encapsulated:
        if isinstance(value, (bytes, bytearray)):
            fragments = count_fragments(bytes(value), n_frames + 1)
            if fragments < n_frames and truncated:
                return max(fragments, 1)
            if fragments < n_frames:
                raise PixelDataError(
                    f"Number of Frames says {n_frames} but the pixel data holds only "
                    f"{fragments} fragment(s)"
                )
        return n_frames
    length = len(value) if isinstance(value, (bytes, bytearray)) else getattr(element, "length", 0)
    frame_bits = rows * columns * max(samples, 1) * max(bits, 1)
    if frame_bits <= 0 or not isinstance(length, int) or length == 0xFFFFFFFF:
        return n_frames
    held = -(-(length * 8) // frame_bits)  # a cut last frame still counts
    return max(min(n_frames, held), 1)


def count_fragments(data: bytes, stop: int) -> int:
    """How many fragments follow the Basic Offset Table item, counting up to `stop`."""
    count, offset, first = 0, 0, True
    while offset + 8 <= len(data) and count < stop:
        tag, length = struct.unpack_from("<II", data, offset)
        if tag != 0xE000FFFE:  # an item tag (FFFE,E000); anything else ends the sequence
            break
        offset += 8 + length
        if first:
            first = False  # the Basic Offset Table is not a fragment
            continue
        count += 1
    return count


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_SCAN_BYTES = 1 << 16  # a codestream's size header comes within its first few KB


def codestream_size(data: bytes) -> tuple[int, int, int] | None:
    """(columns, rows, components) that a JPEG, JPEG-LS or JPEG 2000 codestream declares, or
    None when the header cannot be found (the decoder then explains)."""
    head = data[:_SCAN_BYTES]
    if head[:2] == b"\xff\xd8":
        return _jpeg_sof(head)
    at = head.find(b"\xff\x4f\xff\x51")  # SOC + SIZ, also inside a JP2 file's codestream box
    if at >= 0 and at + 42 <= len(head):
        xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", head, at + 8)
        (components,) = struct.unpack_from(">H", head, at + 40)
        return max(xsiz - xo, 0), max(ysiz - yo, 0), components
    return None


def _jpeg_sof(head: bytes) -> tuple[int, int, int] | None:
    offset = 2
    while offset + 4 <= len(head):
        if head[offset] != 0xFF:
            return None
        marker = head[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", head, offset + 2)
        if marker in _JPEG_SOF:
            if offset + 10 > len(head):
                return None
            rows, columns = struct.unpack_from(">HH", head, offset + 5)
            return columns, rows, head[offset + 9]
        if marker == 0xDA or length < 2:  # start of scan before any SOF
            return None
        offset += 2 + length
    return None


def check_codestream(ts: UID, frame: bytes, rows: int, columns: int, samples: int) -> None:
    """Refuse a frame whose own header claims too many pixels (or an empty size), before
    the decoder allocates for it; RLE: a header whose segments cannot be right."""
    if str(ts) == "1.2.840.10008.1.2.5":
        _check_rle(frame, rows, columns)
        return
    size = codestream_size(frame)
    if size is None:
        return
    width, height, components = size
    if width == 0 or height == 0:
        raise PixelDataError(
            f"the frame's codestream declares a size of {width} x {height} (not decodable)"
        )
    check_frame_pixels(height, width, components, "the frame's codestream")


def _check_rle(frame: bytes, rows: int, columns: int) -> None:
    """PS3.5 G.3.1: at most 15 segments, offsets inside the frame and increasing."""
    if len(frame) < 64:
        raise PixelDataError("RLE frame shorter than its 64-byte header")
    header = struct.unpack_from("<16I", frame)
    n = header[0]
    offsets = header[1 : 1 + n] if 0 < n <= 15 else ()
    if not offsets or offsets[0] != 64 or any(b <= a for a, b in itertools.pairwise(offsets)):
        raise PixelDataError(f"RLE header is malformed ({n} segments, offsets {list(offsets)})")
    if offsets[-1] >= len(frame):
        raise PixelDataError("RLE header points past the end of the frame")


class InflateLimitError(LimitError):
    """A deflated stream inflates past ``--max-inflate`` or the bomb ratio."""


def inflate_limit(compressed_size: int | None) -> int:
    """How many bytes a stream of `compressed_size` may inflate to (None: size unknown)."""
    limit = _active.max_inflate
    if compressed_size is None:
        return limit
    return min(limit, max(INFLATE_FLOOR, MAX_INFLATE_RATIO * compressed_size))


def inflate_refusal(what: str, inflated: int, compressed_size: int | None) -> InflateLimitError:
    """The error for a stream over `inflate_limit`."""
    limit = inflate_limit(compressed_size)
    if limit < _active.max_inflate:
        return InflateLimitError(
            f"refused: {what} inflates to more than {limit} bytes, over {MAX_INFLATE_RATIO} "
            f"times its compressed size (a decompression bomb?)"
        )
    return InflateLimitError(
        f"refused: {what} inflates to more than {limit} bytes; "
        + _raise_hint("--max-inflate", _active.max_inflate)
    )


def inflate_raw(source: BinaryIO, compressed_size: int | None, what: str) -> bytes:
    """Inflate a raw deflate stream (RFC 1951, as deflated DICOM is) in chunks, refusing it
    as soon as the output passes `inflate_limit`: the whole output is never made first."""
    limit = inflate_limit(compressed_size)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    while not inflater.eof:
        data = inflater.unconsumed_tail or source.read(_CHUNK)
        if not data:
            break
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise PixelDataError(f"corrupt deflated data ({exc})") from None
        if len(out) > limit:
            raise inflate_refusal(what, len(out), compressed_size)
    return bytes(out)


def read_capped(source: BinaryIO, limit: int, what: str, compressed_size: int | None) -> bytes:
    """Read a (decompressing) file object to its end, refusing it past `limit` bytes."""
    buffer = io.BytesIO()
    while chunk := source.read(min(_CHUNK, limit + 1 - buffer.tell())):
        buffer.write(chunk)
        if buffer.tell() > limit:
            raise inflate_refusal(what, buffer.tell(), compressed_size)
    return buffer.getvalue()
