"""What is the same for every slice of a series, worked out once per worker.

A series' slices share their Image Pixel module, rescale, windows and polarity; reading them
through pydicom's attribute access costs more per slice than applying the lookup table. Here
the `PixelDescription` and the `FrameTransforms` of a plain single-frame dataset (no
functional groups, no Modality or VOI LUT Sequence) are cached, keyed on the raw bytes of
every element they are read from plus the dataset's encoding: a slice whose bytes match
reuses the result, anything else (converted elements, sequences, enhanced multi-frame) goes
the general way. The cached values are frozen dataclasses of plain numbers and strings.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from ..dicom.rawkey import cached, raw_key
from .pipeline import FrameTransforms, PixelDescription, frame_transforms
from .pipeline import modality_rescale as pipeline_rescale

#: Elements `PixelDescription.from_dataset` reads (group 0028).
_PIXEL_TAGS = tuple(
    BaseTag(t)
    for t in (
        0x00280002,
        0x00280004,
        0x00280010,
        0x00280011,
        0x00280100,
        0x00280101,
        0x00280102,
        0x00280103,
    )
)

#: Elements `frame_transforms` reads from a dataset without sequences: SOP Class (no modality
#: LUT in XA/XRF), rescale, windows and their explanation (decoded with the character set),
#: VOI LUT Function, Presentation LUT Shape, pixel padding.
_TRANSFORM_TAGS = tuple(
    BaseTag(t)
    for t in (
        0x00080005,
        0x00080016,
        0x00281050,
        0x00281051,
        0x00281052,
        0x00281053,
        0x00281055,
        0x00281056,
        0x20500020,
        0x00280120,
        0x00280121,
    )
)

#: Sequences whose presence makes the transforms depend on more than the elements above.
_SEQUENCE_TAGS = tuple(
    BaseTag(t)
    for t in (
        0x00283000,  # Modality LUT Sequence
        0x00283010,  # VOI LUT Sequence
        0x52009229,  # Shared Functional Groups Sequence
        0x52009230,  # Per-frame Functional Groups Sequence
    )
)

_descriptions: dict[Hashable, PixelDescription] = {}
_transforms: dict[Hashable, FrameTransforms] = {}


def pixel_description(ds: Dataset) -> PixelDescription:
    """`PixelDescription.from_dataset(ds)`, once per distinct Image Pixel module."""
    return cached(
        _descriptions, raw_key(ds, _PIXEL_TAGS), lambda: PixelDescription.from_dataset(ds)
    )


def transforms(ds: Dataset, frame_index: int, desc: PixelDescription) -> FrameTransforms:
    """`frame_transforms(ds, frame_index, desc)`, once per series for plain datasets."""
    key: tuple[Any, ...] | None = None
    if frame_index == 0 and not any(tag in ds._dict for tag in _SEQUENCE_TAGS):
        raw = raw_key(ds, _TRANSFORM_TAGS)
        key = None if raw is None else (desc, *raw)
    return cached(_transforms, key, lambda: frame_transforms(ds, frame_index, desc))


def modality_rescale(ds: Dataset, frame_index: int, desc: PixelDescription) -> tuple[float, float]:
    """`pipeline.modality_rescale`, from the cached transforms when the dataset is plain (they
    hold the same pair)."""
    if frame_index != 0 or any(tag in ds._dict for tag in _SEQUENCE_TAGS):
        return pipeline_rescale(ds, frame_index)
    t = transforms(ds, frame_index, desc)
    return t.rescale_slope, t.rescale_intercept
