"""Read DICOM files and decode frames to stored values, with the decoder chosen on purpose.

pydicom picks a decoding plugin by import order and silently prefers GDCM when installed; we
choose per transfer syntax from measurements instead (Pillow is 2–4× faster than pylibjpeg for
8-bit JPEG baseline, pylibjpeg-rle 3–4× faster than pydicom's RLE) and fall back to the next
plugin when one fails on a malformed stream.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .. import errors

log = logging.getLogger(__name__)

#: Preferred decoding plugins per Transfer Syntax UID, fastest correct first.
PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": ("pillow", "pylibjpeg", "gdcm"),  # JPEG baseline 8-bit
    "1.2.840.10008.1.2.4.51": ("pylibjpeg", "pillow", "gdcm"),  # JPEG extended 12-bit
    "1.2.840.10008.1.2.4.57": ("pylibjpeg", "gdcm"),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("pylibjpeg", "gdcm"),  # JPEG lossless SV1
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


def has_dicm_prefix(path: str | os.PathLike[str]) -> bool:
    """True if the file has the Part 10 preamble and ``DICM`` marker (reads 132 bytes).

    Raises OSError if the file cannot be read: that is an error, not "not DICOM".
    """
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dataset(
    path: str | os.PathLike[str] | bytes | IO[bytes], *, stop_before_pixels: bool = False
) -> Dataset:
    """Read a DICOM file (a path, the bytes of an archive member, or an open binary file such
    as an object-store read), with or without preamble and file meta; `NotDicomError` otherwise.

    Files without the ``DICM`` marker count as DICOM only if pydicom parses a header with
    elements of the General Study/Series/Image or Image Pixel groups (0008, 0020, 0028).
    Pixel data over 8 MB is deferred, so a large cine is not loaded to pick a few frames.
    """
    source: IO[bytes] | str | os.PathLike[str]
    in_memory = isinstance(path, bytes)
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
        else:
            part10, size = has_dicm_prefix(path), None
            source = path
            if not part10:
                size = os.stat(path).st_size
    except OSError as exc:
        raise errors.InputReadError(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        if not part10 and size is not None and size < 16:
            raise errors.NotDicomError("not a DICOM file")
        ds = pydicom.dcmread(
            source,
            force=True,
            stop_before_pixels=stop_before_pixels,
            defer_size=None if in_memory else "8 MB",
        )
    except errors.NotDicomError:
        raise
    except OSError as exc:
        raise errors.InputReadError(f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # pydicom raises many types on junk input
        reason = f"unreadable DICOM header ({_one_line(exc)})" if part10 else "not a DICOM file"
        raise errors.NotDicomError(reason) from None
    if not part10 and not any(tag.group in (0x0008, 0x0020, 0x0028) for tag in ds.keys()):  # noqa: SIM118
        raise errors.NotDicomError("not a DICOM file")
    return ds


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
    return str(ts) in _JPEG_FAMILY and bits_allocated <= 8


def plugin_order(ts: UID, bits_allocated: int | None = None) -> list[str]:
    """Installed decoding plugins for `ts`, preferred first; [""] for native encodings.

    8-bit JPEG Extended goes to Pillow first: its libjpeg-turbo upsamples 4:2:2 chroma as
    DCMTK's IJG decoder does (pylibjpeg differs by up to 26 levels at colour edges); Pillow
    cannot decode 12-bit samples, so those keep pylibjpeg first.
    """
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        hint = INSTALL_HINTS.get(str(ts))
        extra = f"; install {hint}" if hint else " by any installed pydicom plugin"
        raise errors.UnsupportedTransferSyntaxError(
            f"transfer syntax {ts.name} ({ts}) cannot be decoded{extra}"
        ) from None
    if not ts.is_encapsulated:
        return [""]
    available = list(decoder.available_plugins)
    if not available:
        hint = INSTALL_HINTS.get(str(ts), "a pydicom pixel data plugin")
        raise errors.UnsupportedTransferSyntaxError(
            f"transfer syntax {ts.name} ({ts}) needs a decoder that is not installed: "
            f"install {hint}"
        )
    preferred = [p for p in PREFERRED_PLUGINS.get(str(ts), ()) if p in available]
    if str(ts) == _JPEG_EXTENDED and bits_allocated == 8 and "pillow" in preferred:
        preferred.insert(0, preferred.pop(preferred.index("pillow")))
    return preferred + [p for p in available if p not in preferred]


def decode_frame(ds: Dataset, frame_index: int, source: Any = None) -> np.ndarray:
    """Decode one frame (0-based `frame_index`) as container values.

    Unused high bits are left in place (`extract_stored_values` masks them using High Bit,
    which pydicom ignores). `source` may be the file path: when `read_dataset` left a large
    pixel data element on disk, pydicom then reads just that frame from the file.
    """
    from pydicom.pixels import pixel_array

    ts = transfer_syntax(ds)
    bits_allocated = _bits_allocated(ds)
    plugins = plugin_order(ts, bits_allocated)
    ds = _with_valid_frame_count(ds)
    src = source if source is not None and _pixels_deferred(ds, ts) else ds
    failures = []
    # a path without File Meta needs the transfer syntax we inferred from the dataset
    extra: dict[str, Any] = (
        {"transfer_syntax_uid": ts} if src is not ds and not _meta_syntax(ds) else {}
    )
    for plugin in plugins:
        try:
            return pixel_array(
                src,
                index=frame_index,
                decoding_plugin=plugin,
                correct_unused_bits=False,
                as_rgb=codec_converts_colour(ts, bits_allocated or 8),
                **extra,
            )
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a plugin's failure on a bad stream: try the next one
            failures.append(f"{plugin or 'pydicom'}: {_innermost(exc)}")
            log.debug("decoder %s failed on frame %d: %s", plugin, frame_index, exc)
    raise errors.PixelDataError(f"cannot decode {ts.name} pixel data ({'; '.join(failures)})")


def iter_frames(ds: Dataset, source: Any = None) -> Iterator[np.ndarray]:
    """Decode every frame in order, one at a time, as `decode_frame` would.

    A large file left on disk by `read_dataset` is streamed with pydicom's `iter_pixels`
    (one open file, one frame in memory); if the preferred plugin fails on a frame, that
    frame and the rest go through `decode_frame`'s plugin fallback.
    """
    from pydicom.pixels import iter_pixels

    n = number_of_frames(ds)
    ts = transfer_syntax(ds)
    done = 0
    ds = _with_valid_frame_count(ds)
    if source is not None and _pixels_deferred(ds, ts):
        extra: dict[str, Any] = {} if _meta_syntax(ds) else {"transfer_syntax_uid": ts}
        bits_allocated = _bits_allocated(ds)
        try:
            for frame in iter_pixels(
                source,
                decoding_plugin=plugin_order(ts, bits_allocated)[0],
                correct_unused_bits=False,
                as_rgb=codec_converts_colour(ts, bits_allocated or 8),
                **extra,
            ):
                yield frame
                done += 1
                if done == n:
                    return
        except (MemoryError, KeyboardInterrupt, GeneratorExit):
            raise
        except errors.DcmExportError:
            raise
        except Exception as exc:
            log.debug("streaming decode stopped at frame %d (%s): per frame from here", done, exc)
    for index in range(done, n):
        yield decode_frame(ds, index, source)


def _pixels_deferred(ds: Dataset, ts: UID) -> bool:
    """True if the pixel data was left on disk (large file): decode frames from the path.

    Deflated files are the exception: pydicom can only decode them from the inflated dataset.
    """
    if ts == pydicom.uid.DeflatedExplicitVRLittleEndian or "PixelData" not in ds:
        return False
    element = ds.get_item("PixelData", keep_deferred=True)
    return getattr(element, "value", None) is None


def _with_valid_frame_count(ds: Dataset) -> Dataset:
    """`ds`, or a view of it whose Number of Frames is the count `number_of_frames` reads.

    pydicom's decoders parse (0028,0008) themselves and give up on a malformed value such as
    ``1A`` (seen in real RT Dose files), where DCMTK reads the leading number. The view shares
    every other element (and so loads deferred pixel data from the file); `ds` is unchanged.
    """
    value = ds.get_item("NumberOfFrames")
    if value is None:
        return ds
    try:
        int(ds.NumberOfFrames)
        return ds
    except (TypeError, ValueError):
        pass
    view = Dataset({tag: ds.get_item(tag, keep_deferred=True) for tag in ds.keys()})  # noqa: SIM118
    view.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
    implicit_vr, little_endian = ds.original_encoding
    view.set_original_encoding(implicit_vr, little_endian, ds.original_character_set)
    view.filename = getattr(ds, "filename", None)
    view["NumberOfFrames"] = pydicom.DataElement(0x00280008, "IS", number_of_frames(ds))
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
