"""Replay: a series' slices converted by repeating one slice's verified conversion.

The slices of a series differ in their pixels and in a few per-instance elements (UIDs,
position, times, numbers, dose, per-slice statistics, vendors' private values); everything
the conversion of a still reads from the header is the same. For a plain single-frame grey
image written as one still, the general path then amounts to one lookup per stored pixel
pattern and the still's encoder, and the 0.4 ms a slice spends building pydicom's datasets
and deciding the same things again is spared (docs/notes/speed6.md).

- **Key**: the bytes of every File Meta and dataset element as the file holds them, except
  the values of `per_instance` elements (their tags and VRs stay in the key, so presence
  counts) and the Pixel Data's value (its VR and length stay in). Equal keys mean the same
  dataset apart from those values and the pixels. A sequence of undefined length has no
  bytes here: no key, no replay.
- **Plan**: made when a worker meets a key the second time, after converting that slice the
  general way. The table is the general path's own rendering of every stored pattern
  (`stills.render_still` of a frame holding each once). The plan is kept only if that slice's
  still made with it is byte for byte the one the general path wrote, with the same row;
  a window from the pixels (``minmax``), overlays or a repair fail that test or are refused
  before it, and that key then always goes the general way.
- **Replay**: the pixels by offset (`np.frombuffer`), `np.take` through the table, the same
  encoder and the same `Store.put`; the row is the plan's, with the slice's source, output
  and planning note.

That the general path never reads a `per_instance` value for a still is tested
(tests/test_replay.py records every element it reads), as is that replayed and general
outputs are identical over the sample files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np
import pydicom.uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.tag import BaseTag

from ..dicom import decoding, native, plainread
from ..exporters import objects_wanted
from ..exporters.encoders import encode_still
from ..exporters.stills import render_still
from ..manifest import Kind, ManifestRow, Status
from ..options import ConvertOptions, MetadataPhi, StillFormat
from ..render import fastpath
from ..render.frame import check_renderable
from ..render.windowing import select_voi
from ..sources import InputKind
from ..store import LocalStore, Store

log = logging.getLogger(__name__)

#: Elements whose values differ from slice to slice of one series and that the conversion of
#: a still never reads (instance identity, position, times, dose, per-slice statistics).
#: Private elements are `per_instance` too, except their creators and the private pixels of
#: group 7FE1.
PER_INSTANCE = frozenset(
    (
        0x00020000,  # File Meta Information Group Length (follows the UID's length)
        0x00020003,  # Media Storage SOP Instance UID
        0x00080012,  # Instance Creation Date
        0x00080013,  # Instance Creation Time
        0x00080018,  # SOP Instance UID
        0x00080022,  # Acquisition Date
        0x00080023,  # Content Date
        0x0008002A,  # Acquisition DateTime
        0x00080032,  # Acquisition Time
        0x00080033,  # Content Time
        0x00181060,  # Trigger Time
        0x00181150,  # Exposure Time
        0x00181151,  # X-Ray Tube Current
        0x00181152,  # Exposure
        0x00181153,  # Exposure in uAs
        0x00188151,  # X-Ray Tube Current in uA
        0x00189324,  # Estimated Dose Saving
        0x00189327,  # Table Position
        0x00189345,  # CTDIvol
        0x00200012,  # Acquisition Number
        0x00200013,  # Instance Number
        0x00200032,  # Image Position (Patient)
        0x00200100,  # Temporal Position Identifier
        0x00201041,  # Slice Location
        0x00209128,  # Temporal Position Index
        0x00280106,  # Smallest Image Pixel Value (a statistic, never a window here)
        0x00280107,  # Largest Image Pixel Value
        0x00541300,  # Frame Reference Time
        0x00541330,  # Image Index
    )
)

_PIXEL_DATA = BaseTag(0x7FE00010)
_UNDEFINED = 0xFFFFFFFF
_NATIVE_LE = frozenset((pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian))
#: Float and Double Float Pixel Data: never planned.
_FLOAT_PIXELS = frozenset((BaseTag(0x7FE00008), BaseTag(0x7FE00009)))
#: The most value bytes a key holds (a CT header holds 2-4 KB): a header with large LUTs,
#: icons or documents in it goes the general way, so remembered keys stay small.
_MAX_KEY_BYTES = 64 * 1024
#: Option sets remembered at once (a long-lived library process).
_MAX_OPTIONS = 4
#: Keys remembered per worker and options before starting afresh (a key holds at most 64 KB
#: of values, a plan a table of at most 128 KB: at most about 24 MB per option set).
_MAX_KEYS = 128


def per_instance(tag: int) -> bool:
    """True if the value of `tag` stays out of the key (see `PER_INSTANCE`)."""
    group = tag >> 16
    if group & 1 and group > 0x0008 and group != 0x7FE1:
        return (tag & 0xFFFF) > 0x00FF  # a private value, not its creator (gggg,0010-00FF)
    return tag in PER_INSTANCE


def header_key(walked: plainread.Walked) -> Hashable | None:
    """The key of a walked plain file (module docstring); None if it has none."""
    if (
        walked.syntax not in _NATIVE_LE
        or _PIXEL_DATA not in walked.raw
        or _FLOAT_PIXELS & walked.raw.keys()
    ):
        return None  # never planned: not worth remembering
    parts: list[Any] = [walked.implicit]
    held = 0
    for elements in (walked.meta_raw, walked.raw):
        for element in elements.values():
            if type(element) is not RawDataElement:  # an undefined-length sequence
                return None
            tag = int(element.tag)  # plain ints: BaseTag compares in Python, ints in C
            if tag == _PIXEL_DATA:
                parts.append((tag, element.VR, element.length))
            elif per_instance(tag):
                parts.append((tag, element.VR))
            else:
                parts.append((tag, element.VR, element.value))
                held += element.length
    return tuple(parts) if held <= _MAX_KEY_BYTES else None


@dataclasses.dataclass(frozen=True)
class Plan:
    """How every slice with one key is converted: stored pixels by offset, the table, the
    encoder; `row` is the manifest row of the slice it was made from."""

    dtype: np.dtype[Any]  # the stored container values (uint16, int16, uint8, int8)
    shape: tuple[int, int]
    table: np.ndarray  # output level of each stored bit pattern
    format: StillFormat
    quality: int
    row: ManifestRow

    @property
    def nbytes(self) -> int:
        """How many bytes of Pixel Data the frame takes (the value may be one longer)."""
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def pixels(self, value: bytes) -> np.ndarray:
        count = self.shape[0] * self.shape[1]
        return np.frombuffer(value, self.dtype, count).reshape(self.shape)

    def image(self, stored: np.ndarray) -> np.ndarray:
        index = np.uint16 if self.dtype.itemsize == 2 else np.uint8
        return np.take(self.table, stored.view(index))


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the files of a key keep it: a file of `size` bytes whose bytes up to the Pixel
    Data's value (at `pixels_at`, the last element), outside the preamble and the values of
    per-instance elements, are `pieces` ((offset, bytes), ...) walks element for element as
    the file the layout was taken from (every header it reads lies in those bytes), so it
    has that file's key: its slices skip the walk."""

    size: int
    pixels_at: int
    pieces: tuple[tuple[int, bytes], ...]

    def fits(self, head: bytes, size: int) -> bool:
        return (
            size == self.size
            and len(head) >= self.pixels_at
            and all(head.startswith(piece, at) for at, piece in self.pieces)
        )


