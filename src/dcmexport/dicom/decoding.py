"""Read DICOM files and decode frames to stored values, with the decoder chosen on purpose.

pydicom picks a decoding plugin by import order and silently prefers GDCM when installed; we
choose per transfer syntax from measurements instead (Pillow is 2–4× faster than pylibjpeg for
8-bit JPEG baseline, pylibjpeg-rle 3–4× faster than pydicom's RLE) and fall back to the next
plugin when one fails on a malformed stream.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Hashable, Iterator
from typing import IO, Any, BinaryIO, NamedTuple, cast

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from .. import errors
from . import codecs, limits, native, plainread, rawkey, salvage
from .tags import tag_text

log = logging.getLogger(__name__)

#: Preferred decoding plugins per Transfer Syntax UID, fastest correct first.
PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": ("pillow", "pylibjpeg", "imagecodecs", "gdcm"),  # baseline
    # JPEG extended 12-bit: imagecodecs (libjpeg-turbo 3) reads the streams libjpeg rejects
    # ("misplaced marker"), equals dcmdjpeg exactly where pylibjpeg is off by 1 on 6 % of
    # pixels, and is 4x faster (512x512: 6 vs 27 ms; docs/notes/realworld.md)
    "1.2.840.10008.1.2.4.51": ("imagecodecs", "pylibjpeg", "pillow", "gdcm"),
    "1.2.840.10008.1.2.4.53": ("imagecodecs",),  # JPEG extended 6/8 (retired)
    "1.2.840.10008.1.2.4.55": ("imagecodecs",),  # JPEG progressive 10/12 (retired)
    "1.2.840.10008.1.2.4.57": ("pylibjpeg", "imagecodecs", "gdcm"),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("pylibjpeg", "imagecodecs", "gdcm"),  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "pylibjpeg", "gdcm"),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "pylibjpeg", "gdcm"),  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pillow", "gdcm"),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pillow", "gdcm"),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K RPCL lossless
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE lossless
}

#: What to install for a transfer syntax no installed plugin decodes.
INSTALL_HINTS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pillow or pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.53": "imagecodecs (pip install 'dcmexport[codecs]')",
    "1.2.840.10008.1.2.4.55": "imagecodecs (pip install 'dcmexport[codecs]')",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls or pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pyjpegls or pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
}

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


#: Enough of a file's start for its preamble and (almost always) its whole File Meta
_HEAD_BYTES = 4096


def has_dicm_prefix(path: str | os.PathLike[str]) -> bool:
    """True if the file has the Part 10 preamble and ``DICM`` marker (reads 132 bytes).

    Raises OSError if the file cannot be read: that is an error, not "not DICOM".
    """
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dataset(
    path: str | os.PathLike[str] | bytes | IO[bytes],
    *,
    stop_before_pixels: bool = False,
    plain: bool = True,
) -> Dataset:
    """Read a DICOM file (a path, the bytes of an archive member, or an open binary file such
    as an object-store read), with or without preamble and file meta; `NotDicomError` otherwise.

    Files without the ``DICM`` marker count as DICOM only if pydicom parses a header with
    elements of the General Study/Series/Image or Image Pixel groups (0008, 0020, 0028).
    Pixel data over 8 MB is deferred, so a large cine is not loaded to pick a few frames.
    A plain file is parsed by `plainread` (pydicom's own dataset, built faster); ``plain=False``
    is for a caller that tried that already.
    """
    source: IO[bytes] | str | os.PathLike[str]
    in_memory = isinstance(path, bytes)
    part10_plain = False  # a Part 10 file whose File Meta names a syntax other than deflate
    plain_tried = False  # `plainread` already parsed these very bytes (and declined)
    try:
        if isinstance(path, bytes):
            part10, size = path[128:132] == b"DICM", len(path)
            source = io.BytesIO(path)
        elif not isinstance(path, (str, os.PathLike)):  # an open file: read from where it is
            start = path.tell()
            part10 = path.read(132)[128:132] == b"DICM"
            size = path.seek(0, os.SEEK_END) - start
            path.seek(start)
            source = path
        elif not stop_before_pixels and (whole := _read_small(path)) is not None:  # one read
            if isinstance(whole, FileDataset):  # a plain file, read as pydicom reads a path
                return whole
            part10, size, in_memory = whole[128:132] == b"DICM", len(whole), True
            plain_tried = size <= plainread.HEAD_BYTES  # read whole as its head
            source = io.BytesIO(whole)
            if part10 and not _maybe_deflated(whole):
                part10_plain = True
        elif stop_before_pixels and plain and (head_ds := _plain_header(path)) is not None:
            return head_ds  # a plain header within the file's first bytes, as pydicom reads it
        else:  # a header-only or a large read: the head says Part 10, and which syntax
            with open(path, "rb") as f:
                head = f.read(_HEAD_BYTES)
            part10, size = head[128:132] == b"DICM", None
            part10_plain = part10 and not _maybe_deflated(head)
            source = path
            if not part10:
                size = os.stat(path).st_size
    except OSError as exc:
        raise errors.InputReadError(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        if not part10 and size is not None and size < 16:
            raise errors.NotDicomError("not a DICOM file")
        if not part10 and not _plausible_raw_start(source):
            raise errors.NotDicomError("not a DICOM file")
        ds = _read_deflated(source, stop_before_pixels) if part10 and not part10_plain else None
        if ds is None and in_memory and part10 and not stop_before_pixels and not plain_tried:
            ds = plainread.read_plain(cast(io.BytesIO, source).getvalue())  # None: not plain
        if ds is None:
            ds = pydicom.dcmread(
                source,
                force=True,
                stop_before_pixels=stop_before_pixels,
                defer_size=None if in_memory else "8 MB",
            )
    except (errors.NotDicomError, errors.LimitError, errors.PixelDataError):
        raise
    except OSError as exc:
        ds = _salvaged(path, stop_before_pixels, in_memory)
        if ds is None:
            raise errors.InputReadError(f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # pydicom raises many types on junk input (RecursionError too)
        ds = _salvaged(path, stop_before_pixels, in_memory)
        if ds is None and part10:
            raise errors.UnreadableDicomError(
                f"unreadable DICOM header ({_one_line(exc)})"
            ) from None
        if ds is None:
            raise errors.NotDicomError("not a DICOM file") from None
    if len(ds) == 0:  # pydicom drops every element when the file ends early
        ds = _salvaged(path, stop_before_pixels, in_memory) or ds
    if not part10 and not any(tag.group in (0x0008, 0x0020, 0x0028) for tag in ds.keys()):  # noqa: SIM118
        raise errors.NotDicomError("not a DICOM file")
    if in_memory and isinstance(path, (str, os.PathLike)):
        ds.filename = os.fspath(path)  # as pydicom names a dataset read from its path
        ds.fileobj_type = open
    return ds


def _salvaged(
    path: str | os.PathLike[str] | bytes | IO[bytes],
    stop_before_pixels: bool,
    in_memory: bool,
) -> Dataset | None:
    """A file cut inside a sequence or encapsulated Pixel Data, read up to the cut
    (`salvage.read_truncated`), with a note saying where; None if that is not the trouble.
    A file without preamble must still pass `read_dataset`'s checks afterwards."""
    try:
        if isinstance(path, bytes):
            data = path
        elif isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as f:
                data = f.read()
        else:
            path.seek(0)
            data = path.read()
        found = salvage.read_truncated(data, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # salvage is a second chance: its failure is the first error's
        log.debug("no salvage: %s", exc)
        return None
    if found is None:
        return None
    ds = found.ds
    if in_memory and isinstance(path, (str, os.PathLike)):
        ds.filename, ds.fileobj_type = os.fspath(path), open
    vars(ds)[_TRUNCATED] = found
    add_note(ds, f"file truncated inside {found.where}: {found.detail}")
    return ds


def _read_small(path: str | os.PathLike[str]) -> FileDataset | bytes | None:
    """A file of at most `native.WHOLE_READ_LIMIT` bytes: its dataset when it is plain
    (`plainread.read_plain_file`), else its whole bytes; None for a larger file. OSError
    propagates: a file that cannot be read is an error, not "not DICOM"."""
    return plainread.read_plain_file(os.fspath(path), native.WHOLE_READ_LIMIT)


def _plain_header(path: str | os.PathLike[str]) -> FileDataset | None:
    """A plain file's header read from its first bytes (`plainread.read_plain_header`), or
    None: then pydicom reads it."""
    found = plainread.read_plain_header(os.fspath(path))
    return None if found is None else found.ds


def _maybe_deflated(data: bytes) -> bool:
    """False only when the File Meta plainly names another syntax than Deflated Explicit VR
    Little Endian (then `_read_deflated` need not parse the meta a second time)."""
    return native.meta_transfer_syntax(data) in (None, pydicom.uid.DeflatedExplicitVRLittleEndian)


#: Groups a dataset without preamble may start with (little or big endian): file meta, the
#: general groups, or an ACR-NEMA file's first groups. Zeros and random bytes are refused
#: at once instead of being parsed as millions of empty elements.
_RAW_FIRST_GROUPS = frozenset(range(0x0002, 0x0029, 2))


def _plausible_raw_start(source: IO[bytes] | str | os.PathLike[str]) -> bool:
    """True if a file without preamble starts like a DICOM dataset (its first tag's group)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            head = f.read(4)
    else:  # bytes in memory, or an open file (an object's header): read, then rewind
        position = source.tell()
        head = source.read(4)
        source.seek(position)
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    return little in _RAW_FIRST_GROUPS or big in _RAW_FIRST_GROUPS


def _read_deflated(
    source: IO[bytes] | str | os.PathLike[str], stop_before_pixels: bool
) -> Dataset | None:
    """A Deflated Explicit VR Little Endian file, inflated in chunks up to the inflate limit
    (pydicom inflates the whole rest of the file at once); None for any other file."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            fp: BinaryIO = stack.enter_context(open(source, "rb"))
        else:
            fp = cast(BinaryIO, source)
        fp.seek(0)
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != pydicom.uid.DeflatedExplicitVRLittleEndian:
            fp.seek(0)
            return None
        start = fp.tell()
        compressed = fp.seek(0, os.SEEK_END) - start
        fp.seek(start)
        inflated = limits.inflate_raw(fp, compressed, "the deflated dataset")
    ds = pydicom.dcmread(io.BytesIO(inflated), force=True, stop_before_pixels=stop_before_pixels)
    ds.file_meta = meta
    ds.set_original_encoding(False, True, ds.original_character_set)
    return ds


def check_limits(ds: Dataset) -> int:
    """Check the image header against the safety limits (`limits.check_dataset`), once per
    dataset; the validated number of frames. Call before anything sized by the frame count."""
    checked = getattr(ds, "_dcmexport_frames", None)
    if checked is None:
        ts = transfer_syntax(ds)
        deflated_frames = str(ts) == codecs.DEFLATED_IMAGE_FRAME  # not in pydicom's table
        encapsulated = deflated_frames or (ts.is_transfer_syntax and ts.is_encapsulated)
        video, truncated = is_video_syntax(ds), _cut_fragments(ds) is not None
        key = None if encapsulated or video or truncated else _native_limits_key(ds, ts)
        checked = rawkey.cached(
            _native_limits_checked,
            key,
            lambda: limits.check_dataset(ds, encapsulated, video=video, truncated=truncated),
        )
        object.__setattr__(ds, "_dcmexport_frames", checked)
    return int(checked)


_PIXEL_DATA = BaseTag(0x7FE00010)
_native_limits_checked: dict[Hashable, int] = {}


def _native_limits_key(ds: Dataset, ts: UID) -> tuple[Any, ...] | None:
    """The cache key of a native image's limit check (the slices of a series share it): the
    raw header bytes it reads, the Pixel Data's VR and length, the syntax and the limits."""
    pixels = ds._dict.get(_PIXEL_DATA)
    if pixels is None:
        held: tuple[Any, ...] | None = None
    elif isinstance(pixels, RawDataElement) and isinstance(pixels.value, bytes):
        held = (pixels.VR, len(pixels.value))
    else:
        return None
    header = rawkey.raw_key(ds, limits.HEADER_TAGS)
    if header is None:
        return None
    active = limits.current()
    return (str(ts), held, active.max_pixels, active.max_frames, *header)


def _check_codestream(ds: Dataset, ts: UID, frame_index: int) -> None:
    """Refuse a frame whose codestream header claims more than the limits, before decoding."""
    if not ts.is_encapsulated or "PixelData" not in ds:
        return
    value = ds.get_item("PixelData", keep_deferred=True).value
    if not isinstance(value, (bytes, bytearray)):
        return
    from pydicom.encaps import get_frame

    n = number_of_frames(ds)
    try:
        frame = get_frame(bytes(value), frame_index, number_of_frames=n)
    except Exception:  # a broken fragment table: the decoder reports it
        return
    rows = int(ds.get("Rows") or 0)
    columns = int(ds.get("Columns") or 0)
    limits.check_codestream(ts, frame, rows, columns, int(ds.get("SamplesPerPixel") or 1))


def _meta_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return str(uid) if uid else None


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's Transfer Syntax UID, inferring it for files without file meta."""
    uid = _meta_syntax(ds)
    if uid:
        return UID(uid)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if little is False:
        return pydicom.uid.ExplicitVRBigEndian
    return pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian


def pixel_keyword(ds: Dataset) -> str | None:
    """Which pixel data element the dataset has, or None."""
    return next((k for k in _PIXEL_KEYWORDS if k in ds), None)


def describe_missing_pixels(ds: Dataset) -> str:
    """A reason, for the manifest, why a DICOM file without pixels is skipped."""
    sop = UID(str(ds.get("SOPClassUID", "")))
    if "DirectoryRecordSequence" in ds:
        return "DICOMDIR (a directory of other files), no image"
    name = sop.name if sop and sop.name != str(sop) else ""
    return f"no pixel data ({name})" if name else "no pixel data"


_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
#: JPEG (ISO 10918) codecs apply the colour transform themselves (pydicom reconciles the
#: declared photometric interpretation with the codestream), so their 8-bit YBR comes out as RGB.
_JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
}


def codec_converts_colour(ts: UID, bits_allocated: int = 8) -> bool:
    """True if YBR pixels come out of decoding as RGB (8-bit JPEG family, via pydicom).

    For native, RLE, JPEG-LS and JPEG 2000 data a YBR_FULL(_422) photometric interpretation
    describes the decoded samples, and `pixels.convert_ybr_to_rgb` converts them; so it does
    for 12-bit JPEG colour, which pydicom's colour conversion refuses (uint8 only).
    (JPEG 2000's YBR_ICT/YBR_RCT are undone by the codec and come out as RGB.)
    """
    return (str(ts) in _JPEG_FAMILY and bits_allocated <= 8) or codecs.is_video(str(ts))


def _unsupported(ts: UID, what: str) -> errors.UnsupportedTransferSyntaxError:
    """The one message for a transfer syntax we cannot decode: the UID once, and a remedy."""
    label = f"{ts.name} ({ts})" if ts.name != str(ts) else f"{ts} (unknown to pydicom)"
    hint = INSTALL_HINTS.get(str(ts))
    remedy = (
        f"install {hint}"
        if hint
        else "no decoder known to dcmexport reads it; DCMTK (dcmdjpeg, dcmdrle) or GDCM "
        "(gdcmconv --raw) may convert it to an uncompressed copy"
    )
    return errors.UnsupportedTransferSyntaxError(f"transfer syntax {label} {what}: {remedy}")


def plugin_order(ts: UID, bits_allocated: int | None = None) -> list[str]:
    """Installed decoding plugins for `ts`, preferred first; [""] for native encodings.

    8-bit JPEG Extended goes to Pillow first: its libjpeg-turbo upsamples 4:2:2 chroma as
    DCMTK's IJG decoder does (pylibjpeg differs by up to 26 levels at colour edges); Pillow
    cannot decode 12-bit samples, so those keep pylibjpeg first. ``imagecodecs`` (an extra)
    is our own plugin name: `decode_frame` hands it the frame's codestream.
    """
    from pydicom.pixels import get_decoder

    imagecodecs_ok = str(ts) in codecs.IMAGECODECS_SYNTAXES and codecs.imagecodecs_available()
    if str(ts) in codecs.RETIRED_JPEG:
        if not imagecodecs_ok:
            raise _unsupported(ts, "needs a decoder that is not installed")
        return ["imagecodecs"]
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise _unsupported(ts, "cannot be decoded") from None
    if not ts.is_encapsulated:
        return [""]
    available = list(decoder.available_plugins)
    if imagecodecs_ok:
        available.append("imagecodecs")
    if not available:
        raise _unsupported(ts, "needs a decoder that is not installed")
    preferred = [p for p in PREFERRED_PLUGINS.get(str(ts), ()) if p in available]
    if str(ts) == _JPEG_EXTENDED and bits_allocated == 8 and "pillow" in preferred:
        preferred.insert(0, preferred.pop(preferred.index("pillow")))
    return preferred + [p for p in available if p not in preferred]


def decode_frame(ds: Dataset, frame_index: int, source: Any = None) -> np.ndarray:
    """Decode one frame (0-based `frame_index`) as container values.

    Unused high bits are left in place (`extract_stored_values` masks them using High Bit,
    which pydicom ignores). `source` may be the file path: when `read_dataset` left a large
    pixel data element on disk, pydicom then reads just that frame from the file. What had
    to be repaired to decode it is noted on `ds` (`repair_notes`).
    """
    from pydicom.pixels import pixel_array

    original = ds
    ts = transfer_syntax(ds)
    if str(ts) == codecs.DEFLATED_IMAGE_FRAME:  # newer than pydicom 3.0's UID dictionary
        return _deflated_frame(ds, frame_index)
    if not ts.is_transfer_syntax:
        raise _unsupported(ts, "cannot be decoded")
    _infer_file_meta(ds, ts)
    bits_allocated = _bits_allocated(ds)
    if codecs.is_video(ts):
        return _video_frame(ds, ts, frame_index)
    if not ts.is_encapsulated and "PixelData" in ds:
        if bits_allocated == 12:
            return _packed_12bit_frame(ds, frame_index)
        relabelled = _relabelled(ds, ts)
        if relabelled is not None:
            ds, ts = relabelled
        elif native.whole_native(ds, ts):  # the common case: the frame's bytes, by offset
            check_limits(ds)
            lean = native.native_frame(ds, ts, frame_index)
            if lean is not None:
                return lean
        elif _native_truncation(ds) is not None:
            return _truncated_native_frame(ds, frame_index)
    if ts.is_encapsulated and frame_index >= frames_present(ds) and _cut_fragments(ds) is not None:
        raise errors.PixelDataError(
            f"frame {frame_index + 1} is missing: the file is truncated inside its pixel data"
        )
    plugins = plugin_order(ts, bits_allocated)
    check_limits(ds)
    _check_codestream(ds, ts, frame_index)
    view = _decodable_view(ds)
    repaired, ds = view is not ds, view
    src = source if source is not None and not repaired and _pixels_deferred(ds, ts) else ds
    failures = []
    # a path without File Meta needs the transfer syntax we inferred from the dataset
    extra: dict[str, Any] = (
        {"transfer_syntax_uid": ts} if src is not ds and _inferred_syntax(ds) else {}
    )
    as_rgb = codec_converts_colour(ts, bits_allocated or 8)
    if src is ds and _lean_baseline(ts, plugins, as_rgb):
        lean = _pillow_baseline_frame(ds, frame_index)
        if lean is not None:
            return lean
    for plugin in plugins:
        try:
            if plugin == "imagecodecs":
                return _imagecodecs_frame(original, ds, ts, frame_index, keep_ybr=not as_rgb)
            return pixel_array(
                src,
                index=frame_index,
                decoding_plugin=plugin,
                correct_unused_bits=False,
                as_rgb=as_rgb,
                **extra,
            )
        except (MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a plugin's failure (or Rust panic) on a bad stream
            failures.append(f"{plugin or 'pydicom'}: {_innermost(exc)}")
            log.debug("decoder %s failed on frame %d: %s", plugin, frame_index, exc)
    raise errors.PixelDataError(f"cannot decode {ts.name} pixel data ({'; '.join(failures)})")


# --- repairs: what the decode step had to fix, reported up to the manifest --------------------

_NOTES = "_dcmexport_notes"
_CACHE = "_dcmexport_cache"
_TRUNCATED = "_dcmexport_truncated"  # a salvage.Salvaged: the file was cut inside an element


def add_note(ds: Dataset, text: str) -> None:
    """Remember that decoding `ds` needed a repair (shown in the manifest's `note`)."""
    notes: list[str] = vars(ds).setdefault(_NOTES, [])
    if text not in notes:
        notes.append(text)


def repair_notes(ds: Dataset) -> list[str]:
    """What was repaired or assumed to read `ds`'s pixels, in the order it was found."""
    return list(vars(ds).get(_NOTES, ()))


def _cache(ds: Dataset) -> dict[str, Any]:
    cache: dict[str, Any] = vars(ds).setdefault(_CACHE, {})
    return cache


def check_pixel_header(ds: Dataset) -> None:
    """Notes for pre-3.0 heritage read with an assumption (a missing Pixel Representation is
    unsigned, as GDCM and DCMTK read it) and for pixel data cut short by a truncated file."""
    if "PixelData" in ds and ds.get("PixelRepresentation") in (None, ""):
        add_note(ds, "no Pixel Representation (0028,0103): read as unsigned")
    cut_fragments = _cut_fragments(ds)
    if cut_fragments is not None and cut_fragments < number_of_frames(ds):
        declared = number_of_frames(ds)
        add_note(
            ds,
            f"file truncated: {cut_fragments} of {declared} frames complete; "
            f"{declared - cut_fragments} frame(s) missing",
        )
    truncated = _native_truncation(ds)
    if truncated is not None:
        present, expected, frame_bytes = truncated
        declared = number_of_frames(ds)
        if declared > 1:
            complete = present // frame_bytes
            partial = present % frame_bytes != 0
            text = f"file truncated: {complete} of {declared} frames complete"
            if partial:
                text += f", frame {complete + 1} incomplete (missing pixels shown as 0)"
            missing = declared - complete - int(partial)
            if missing:
                text += f"; {missing} frame(s) missing"
        else:
            text = (
                f"file truncated: pixel data has {present} of {expected} bytes "
                "(missing pixels shown as 0)"
            )
        add_note(ds, text)


def frames_present(ds: Dataset) -> int:
    """Frames that can be decoded: Number of Frames, less those a truncated file lost."""
    n = number_of_frames(ds)
    cut_fragments = _cut_fragments(ds)
    if cut_fragments is not None:
        return max(min(n, cut_fragments), 1)
    truncated = _native_truncation(ds)
    if truncated is None:
        return n
    present, _, frame_bytes = truncated
    return max(min(n, -(-present // frame_bytes)), 1)


def _cut_fragments(ds: Dataset) -> int | None:
    """Complete fragments of encapsulated Pixel Data a cut file kept (one frame each when
    there are fewer fragments than frames), or None when the pixel data was not cut."""
    salvaged = vars(ds).get(_TRUNCATED)
    if salvaged is None or salvaged.where != "Pixel Data":
        return None
    return int(salvaged.complete)


def header_truncation(ds: Dataset) -> str | None:
    """Why a header that pydicom read without complaint is cut short, or None.

    pydicom stops silently at the end of a file, so a file cut inside its header reads as
    a shorter data set, whose last element holds fewer bytes than its length says. `index`
    calls such a file an error, and so does `convert` (not "no pixel data").
    """
    tags = list(ds.keys())
    if not tags:
        return "truncated DICOM file: no data set after the file meta"
    last = ds.get_item(max(tags))
    length, value = getattr(last, "length", None), getattr(last, "value", None)
    if isinstance(value, bytes) and isinstance(length, int) and len(value) < length:
        return f"truncated DICOM file: it ends inside {tag_text(max(tags))}"
    return None


def describe_truncation(ds: Dataset, size: int | None) -> str | None:
    """For ``info``: where a truncated file ends, or None when it looks whole.

    Pixel data shorter than its description, an element whose value runs past the end of
    the file, or a last sequence (or encapsulated pixel data) without its delimiter.
    """
    salvaged = vars(ds).get(_TRUNCATED)
    if salvaged is not None:
        return str(salvaged.description)
    truncated = _native_truncation(ds)
    if truncated is not None:
        present, expected, _ = truncated
        return f"the file is truncated: Pixel Data has {present} of {expected} bytes"
    if size is None:
        return None
    tags = list(ds.keys())
    if not tags:
        return None
    last = ds.get_item(tags[-1], keep_deferred=True)
    tell = getattr(last, "value_tell", None)
    length = getattr(last, "length", None)
    if tell is None or length is None:
        return None
    name = f"({last.tag.group:04X},{last.tag.element:04X})"
    if length != 0xFFFFFFFF and tell + length > size:
        return f"the file is truncated inside {name}: {size - tell} of {length} bytes"
    return None


def _native_truncation(ds: Dataset) -> tuple[int, int, int] | None:
    """(bytes present, bytes expected, bytes per frame) when native pixel data is short."""
    cache = _cache(ds)
    if "truncation" in cache:
        return cache["truncation"]
    result = None
    try:
        ts = transfer_syntax(ds)
        if native.whole_native(ds, ts):  # exactly the described length: nothing missing
            cache["truncation"] = None
            return None
        element = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
        value = getattr(element, "value", None)
        if element is not None and not ts.is_encapsulated and isinstance(value, bytes):
            from pydicom.pixels.utils import get_expected_length

            bits = int(ds.BitsAllocated)
            view = _decodable_view(ds)
            frame_bytes = get_expected_length(view, "bytes") // number_of_frames(ds)
            expected = frame_bytes * number_of_frames(ds)
            if bits % 8 == 0 and 0 < len(value) < expected and not _codestream(value):
                result = (len(value), expected, frame_bytes)
    except (AttributeError, TypeError, ValueError):
        result = None
    cache["truncation"] = result
    return result


#: A cut frame is padded with zeros to be drawn; past this size only if at least half of it
#: is there (a header claiming 65535 rows over a few KB of pixels would take GBs to render)
_PAD_FLOOR = 16 * 2**20


def _truncated_native_frame(ds: Dataset, frame_index: int) -> np.ndarray:
    """A frame of truncated native pixel data: complete, or padded with zeros if cut."""
    present, _, frame_bytes = _native_truncation(ds) or (0, 0, 0)
    start = frame_index * frame_bytes
    if start >= present:
        raise errors.PixelDataError(
            f"frame {frame_index + 1} is missing: the file is truncated inside its pixel data"
        )
    held = min(present - start, frame_bytes)
    if frame_bytes > _PAD_FLOOR and held * 2 < frame_bytes:  # a lying Rows/Columns, mostly
        raise errors.PixelDataError(
            f"frame {frame_index + 1} is mostly missing: the file holds {held} of its "
            f"{frame_bytes} bytes (Rows x Columns describe far more than the file has)"
        )
    data = bytes(ds.PixelData[start : start + frame_bytes])
    return _native_frame(ds, data.ljust(frame_bytes, b"\0"), transfer_syntax(ds))


def _native_frame(ds: Dataset, data: bytes, ts: UID) -> np.ndarray:
    """One frame of native pixel bytes decoded as pydicom would (a single-frame view)."""
    from pydicom.pixels import pixel_array

    view = Dataset()
    for keyword in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        if keyword in ds:
            view[keyword] = ds[keyword]
    if "PixelRepresentation" not in view:
        view.PixelRepresentation = 0
    if "BitsStored" not in view:
        view.BitsStored = view.BitsAllocated
    view.file_meta = pydicom.dataset.FileMetaDataset()
    view.file_meta.TransferSyntaxUID = ts
    view.set_original_encoding(ts.is_implicit_VR, ts.is_little_endian)
    vr = "OB" if int(view.BitsAllocated) <= 8 else "OW"
    view["PixelData"] = pydicom.DataElement(0x7FE00010, vr, data)
    return pixel_array(view, correct_unused_bits=False, as_rgb=False)


def _codestream(value: bytes) -> bool:
    return value[:4] == b"\xfe\xff\x00\xe0" or codecs.sniff_codestream(value[:4096]) is not None


_ITEM_TAG = b"\xfe\xff\x00\xe0"


def codestream_in_native(value: bytes) -> UID | None:
    """The syntax of a compressed codestream (or of encapsulated fragments) that native
    Pixel Data holds in fact, read from its markers (`_relabelled`); None for pixels."""
    stream = codecs.first_fragment(value) if value[:4] == _ITEM_TAG else value
    return codecs.sniff_codestream(stream[:65536])


def _relabelled(ds: Dataset, ts: UID) -> tuple[Dataset, UID] | None:
    """A native transfer syntax over a compressed codestream: (view as that syntax, syntax).

    Old devices and converters wrote JPEG streams under an uncompressed label; DCMTK and GDCM
    recognise the stream by its markers, and so do we (a manifest note says so).
    """
    cache = _cache(ds)
    if "relabelled" in cache:
        return cache["relabelled"]
    result = None
    element = ds.get_item("PixelData", keep_deferred=True)
    value = getattr(element, "value", None)
    if isinstance(value, bytes) and value:
        encapsulated = value[:4] == _ITEM_TAG
        real = codestream_in_native(value)
        if real is not None:
            from pydicom.encaps import encapsulate

            view = Dataset({tag: ds.get_item(tag, keep_deferred=True) for tag in ds.keys()})  # noqa: SIM118
            view.file_meta = pydicom.dataset.FileMetaDataset()
            view.file_meta.TransferSyntaxUID = real
            view.set_original_encoding(False, True)
            pixel_value = value if encapsulated else encapsulate([value])
            view["PixelData"] = pydicom.DataElement(0x7FE00010, "OB", pixel_value)
            view["PixelData"].is_undefined_length = True
            result = (view, real)
            add_note(
                ds,
                f"transfer syntax says {ts.name} but the pixel data is a {real.name} "
                "codestream: decoded as that",
            )
    cache["relabelled"] = result
    return result


def _infer_file_meta(ds: Dataset, ts: UID) -> None:
    """Files without File Meta (ACR-NEMA): pydicom's decoders need the transfer syntax we
    inferred from the encoding (as DCMTK infers it), so it is set on the dataset."""
    if _meta_syntax(ds):
        return
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    vars(ds)["_dcmexport_inferred_ts"] = True


def _inferred_syntax(ds: Dataset) -> bool:
    return bool(vars(ds).get("_dcmexport_inferred_ts")) or not _meta_syntax(ds)


def _packed_12bit_frame(ds: Dataset, frame_index: int) -> np.ndarray:
    """ACR-NEMA Bits Allocated 12: two pixels in three bytes (DCMTK reads them; pydicom not)."""
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1:
        raise errors.PixelDataError("packed 12-bit pixel data with more than one sample")
    rows, columns = int(ds.Rows), int(ds.Columns)
    count = rows * columns
    start_bit = frame_index * count * 12
    data = bytes(ds.PixelData)
    if start_bit % 8:  # an odd pixel count: frames do not start on a byte
        values = codecs.unpack_12bit(data, count * (frame_index + 1))[-count:]
    else:
        values = codecs.unpack_12bit(data[start_bit // 8 :], count)
    if (start_bit + count * 12 + 7) // 8 > len(data):
        add_note(ds, "file truncated: packed 12-bit pixel data is short (missing pixels 0)")
    add_note(ds, "packed 12-bit pixels (Bits Allocated 12) unpacked")
    return values.reshape(rows, columns)


def _deflated_frame(ds: Dataset, frame_index: int) -> np.ndarray:
    """Deflated Image Frame Compression: inflate the frame, decode it as native pixels."""
    from pydicom.encaps import get_frame

    n = number_of_frames(ds)
    data = codecs.inflate(get_frame(ds.PixelData, frame_index, number_of_frames=n))
    return _native_frame(ds, data, pydicom.uid.ExplicitVRLittleEndian)


#: Photometric interpretations a JPEG Baseline frame is read lean for, by samples per pixel.
_BASELINE_PHOTOMETRIC = {1: ("MONOCHROME1", "MONOCHROME2"), 3: ("YBR_FULL", "YBR_FULL_422", "RGB")}


class _BaselineLayout(NamedTuple):
    samples: int
    rows: int
    columns: int
    photometric: str


def _baseline_layout(ds: Dataset) -> _BaselineLayout | None:
    """The frame layout of 8-bit unsigned JPEG Baseline data that Pillow decodes as pydicom's
    Pillow plugin does (`_pillow_baseline`), or None: pydicom decodes it."""
    try:
        samples, rows, columns = (
            native.us_value(ds, t) for t in (0x00280002, 0x00280010, 0x00280011)
        )
        bits_allocated, bits_stored, signed = (
            native.us_value(ds, t) for t in (0x00280100, 0x00280101, 0x00280103)
        )
    except (KeyError, TypeError, ValueError):
        return None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if (
        (bits_allocated, bits_stored, signed) != (8, 8, 0)
        or photometric not in _BASELINE_PHOTOMETRIC.get(samples, ())
        or "ExtendedOffsetTable" in ds
        or _cut_fragments(ds) is not None
    ):
        return None
    return _BaselineLayout(samples, rows, columns, photometric)


def _pillow_baseline(data: bytes, layout: _BaselineLayout) -> np.ndarray | None:
    """One 8-bit JPEG Baseline frame's codestream decoded by Pillow itself, as pydicom's
    Pillow plugin with ``as_rgb`` decodes it, without pydicom's per-frame runner; None when
    it is not the plain case (then pydicom decodes it and explains any failure).

    A YBR frame without an Adobe marker comes out of libjpeg as RGB, at a third of the cost
    of pydicom's floating-point YBR_FULL → RGB conversion of the YCbCr samples: exactly the
    values DCMTK's `dcmj2pnm` gives (libjpeg's integer conversion), and within 1 of
    pydicom's (equal on every real file tested; 47 of 921,600 values differ on a noise
    frame). An RGB frame without the marker is kept as stored, as pydicom keeps it (libjpeg
    would take it for YCbCr). tests/test_decoding.py compares every frame.
    """
    from PIL import Image

    samples, rows, columns, photometric = layout
    try:
        image = Image.open(io.BytesIO(data), formats=("JPEG",))
        adobe = "adobe_transform" in image.info
        if samples == 3 and photometric == "RGB" and not adobe:
            image.draft("YCbCr", image.size)  # the samples as stored: no colour transform
        elif samples == 3 and adobe and photometric != "RGB":
            return None  # pydicom would convert twice: its own call
        image.load()
    except Exception:  # a stream Pillow cannot read: the plugins say why
        return None
    mode = {1: "L", 3: "YCbCr" if photometric == "RGB" and not adobe else "RGB"}[samples]
    if image.size != (columns, rows) or image.mode != mode:
        return None
    pixels = np.frombuffer(image.tobytes(), dtype=np.uint8)
    return pixels.reshape((rows, columns) if samples == 1 else (rows, columns, 3))


def _pillow_baseline_frame(ds: Dataset, frame_index: int) -> np.ndarray | None:
    """Frame `frame_index` of in-memory 8-bit JPEG Baseline data, by `_pillow_baseline`."""
    from pydicom.encaps import get_frame

    layout = _baseline_layout(ds)
    if layout is None:
        return None
    try:
        data = get_frame(ds.PixelData, frame_index, number_of_frames=number_of_frames(ds))
    except Exception:  # a broken item structure: pydicom's decoders say why
        return None
    return _pillow_baseline(data, layout)


def _pillow_baseline_stream(ds: Dataset, path: str) -> Iterator[np.ndarray | None]:
    """The frames of 8-bit JPEG Baseline data left on disk (a large cine), read one at a
    time as pydicom's `iter_pixels` reads them (`generate_frames` from the file, at the
    Pixel Data's value) and decoded by `_pillow_baseline`. Yields None where a frame is not
    the plain case, and nothing at all when the data is not: the caller decodes from there."""
    from pydicom.encaps import generate_frames

    layout = _baseline_layout(ds)
    element = ds.get_item("PixelData", keep_deferred=True)
    where = getattr(element, "value_tell", None)
    if layout is None or not isinstance(where, int):
        return
    with open(path, "rb") as f:
        f.seek(where)
        for data in generate_frames(f, number_of_frames=number_of_frames(ds)):
            yield _pillow_baseline(data, layout)


def _imagecodecs_frame(
    original: Dataset, ds: Dataset, ts: UID, frame_index: int, *, keep_ybr: bool
) -> np.ndarray:
    """One frame's codestream decoded by imagecodecs; a frame of another size than Rows ×
    Columns (seen in real multi-frame files) is decoded at its own size, with a note."""
    from pydicom.encaps import get_frame

    n = number_of_frames(ds)
    data = get_frame(ds.PixelData, frame_index, number_of_frames=n)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    frame = codecs.decode_jpeg_family(
        data, str(ts), keep_ybr=keep_ybr and photometric.startswith("YBR")
    )
    rows, columns = int(ds.Rows), int(ds.Columns)
    if frame.shape[:2] != (rows, columns):
        add_note(
            original,
            f"frame {frame_index + 1} is {frame.shape[1]}x{frame.shape[0]}, "
            f"not {columns}x{rows}: rendered at its own size",
        )
    if int(ds.get("PixelRepresentation") or 0) and frame.dtype.kind == "u":
        frame = frame.view(frame.dtype.str.replace("u", "i"))
    return frame


def is_video_syntax(ds: Dataset) -> bool:
    """True when the pixel data is an encapsulated MPEG-2, H.264 or HEVC stream."""
    return codecs.is_video(str(transfer_syntax(ds)))


def video_elementary_stream(ds: Dataset) -> bytes:
    """The MPEG-2/H.264/HEVC elementary stream of encapsulated video (PS3.5 8.2.5)."""
    from pydicom.encaps import generate_fragments

    return b"".join(generate_fragments(ds.PixelData))


def _video_frame(ds: Dataset, ts: UID, frame_index: int) -> np.ndarray:
    """One frame of encapsulated video, decoded by PyAV; frames asked for in order are
    decoded once (a cache keeps the decoder and its position)."""
    cache = _cache(ds)
    state = cache.get("video")
    if state is None or state[0] > frame_index:
        grey = str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
        frames = codecs.iter_video_frames(video_elementary_stream(ds), str(ts), grey=grey)
        state = [0, frames, None]
        cache["video"] = state
    while state[0] <= frame_index:
        try:
            state[2] = next(state[1])
        except StopIteration:
            cache.pop("video", None)
            raise errors.PixelDataError(
                f"frame {frame_index + 1} is not in the video stream ({state[0]} frames)"
            ) from None
        state[0] += 1
    return state[2]


def iter_frames(ds: Dataset, source: Any = None) -> Iterator[np.ndarray]:
    """Decode every frame in order, one at a time, as `decode_frame` would.

    A large file left on disk by `read_dataset` is streamed with pydicom's `iter_pixels`
    (one open file, one frame in memory); if the preferred plugin fails on a frame, that
    frame and the rest go through `decode_frame`'s plugin fallback.
    """
    from pydicom.pixels import iter_pixels

    ts = transfer_syntax(ds)
    if not ts.is_transfer_syntax and str(ts) != codecs.DEFLATED_IMAGE_FRAME:
        raise _unsupported(ts, "cannot be decoded")
    check_limits(ds)
    done = 0
    n = frames_present(ds)
    deferred = source is not None and _pixels_deferred(ds, ts)
    bits_allocated = _bits_allocated(ds)
    # streamed from the file: by Pillow itself (8-bit JPEG Baseline) or by pydicom
    plugins = plugin_order(ts, bits_allocated) if deferred and _streamable(ds, ts) else []
    as_rgb = codec_converts_colour(ts, bits_allocated or 8)
    if plugins and _lean_baseline(ts, plugins, as_rgb) and isinstance(source, (str, os.PathLike)):
        try:
            for frame in _pillow_baseline_stream(ds, os.fspath(source)):
                if frame is None or done == n:
                    break
                yield frame
                done += 1
        except (OSError, ValueError) as exc:  # a broken item structure: per frame from here
            log.debug("lean JPEG stream stopped at frame %d (%s)", done, exc)
        if done == n:
            return
    elif plugins:
        extra: dict[str, Any] = {"transfer_syntax_uid": ts} if _inferred_syntax(ds) else {}
        try:
            for frame in iter_pixels(
                source,
                decoding_plugin=plugins[0],
                correct_unused_bits=False,
                as_rgb=as_rgb,
                **extra,
            ):
                yield frame
                done += 1
                if done == n:
                    return
        except (MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except errors.DcmExportError:
            raise
        except BaseException as exc:  # a plugin's failure (or Rust panic): per frame from here
            log.debug("streaming decode stopped at frame %d (%s): per frame from here", done, exc)
    for index in range(done, n):
        yield decode_frame(ds, index, source)


def _lean_baseline(ts: UID, plugins: list[str], as_rgb: bool) -> bool:
    """8-bit JPEG Baseline decoded to RGB whose preferred decoder is Pillow: `_pillow_baseline`
    may decode its frames (it checks the rest)."""
    return ts == pydicom.uid.JPEGBaseline8Bit and as_rgb and plugins[0] == "pillow"


def _streamable(ds: Dataset, ts: UID) -> bool:
    """pydicom's `iter_pixels` reads the file itself: not for what we decode ourselves."""
    return not (
        codecs.is_video(str(ts))
        or str(ts) in codecs.RETIRED_JPEG
        or str(ts) == codecs.DEFLATED_IMAGE_FRAME
        or _bits_allocated(ds) == 12
    )


def _pixels_deferred(ds: Dataset, ts: UID) -> bool:
    """True if the pixel data was left on disk (large file): decode frames from the path.

    Deflated files are the exception: pydicom can only decode them from the inflated dataset.
    """
    if ts == pydicom.uid.DeflatedExplicitVRLittleEndian or "PixelData" not in ds:
        return False
    element = ds.get_item("PixelData", keep_deferred=True)
    return getattr(element, "value", None) is None


def decodes_as_is(ds: Dataset) -> bool:
    """True if pydicom's decoders take `ds` as it is (no view with a repaired Number of
    Frames or Pixel Representation is needed: `_decodable_view`)."""
    return _decodable_view(ds) is ds


def _decodable_view(ds: Dataset) -> Dataset:
    """`ds`, or a view of it that pydicom's decoders accept: Number of Frames the count
    `number_of_frames` reads, and a missing Pixel Representation as unsigned.

    pydicom's decoders parse (0028,0008) themselves and give up on a malformed value such as
    ``1A`` (seen in real RT Dose files), where DCMTK reads the leading number; they refuse a
    file without (0028,0103) (ACR-NEMA heritage), which GDCM reads as unsigned
    (`check_pixel_header` notes it). The view shares every other element (and so loads
    deferred pixel data from the file); `ds` is unchanged.
    """
    frames_malformed = False
    if ds.get_item("NumberOfFrames") is not None:
        try:
            int(ds.NumberOfFrames)
        except (TypeError, ValueError):
            frames_malformed = True
    frames = number_of_frames(ds)
    cut_fragments = _cut_fragments(ds)  # a cut file: one frame per complete fragment
    if cut_fragments is not None and 0 < cut_fragments < frames:
        frames_malformed, frames = True, cut_fragments
    no_representation = "PixelData" in ds and ds.get("PixelRepresentation") in (None, "")
    if not (frames_malformed or no_representation):
        return ds
    view = Dataset({tag: ds.get_item(tag, keep_deferred=True) for tag in ds.keys()})  # noqa: SIM118
    view.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
    implicit_vr, little_endian = ds.original_encoding
    view.set_original_encoding(implicit_vr, little_endian, ds.original_character_set)
    view.filename = getattr(ds, "filename", None)
    if frames_malformed:
        view["NumberOfFrames"] = pydicom.DataElement(0x00280008, "IS", frames)
    if no_representation:
        view["PixelRepresentation"] = pydicom.DataElement(0x00280103, "US", 0)
    return view


def _bits_allocated(ds: Dataset) -> int | None:
    try:
        return int(ds.get("BitsAllocated"))
    except (TypeError, ValueError):
        return None


def number_of_frames(ds: Dataset) -> int:
    """(0028,0008) Number of Frames, 1 when absent or malformed."""
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _innermost(exc: BaseException) -> str:
    """The plugin's own message: pydicom wraps it as 'Unable to decode ...:\n  plugin: msg'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    name, sep, rest = last.partition(": ")
    return _one_line(Exception(rest if sep and " " not in name else last))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
