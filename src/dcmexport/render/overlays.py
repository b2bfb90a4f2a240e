"""Overlay planes (groups 6000-601E, PS3.3 C.9.2) read from a dataset and drawn into a frame.

Viewers and DCMTK's dcm2pnm draw overlays by default; so do we, the way DCMTK 3.6.7 does
(dcmimgle `DiOverlayPlane` and `DiMonoOutputPixelTemplate::overlay`, checked pixel for pixel
against `dcm2pnm` in tests/test_overlays.py):

* a plane is drawn only if Overlay Rows, Columns, Origin, Bits Allocated and Bit Position are
  all present and its bits are all there (too short Overlay Data: not drawn);
* bits come from Overlay Data (6xxx,3000), one bit per pixel in little-endian bit order
  (PS3.5 8.1.2), or, without it, from Overlay Bit Position of the pixel data's container
  values (retired "embedded" overlays), which must lie outside Bits Stored;
* Overlay Origin is 1-based (row, column) and may be negative or beyond the image: the plane
  is clipped;
* with Number of Frames in Overlay, overlay frame k applies to image frame
  Image Frame Origin + k; without it the one overlay applies to every frame (CP-1974), an
  embedded one as frame 1's bits hold it;
* a graphics plane (``G``, or no Overlay Type) replaces its pixels with the brightest output
  value (foreground density 1.0: 255 at 8 bits, 65535 at 16 bits, after any MONOCHROME1
  inversion, so always white); a ROI plane (``R``) keeps the pixels inside the region and
  darkens the other pixels of its rectangle by shifting them right by half the bit depth;
* colour images get none (DCMTK draws overlays on grey images only).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset

from .pipeline import PixelDescription

log = logging.getLogger(__name__)

#: The 16 overlay groups (PS3.5 7.6: even groups 6000-601E).
OVERLAY_GROUPS = tuple(range(0x6000, 0x6020, 2))

_ROWS, _COLUMNS, _FRAMES, _TYPE = 0x0010, 0x0011, 0x0015, 0x0040
_ORIGIN, _FRAME_ORIGIN, _BITS_ALLOCATED, _BIT_POSITION, _DATA = (
    0x0050,
    0x0051,
    0x0100,
    0x0102,
    0x3000,
)

#: The container values of a 0-based image frame, for embedded overlays.
FrameContainer = Callable[[int], np.ndarray]


class OverlayTypeValues(str, enum.Enum):
    """Overlay Type (60xx,0040), PS3.3 C.9.2.1.1."""

    GRAPHICS = "G"
    ROI = "R"


@dataclasses.dataclass(frozen=True, eq=False)
class OverlayPlane:
    """One overlay plane's bits for one image frame."""

    group: int
    #: 1-based (row, column) of the plane's top left pixel in the image, as in the file
    origin: tuple[int, int]
    overlay_type: OverlayTypeValues
    #: (Overlay Rows, Overlay Columns) booleans, True where the overlay bit is set
    bitmap: np.ndarray
    #: the bits were in the pixel data (Overlay Bits Allocated > 1), not in Overlay Data
    embedded: bool = False


@dataclasses.dataclass(frozen=True)
class _Header:
    """The attributes of one overlay group that decide where its bits are."""

    group: int
    rows: int
    columns: int
    origin: tuple[int, int]
    overlay_type: OverlayTypeValues
    multi_frame: bool
    number_of_frames: int
    frame_origin: int  # 0-based
    bit_position: int
    data: bytes | None  # Overlay Data, or None for embedded bits


def _int_values(ds: Dataset, tag: int) -> list[int]:
    """The integer values of an element; [] if absent, empty or not numbers."""
    value = getattr(ds.get(tag), "value", None)
    if value is None or isinstance(value, (bytes, bytearray)):
        return []
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        return [int(v) for v in values if v != ""]
    except (TypeError, ValueError):
        return []