def layout_of(walked: plainread.Walked, head: bytes, size: int) -> Layout | None:
    """The layout of a walked file whose first bytes are `head`; None if its elements are
    not all of defined length, or the Pixel Data is not its last element within reach."""
    spans = [(0, 128)]  # the preamble: not read, not in the key
    pixels_at = -1
    for elements in (walked.meta_raw, walked.raw):
        for element in elements.values():
            if type(element) is not RawDataElement or element.length == _UNDEFINED:
                return None
            tag = int(element.tag)
            if tag == _PIXEL_DATA:
                pixels_at = element.value_tell
                if pixels_at + element.length != size:
                    return None
            elif per_instance(tag):
                spans.append((element.value_tell, element.value_tell + element.length))
    if pixels_at < 0 or pixels_at > len(head):
        return None
    pieces, at = [], 0
    for begin, end in spans:  # in file order
        if begin > at:
            pieces.append((at, head[at:begin]))
        at = max(at, end)
    if at < pixels_at:
        pieces.append((at, head[at:pixels_at]))
    return Layout(size, pixels_at, tuple(pieces))


@dataclasses.dataclass
class Attempt:
    """One input's way through the replay: its plan and pixels when one is ready; else its
    walk (None: not a plain file) and key, and whether the general path's conversion of it
    is to be learnt from (`learn`)."""

    path: str
    walked: plainread.Walked | None = None
    key: Hashable | None = None
    learn: bool = False
    plan: Plan | None = None
    pixels: bytes | None = None
    layout: Layout | None = None  # this file's, for a plan learnt from it

    def dataset(self) -> FileDataset | None:
        """The input's dataset as `decoding.read_dataset` reads it (built from the walk), or
        None: then it reads the file itself."""
        return None if self.walked is None else plainread.dataset(self.walked, self.path)


