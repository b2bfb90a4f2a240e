"""The de-identification of a de-identified run's unit of work (`anonymize`,
`convert --anonymize`, `--metadata-phi none`): once per input, before any exporter sees the
dataset; and what a result may say about its input (never the input's name).

Names, the manifest's pseudonymous sources, the keyed resume keys and ``--map`` are the
planner's (`deid_plan`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from ..dicom import decoding
from ..dicom.deid import DeidOptions, deidentify
from ..errors import ExcludedError, PixelDataError
from ..manifest import BURNED_IN_NOTE
from ..options import BurnedInPolicy, ConvertOptions, Product
from ..sources import InputRef
from .burned_in import mask_burned_in

if TYPE_CHECKING:
    from .work import FileResult


def deidentified(
    ds: Dataset, options: ConvertOptions, deid: DeidOptions, note: str
) -> tuple[Dataset, str]:
    """The unit of work's de-identification, once, before any exporter sees the dataset:
    the de-identified copy and the row note; `ExcludedError` for an image at risk of
    burned-in text under ``--burned-in exclude``."""
    if "DirectoryRecordSequence" in ds:
        raise ExcludedError(
            "a DICOMDIR is not copied or converted when de-identifying: its records name the "
            "original files and patients (its instances are, one by one)"
        )
    if options.product is Product.DICOM:
        if "Rows" in ds and decoding.pixel_keyword(ds) is None:
            raise PixelDataError("an image header without its pixel data (a truncated file?)")
        _load_deferred_pixels(ds)
    if options.burned_in.masks:
        _load_deferred_pixels(ds)  # masking rewrites them
    result = deidentify(ds, deid)
    at_risk = result.burned_in is not None or options.burned_in is BurnedInPolicy.MASK_ALL
    if options.burned_in.masks and at_risk and decoding.pixel_keyword(ds) == "PixelData":
        report = mask_burned_in(result.dataset)  # BurnedInTextError: an `error` row
        return result.dataset, "; ".join(n for n in (note, report.note) if n)
    if result.burned_in is not None:
        if options.burned_in is BurnedInPolicy.EXCLUDE:
            raise ExcludedError(f"left out by --burned-in exclude: {result.burned_in}")
        note = "; ".join(n for n in (note, f"{BURNED_IN_NOTE}: {result.burned_in}") if n)
    return result.dataset, note


def _load_deferred_pixels(ds: Dataset) -> None:
    """Large pixel data is left on disk by `read_dataset`; a copy needs it in memory."""
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            ds[keyword]


def sidecar_header(ds: Dataset, deid: DeidOptions) -> Dataset:
    """The header a `--metadata-phi none` sidecar describes: the de-identified copy."""
    return deidentify(ds, deid).dataset


def redacted(result: FileResult, ref: InputRef) -> FileResult:
    """`result` with nothing of the input's name in its reason; no traceback (a traceback
    or an unforeseen exception's text may quote values read from the file)."""
    reason = result.reason
    names = {str(ref.path), ref.path.name, ref.member, ref.name, ref.source}
    for name in sorted((n for n in names if len(n) >= 3), key=len, reverse=True):
        reason = reason.replace(name, "<input>")
    if result.detail:
        reason = reason.split(":", 1)[0]
    if reason == result.reason and not result.detail:
        return result
    rows = [
        dataclasses.replace(row, error=reason) if row.error == result.reason else row
        for row in result.rows
    ]
    return dataclasses.replace(result, reason=reason, detail="", rows=rows)