def _overlay_data(ds: Dataset, group: int) -> bytes | None:
    """Overlay Data as little-endian bytes (OW words of a big-endian file are swapped)."""
    element = ds.get(group << 16 | _DATA)
    value = getattr(element, "value", None)
    if not isinstance(value, (bytes, bytearray)) or not value:
        return None
    data = bytes(value[: len(value) // 2 * 2])  # DCMTK reads whole 16-bit words
    little = getattr(ds, "original_encoding", (None, True))[1] is not False
    if not little and element is not None and element.VR != "OB":
        data = np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    return data


def _header(ds: Dataset, group: int, desc: PixelDescription) -> _Header | None:
    """The plane's attributes, or None where DCMTK would not draw it."""
    rows = _int_values(ds, group << 16 | _ROWS)
    columns = _int_values(ds, group << 16 | _COLUMNS)
    origin = _int_values(ds, group << 16 | _ORIGIN)
    bits_allocated = _int_values(ds, group << 16 | _BITS_ALLOCATED)
    bit_position = _int_values(ds, group << 16 | _BIT_POSITION)
    if not (rows and columns and origin and bits_allocated and bit_position):
        return None
    if rows[0] <= 0 or columns[0] <= 0:
        return None
    kind = str(getattr(ds.get(group << 16 | _TYPE), "value", "") or "").strip().upper()
    frames = _int_values(ds, group << 16 | _FRAMES)
    frame_origin = _int_values(ds, group << 16 | _FRAME_ORIGIN)
    data = _overlay_data(ds, group)
    position = bit_position[0]
    if data is None:  # embedded in the pixel data's unused bits (retired, PS3.5 8.1.2)
        position = min(position, desc.bits_allocated - 1)
        low_bit = desc.high_bit - desc.bits_stored + 1
        if low_bit <= position <= desc.high_bit or desc.samples_per_pixel != 1:
            log.debug("overlay %04X: bit %d is inside the stored bits", group, position)
            return None
    return _Header(
        group=group,
        rows=rows[0],
        columns=columns[0],
        origin=(origin[0], origin[1] if len(origin) > 1 else 0),
        overlay_type=OverlayTypeValues.ROI if kind == "R" else OverlayTypeValues.GRAPHICS,
        multi_frame=(group << 16 | _FRAMES) in ds,
        number_of_frames=max(frames[0] if frames else 1, 1),
        frame_origin=0 if data is None else max((frame_origin or [1])[0] - 1, 0),
        bit_position=0 if data is not None else position,
        data=data,
    )


def _overlay_frame_index(header: _Header, frame_index: int) -> int | None:
    """Which overlay frame (0-based) applies to image frame `frame_index`, or None."""
    frame = frame_index if header.multi_frame else 0
    if header.frame_origin <= frame < header.frame_origin + header.number_of_frames:
        return frame - header.frame_origin
    return None


def _unpack(header: _Header, overlay_frame: int) -> np.ndarray | None:
    """One frame of Overlay Data as booleans; None if the data is too short for all frames."""
    assert header.data is not None
    size = header.rows * header.columns
    if len(header.data) * 8 < header.number_of_frames * size:
        log.debug("overlay %04X: Overlay Data too short", header.group)
        return None
    start = overlay_frame * size  # in bits; unpack only the bytes of this frame
    chunk = np.frombuffer(header.data[start // 8 : (start + size + 7) // 8], dtype=np.uint8)
    bits = np.unpackbits(chunk, bitorder="little")[start % 8 : start % 8 + size]
    return bits.reshape(header.rows, header.columns).astype(bool)


def _embedded(header: _Header, container: np.ndarray) -> np.ndarray | None:
    """The overlay bit of each container value, read in overlay rows and columns."""
    size = header.rows * header.columns
    values = np.asarray(container).reshape(-1)
    if values.size < size:
        log.debug("overlay %04X: larger than the image frame", header.group)
        return None
    bits = (values[:size] >> header.bit_position) & 1
    return bits.reshape(header.rows, header.columns).astype(bool)


def overlay_planes(
    ds: Dataset,
    frame_index: int,
    container: np.ndarray | FrameContainer | None = None,
) -> list[OverlayPlane]:
    """The overlay planes that apply to 0-based image frame `frame_index` and reach into the
    image, in group order.

    `container` gives the container values (before masking to Bits Stored) that embedded
    overlays are read from: an array holding those of frame `frame_index`, or a function
    returning those of any frame (an embedded overlay without Number of Frames in Overlay is
    frame 1's bits on every frame, as DCMTK reads it). Without it embedded planes are left out.
    """
    present = sorted({int(t) >> 16 for t in ds.keys()} & set(OVERLAY_GROUPS))  # noqa: SIM118
    if not present:
        return []
    desc = PixelDescription.from_dataset(ds)
    planes = []
    for group in present:
        header = _header(ds, group, desc)
        if header is None:
            continue
        overlay_frame = _overlay_frame_index(header, frame_index)
        if overlay_frame is None:
            continue
        if header.data is not None:
            bitmap = _unpack(header, overlay_frame)
        else:
            source_frame = header.frame_origin + overlay_frame
            values = _container_of(container, frame_index, source_frame)
            if values is None or _embedded_too_short(ds, header, desc):
                continue
            bitmap = _embedded(header, values)
        if bitmap is None:
            continue
        plane = OverlayPlane(
            header.group, header.origin, header.overlay_type, bitmap, header.data is None
        )
        if _clip(plane, (desc.rows, desc.columns)) is not None:  # else wholly outside
            planes.append(plane)
    return planes


def _container_of(
    container: np.ndarray | FrameContainer | None, frame_index: int, wanted: int
) -> np.ndarray | None:
    if container is None:
        return None
    if callable(container):
        return container(wanted)
    return container if wanted == frame_index else None


def _embedded_too_short(ds: Dataset, header: _Header, desc: PixelDescription) -> bool:
    """DCMTK's length check: the overlay's frames must fit in the image's frames."""
    try:
        image_frames = max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        image_frames = 1
    needed = header.number_of_frames * header.rows * header.columns
    return needed > image_frames * desc.rows * desc.columns


def apply_overlays(image: np.ndarray, planes: list[OverlayPlane]) -> np.ndarray:
    """Draw `planes` into a rendered grey `image` (uint8 or uint16); a new array.

    Graphics planes set their pixels to the brightest value; ROI planes halve the bit depth
    of the pixels of their rectangle outside the region (DCMTK's default modes).
    """
    out = np.array(image, copy=True)
    if out.ndim != 2 or not planes:
        return out
    brightest = np.iinfo(out.dtype).max
    shift = out.dtype.itemsize * 4
    for plane in planes:
        region = _clip(plane, out.shape)
        if region is None:
            continue
        (y0, y1, x0, x1), (by, bx) = region
        bits = plane.bitmap[by : by + y1 - y0, bx : bx + x1 - x0]
        window = out[y0:y1, x0:x1]
        if plane.overlay_type is OverlayTypeValues.ROI:
            window[~bits] >>= shift
        else:
            window[bits] = brightest
    return out


def _clip(
    plane: OverlayPlane, shape: tuple[int, ...]
) -> tuple[tuple[int, int, int, int], tuple[int, int]] | None:
    """The image rectangle the plane covers and the bitmap offset of its top left pixel."""
    top, left = plane.origin[0] - 1, plane.origin[1] - 1
    rows, columns = plane.bitmap.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + rows, shape[0]), min(left + columns, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    return (y0, y1, x0, x1), (y0 - top, x0 - left)


def describe_overlays(groups: list[int] | tuple[int, ...] | set[int]) -> str:
    """The manifest note for the overlay groups drawn, e.g. ``overlays drawn: 6000, 6002``."""
    if not groups:
        return ""
    return "overlays drawn: " + ", ".join(f"{g:04X}" for g in sorted(groups))