class Unplayable(Exception):
    """A slice its key's plan does not convert: the general path does."""


class _Never:
    """A key whose slices go the general way (its plan failed the test)."""


_SEEN, _NEVER = object(), _Never()
_plans: dict[ConvertOptions, dict[Hashable, object]] = {}
#: Most recent first: the layouts of each options' plans, tried before any walk.
_layouts: dict[ConvertOptions, list[tuple[Layout, Plan]]] = {}
_MAX_LAYOUTS = 8


def _options_fit(options: ConvertOptions) -> bool:
    """Runs whose every output of a still-only input is the still and its row."""
    return not (
        options.anonymize
        or options.thumbnails
        or options.metadata_phi is not MetadataPhi.KEEP
        or objects_wanted(options)
    )


def start(
    ref_kind: InputKind, path: str, frame_bases: tuple[Any, ...], options: ConvertOptions
) -> Attempt | None:
    """The replay's look at one input before it is converted: None when it is not for the
    replay (not a local file, other outputs wanted); else an `Attempt`, with its `plan`
    and pixels when one is ready."""
    if ref_kind is not InputKind.FILE or frame_bases or not _options_fit(options):
        return None
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size > native.WHOLE_READ_LIMIT:
                return Attempt(path)
            head = f.read(plainread.HEAD_BYTES)
            for layout, plan in _layouts.get(options, ()):
                if layout.fits(head, size):
                    pixels = os.pread(f.fileno(), plan.nbytes, layout.pixels_at)
                    if len(pixels) == plan.nbytes:  # else changed meanwhile: walk it
                        return Attempt(path, plan=plan, pixels=pixels)
            with warnings.catch_warnings():  # pydicom's, about a value it tolerates
                warnings.simplefilter("ignore")
                walked = plainread.walk_head(head, size, f.fileno())
    except (OSError, ValueError):  # the general path reads it again and says why it cannot
        return Attempt(path)
    if walked is None:
        return Attempt(path)
    key = header_key(walked)
    attempt = Attempt(path, walked, key)
    if key is None:
        return attempt
    if options not in _plans and len(_plans) >= _MAX_OPTIONS:
        forget()  # a long-lived process converting with ever new options
    plans = _plans.setdefault(options, {})
    known = plans.get(key)
    if known is None:
        if len(plans) >= _MAX_KEYS:
            plans.clear()
            _layouts.pop(options, None)
        plans[key] = _SEEN
    elif known is _SEEN:
        attempt.learn = True
        attempt.layout = layout_of(walked, head, size)
    elif isinstance(known, Plan):
        attempt.plan, attempt.pixels = known, walked.raw[_PIXEL_DATA].value
        _remember(options, layout_of(walked, head, size), known)
    return attempt


def forget() -> None:
    """Drop every key, plan and layout (tests; a long-lived process between runs)."""
    _plans.clear()
    _layouts.clear()


def _remember(options: ConvertOptions, layout: Layout | None, plan: Plan) -> None:
    if layout is None:
        return
    known = _layouts.setdefault(options, [])
    known.insert(0, (layout, plan))
    del known[_MAX_LAYOUTS:]


