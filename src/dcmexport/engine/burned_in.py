"""``--burned-in mask``: black out burned-in text in a de-identified dataset's pixel data,
prove none is left, and only then say Burned In Annotation NO.

Runs in the unit of work after de-identification and before any exporter, so the DICOM
copy, every still and every video are made from the masked pixels. Detection alone decides
what is masked (every text region, whatever it says); after masking, OCR reads the masked
frames again and any text it still reads makes the image an `error` with nothing written.
Compressed pixel data is decoded, masked and stored uncompressed (Explicit VR Little
Endian); the manifest note says so.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset

from ..dicom import codecs, decoding
from ..errors import BurnedInTextError
from ..render import burned_in, ocr

log = logging.getLogger(__name__)

#: native encodings that are kept as they are when the pixels are rewritten
_NATIVE_KEPT = (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian)


@dataclasses.dataclass(frozen=True)
class MaskReport:
    """What masking did to one image (for the manifest note)."""

    boxes: int
    frames_checked: int
    frames: int
    #: the pixel data was compressed (or big endian) and is now stored uncompressed
    decompressed: bool

    @property
    def note(self) -> str:
        text = (
            f"burned-in text masked: {self.boxes} box(es), "
            f"OCR on {self.frames_checked} of {self.frames} frame(s), verified clean"
        )
        if self.decompressed:
            text += "; pixel data rewritten uncompressed (Explicit VR Little Endian)"
        return text


def mask_burned_in(ds: Dataset) -> MaskReport:
    """Find text in `ds`'s frames, black it out in place, re-check, set Burned In Annotation
    NO; `BurnedInTextError` when the pixels cannot be masked or text remains."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    ts = decoding.transfer_syntax(ds)
    bits_allocated = int(ds.get("BitsAllocated") or 8)
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3 and decoding.codec_converts_colour(ts, bits_allocated):
        photometric = "RGB"  # the codec hands out RGB whatever the header says
    if photometric not in burned_in.MASKABLE or bits_allocated not in (8, 16, 32):
        raise BurnedInTextError(
            f"burned-in text cannot be masked in {photometric or 'unknown'} pixel data "
            f"with {bits_allocated} bits allocated: left out"
        )
    frames = list(decoding.iter_frames(ds))
    views = [burned_in.ocr_view(frame, photometric, bits_stored) for frame in frames]
    checked = burned_in.frames_to_check(views)
    shape = views[0].shape
    found = [box for i in checked for box in ocr.detect_text(views[i])]
    boxes = sorted(
        {burned_in.with_margin(b, shape) for b in found if burned_in.is_text_line(b, shape)}
    )
    decompressed = False
    if boxes:
        mask = burned_in.box_mask(shape, boxes)
        frames = [
            burned_in.masked(f, mask, burned_in.black_value(f, photometric, bits_stored))
            for f in frames
        ]
        left = sum(
            burned_in.is_text_line(box, shape)
            for i in checked
            for box, _ in ocr.read_text(burned_in.ocr_view(frames[i], photometric, bits_stored))
        )
        if left:
            raise BurnedInTextError(
                f"burned-in text remains after masking ({left} line(s) still read): left out"
            )
        decompressed = _store_native(ds, frames, photometric, ts)
    ds.BurnedInAnnotation = "NO"  # masked (or nothing found) and re-checked clean
    log.debug("masked %d box(es) on %d of %d frame(s)", len(boxes), len(checked), len(frames))
    return MaskReport(len(boxes), len(checked), len(frames), decompressed)


def _store_native(
    ds: Dataset, frames: list[np.ndarray], photometric: str, ts: pydicom.uid.UID
) -> bool:
    """Put the masked frames back as native pixel data; True if the transfer syntax changed."""
    pixel_representation = int(ds.get("PixelRepresentation") or 0)
    dtype = np.dtype(f"{'i' if pixel_representation else 'u'}{int(ds.BitsAllocated) // 8}")
    data = np.stack(frames).astype(dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) == 8 else "OW"
    if photometric == "YBR_FULL_422":  # decoded to full resolution: stored as such
        photometric = "YBR_FULL"
    ds.PhotometricInterpretation = photometric
    if int(ds.get("SamplesPerPixel") or 1) == 3:
        ds.PlanarConfiguration = 0  # decoded frames are interleaved
    changed = ts not in _NATIVE_KEPT or codecs.is_video(str(ts))
    if changed:
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if keyword in ds:
                del ds[keyword]
    vars(ds).pop("_dcmexport_cache", None)  # frames decoded before masking are stale
    return changed