def replay(
    plan: Plan, pixels: bytes, source: str, base: str, note: str, store: Store
) -> ManifestRow:
    """Convert one slice by its key's plan from its Pixel Data: its still written, its row.

    `Unplayable` if the pixels are in fact a compressed codestream: the general path
    relabels (and reports) such a slice by its content, which no key holds."""
    if decoding.codestream_in_native(pixels) is not None:
        raise Unplayable("a codestream under a native label")
    image = plan.image(plan.pixels(pixels))
    data = encode_still(image, plan.format, plan.quality)
    output = store.put(f"{base}{plan.format.extension}", data)
    return dataclasses.replace(plan.row, source=source, output=output, note=note)


class Converted(NamedTuple):
    """A slice the general path has just converted: its source, base and planning note, and
    its manifest rows (what a plan made from it must reproduce)."""

    source: str
    base: str
    note: str
    rows: list[ManifestRow]


def learn(
    attempt: Attempt, ds: Dataset, converted: Converted, options: ConvertOptions, store: Store
) -> Plan | None:
    """Make and test the plan of the attempt's key from the slice the general path has just
    converted; kept (and returned) only if it reproduces that slice exactly."""
    assert attempt.key is not None and attempt.walked is not None
    plans = _plans.setdefault(options, {})
    plan = None
    try:
        plan = _made(attempt.walked, ds, converted, options, store)
    except Exception:  # the slice itself is converted: its key just goes the general way
        log.debug("no replay plan for %s", converted.base, exc_info=True)
    plans[attempt.key] = plan if plan is not None else _NEVER
    if plan is not None:
        _remember(options, attempt.layout, plan)
    return plan


def _made(
    walked: plainread.Walked,
    ds: Dataset,
    converted: Converted,
    options: ConvertOptions,
    store: Store,
) -> Plan | None:
    source, base, note, rows = converted
    extension = options.format.extension
    if len(rows) != 1 or not isinstance(store, LocalStore):
        return None
    row = rows[0]
    expected = (row.kind, row.status, row.frame, row.source, row.output, row.note, row.error)
    if expected != (Kind.IMAGE, Status.OK, None, source, f"{base}{extension}", note, ""):
        return None  # another output, a repair, an overlay note: the general way
    # a key (`header_key`) already says: native little endian, Pixel Data, no float pixels
    if any(0x6000 <= tag >> 16 <= 0x601E for tag in walked.raw):  # overlays: drawn by position
        return None
    desc = check_renderable(ds)
    if (
        not decoding.decodes_as_is(ds)  # a repaired view: decoded by what it repairs
        or decoding.number_of_frames(ds) != 1
        or desc.samples_per_pixel != 1
        or desc.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
        or desc.bits_allocated not in (8, 16)
    ):
        return None
    if not options.raw:
        t = fastpath.transforms(ds, 0, desc)
        if select_voi(options.window, list(t.windows), list(t.voi_luts)) is None:
            return None  # a window from the frame's own values (min-max): not one table
    signed = "i" if desc.pixel_representation else "u"
    dtype = np.dtype(f"<{signed}{desc.bits_allocated // 8}")
    shape = (int(desc.rows), int(desc.columns))
    element = walked.raw.get(_PIXEL_DATA)
    if element is None or len(element.value or b"") < shape[0] * shape[1] * dtype.itemsize:
        return None
    decoded = decoding.decode_frame(ds, 0)
    patterns = 1 << desc.bits_allocated
    index = np.uint16 if dtype.itemsize == 2 else np.uint8
    every = np.arange(patterns, dtype=index).view(dtype).reshape(-1, 256)
    rendered = render_still(every, ds, desc, 0, options)  # as the still exporter renders
    measured = (rendered.window_center, rendered.window_width, rendered.voi, rendered.raw_offset)
    if rendered.overlay_groups or measured != (
        row.window_center,
        row.window_width,
        row.voi,
        row.raw_offset,
    ):
        return None  # a window from the pixels (minmax) or another frame-wide step
    table = np.ascontiguousarray(rendered.image.reshape(patterns))
    table.flags.writeable = False
    plan = Plan(dtype, shape, table, options.format, options.quality, row)
    stored = plan.pixels(element.value)
    if stored.dtype != decoded.dtype or not np.array_equal(stored, decoded):
        return None
    data = encode_still(plan.image(stored), options.format, options.quality)
    with open(os.path.join(store.root, row.output), "rb") as written:
        if written.read() != data:
            return None
    return plan
