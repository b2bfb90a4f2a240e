"""Volume geometry from DICOM headers: which slices make a volume, in which order, where.

Pure functions over header datasets (read with ``stop_before_pixels``). The geometry is the
DICOM patient coordinate system, LPS, of PS3.3 C.7.6.2.1.1: voxel (i, j) of a slice lies at
``Image Position + i · Δcol · row cosines + j · Δrow · column cosines``. Decisions:

- **Order**: by position along the slice normal (row × column cosines); Instance Number only
  breaks ties. File names and file order never count.
- **Split**: different orientations, matrix sizes or pixel spacings are separate volumes.
- **4-D**: several slices at one position become a 4th axis when one attribute (Echo Numbers,
  Temporal Position, diffusion b-value and direction, Trigger Time, Acquisition Number, Time,
  or for enhanced files the Dimension Index) tells them apart; otherwise the group is refused.
- **Gaps and non-uniform spacing** (a missing slice, a change of step): the stack is split into
  uniform runs, one volume each, and every volume says why. Nothing is stretched or resampled.
- **Gantry tilt** (positions step sideways, not along the normal): the exact sheared affine
  is kept (no resampling, values untouched); the qform gets the nearest rigid grid. Recorded.
- Enhanced multi-frame files: each frame is a slice, with position, orientation, spacing and
  rescale from its Per-frame (else Shared) Functional Groups, PS3.3 C.7.6.16.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..errors import ColourVolumeError, VolumeError
from .values import first_item as _item
from .values import functional_group as _group

#: Direction cosines closer than this (per component) are one orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Pixel spacings closer than this (mm) are one spacing.
SPACING_TOLERANCE_MM = 1e-4
#: Two slices closer than this (mm) are at the same position (a 4th-axis candidate).
SAME_POSITION_MM = 0.01
#: A step between neighbours belongs to a uniform run when it differs from the run's first
#: step by at most this many mm, or this fraction of the step, whichever is larger.
STEP_TOLERANCE_MM = 0.01
STEP_TOLERANCE_FRACTION = 0.005
#: Sideways drift of the stack (mm, over the whole volume) above which the affine is sheared.
SHEAR_TOLERANCE_MM = 1e-3

_GREYSCALE = {"MONOCHROME1", "MONOCHROME2"}
#: X-ray angiography and fluoroscopy have no Modality LUT (PS3.3 C.8.7.1.1).
_NO_MODALITY_LUT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1",
    "1.2.840.10008.5.1.4.1.1.12.1.1",
    "1.2.840.10008.5.1.4.1.1.12.2",
    "1.2.840.10008.5.1.4.1.1.12.2.1",
    "1.2.840.10008.5.1.4.1.1.12.3",
}
#: Dimension Index Pointers that are the in-stack position, not a 4th axis.
_POSITION_POINTERS = {0x00209057, 0x00200032, 0x00209056, 0x00209128}


class FourthAxis(str, enum.Enum):
    """The attribute whose values tell apart slices at one position, in the order tried."""

    ECHO = "EchoNumbers"
    DIFFUSION = "DiffusionBValue"
    TEMPORAL_POSITION = "TemporalPositionIdentifier"
    TRIGGER_TIME = "TriggerTime"
    ACQUISITION_NUMBER = "AcquisitionNumber"
    ACQUISITION_TIME = "AcquisitionTime"
    DIMENSION_INDEX = "DimensionIndexValues"


@dataclasses.dataclass(frozen=True)
class SliceHeader:
    """One candidate slice (a single-frame file, or one frame of an enhanced file)."""

    source: str
    frame_index: int  # 0-based; 0 for single-frame files
    rows: int
    columns: int
    orientation: tuple[float, ...] | None  # row cosines then column cosines (LPS)
    position: tuple[float, float, float] | None  # centre of the first pixel (LPS, mm)
    pixel_spacing: tuple[float, float] | None  # between rows, between columns (mm)
    rescale: tuple[float, float]  # (slope, intercept); (1, 0) when none applies
    instance_number: int | None
    acquisition_time: str | None
    photometric_interpretation: str
    samples_per_pixel: int
    stored: tuple[int, int, int, int]  # bits allocated, bits stored, high bit, representation
    axis_values: tuple[tuple[FourthAxis, str], ...]  # 4th-axis candidates this slice carries


@dataclasses.dataclass(frozen=True)
class SliceRef:
    """Where a volume's slice comes from and what the volume needs to know about it."""

    source: str
    frame_index: int
    position: tuple[float, float, float]
    rescale: tuple[float, float]
    instance_number: int | None
    acquisition_time: str | None


@dataclasses.dataclass(frozen=True)
class SeriesIdentity:
    """Series-level values for the sidecar (UIDs are dropped from it when de-identifying)."""

    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    series_number: str
    modality: str
    gantry_detector_tilt: float | None


@dataclasses.dataclass(frozen=True)
class VolumePlan:
    """One volume to write: ordered slices and exact geometry, decided from headers alone.

    `slices[t][k]` is slice k (along the normal) of volume t of the 4th axis. `affine_lps` maps
    (i = column, j = row, k = slice, 1) to LPS millimetres; `shape` is (columns, rows, slices)
    plus the 4th-axis length for 4-D volumes — NIfTI's index order.
    """

    identity: SeriesIdentity
    slices: tuple[tuple[SliceRef, ...], ...]
    shape: tuple[int, ...]
    affine_lps: tuple[tuple[float, ...], ...]
    spacing: tuple[float, float, float]  # column, row, slice step length (mm)
    slice_spacing: float  # distance between slice planes along the normal (mm)
    slice_spacing_measured: bool  # False for a single slice: from the header, or 1 mm
    sheared: bool
    tilt_degrees: float  # angle between the slice step and the normal
    fourth_axis: FourthAxis | None
    fourth_axis_values: tuple[str, ...]
    stored: tuple[int, int, int, int] | None  # common (bits allocated, stored, high, repr.)
    photometric_interpretation: str
    max_position_error_mm: float  # worst slice origin vs the affine
    part: int  # 1-based, among the volumes this series was split into
    parts: int
    notes: tuple[str, ...]

    @property
    def affine(self) -> np.ndarray:
        return np.array(self.affine_lps, dtype=np.float64)

    @property
    def array_shape(self) -> tuple[int, ...]:
        """The C-order array shape: (slices, rows, columns), 4-D volumes first by t."""
        return tuple(reversed(self.shape))

    @property
    def uniform_rescale(self) -> tuple[float, float] | None:
        """The (slope, intercept) every slice shares, else None."""
        first = self.slices[0][0].rescale
        same = all(s.rescale == first for stack in self.slices for s in stack)
        return first if same else None


@dataclasses.dataclass(frozen=True)
class VolumeRefusal:
    """Slices that make no volume, and why (one line, no patient data)."""

    sources: tuple[str, ...]
    reason: str
    colour: bool = False
    #: no plane geometry at all (a radiograph, a screen capture): not a volume, not a fault
    no_geometry: bool = False

    def error(self) -> VolumeError:
        cls = ColourVolumeError if self.colour else VolumeError
        return cls(self.reason)


@dataclasses.dataclass(frozen=True)
class SeriesVolumes:
    """What `plan_volumes` decided for one series: volumes to write, slices refused."""

    volumes: tuple[VolumePlan, ...]
    refused: tuple[VolumeRefusal, ...]


# --------------------------------------------------------------------------- reading headers


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _point(value: Any) -> tuple[float, float, float] | None:
    numbers = _floats(value, 3)
    return (numbers[0], numbers[1], numbers[2]) if numbers else None


def _pair(value: Any) -> tuple[float, float] | None:
    numbers = _floats(value, 2)
    return (numbers[0], numbers[1]) if numbers else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip() or None


def rescale_of(source: Dataset, sop_class_uid: str = "") -> tuple[float, float]:
    """Rescale Slope and Intercept (PS3.3 C.11.1), (1, 0) when absent, partial or zero."""
    if sop_class_uid in _NO_MODALITY_LUT_CLASSES:
        return 1.0, 0.0
    slope = _floats([source.get("RescaleSlope")], 1) if "RescaleSlope" in source else None
    inter = _floats([source.get("RescaleIntercept")], 1) if "RescaleIntercept" in source else None
    if slope is None or inter is None or slope[0] == 0:
        return 1.0, 0.0
    return slope[0], inter[0]


def _stored(ds: Dataset) -> tuple[int, int, int, int]:
    allocated = _int(ds.get("BitsAllocated")) or 16
    bits = _int(ds.get("BitsStored")) or allocated
    high = _int(ds.get("HighBit"))
    return (
        allocated,
        bits,
        bits - 1 if high is None else high,
        _int(ds.get("PixelRepresentation")) or 0,
    )


def _classic_axis_values(ds: Dataset) -> tuple[tuple[FourthAxis, str], ...]:
    values = []
    for axis in FourthAxis:
        if axis is FourthAxis.DIMENSION_INDEX:
            continue
        value = _text(ds.get(axis.value))
        if axis is FourthAxis.DIFFUSION and value is not None:
            direction = _text(ds.get("DiffusionGradientOrientation"))
            value = f"{value} {direction}" if direction else value
        if value is not None:
            values.append((axis, value))
    return tuple(values)


def _dimension_key(ds: Dataset, content: Dataset | None) -> str | None:
    """The frame's Dimension Index Values without the in-stack position components."""
    index = content.get("DimensionIndexValues") if content is not None else None
    if index is None:
        return None
    index = (
        list(index) if isinstance(index, (list, tuple)) or hasattr(index, "__iter__") else [index]
    )
    pointers = [
        int(item.get("DimensionIndexPointer", 0)) for item in ds.get("DimensionIndexSequence", [])
    ]
    kept = [
        str(v)
        for n, v in enumerate(index)
        if n >= len(pointers) or pointers[n] not in _POSITION_POINTERS
    ]
    return ",".join(kept)


def _enhanced_axis_values(ds: Dataset, frame: int) -> tuple[tuple[FourthAxis, str], ...]:
    content = _group(ds, frame, "FrameContentSequence")
    values: list[tuple[FourthAxis, str]] = []
    echo = _group(ds, frame, "MREchoSequence")
    if echo is not None and _text(echo.get("EffectiveEchoTime")) is not None:
        values.append((FourthAxis.ECHO, str(echo.get("EffectiveEchoTime"))))
    diffusion = _group(ds, frame, "MRDiffusionSequence")
    if diffusion is not None and _text(diffusion.get("DiffusionBValue")) is not None:
        direction = _item(diffusion, "DiffusionGradientDirectionSequence")
        orientation = _text(direction.get("DiffusionGradientOrientation")) if direction else None
        values.append((FourthAxis.DIFFUSION, f"{diffusion.DiffusionBValue} {orientation or ''}"))
    if content is not None:
        temporal = _text(content.get("TemporalPositionIndex"))
        if temporal is not None:
            values.append((FourthAxis.TEMPORAL_POSITION, temporal))
        when = _text(content.get("FrameAcquisitionDateTime"))
        if when is not None:
            values.append((FourthAxis.ACQUISITION_TIME, when))
    key = _dimension_key(ds, content)
    if key:
        values.append((FourthAxis.DIMENSION_INDEX, key))
    return tuple(values)


def slice_headers(source: str, ds: Dataset) -> list[SliceHeader]:
    """The candidate slices in one header: one per frame (enhanced) or the file itself."""
    template = SliceHeader(
        source=source,
        frame_index=0,
        rows=_int(ds.get("Rows")) or 0,
        columns=_int(ds.get("Columns")) or 0,
        orientation=None,
        position=None,
        pixel_spacing=None,
        rescale=(1.0, 0.0),
        instance_number=_int(ds.get("InstanceNumber")),
        acquisition_time=None,
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "")).strip(),
        samples_per_pixel=_int(ds.get("SamplesPerPixel")) or 1,
        stored=_stored(ds),
        axis_values=(),
    )
    sop_class = str(ds.get("SOPClassUID", ""))
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [
            dataclasses.replace(
                template,
                orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                position=_point(ds.get("ImagePositionPatient")),
                pixel_spacing=_pair(ds.get("PixelSpacing")),
                rescale=rescale_of(ds, sop_class),
                acquisition_time=_text(ds.get("AcquisitionTime")),
                axis_values=_classic_axis_values(ds),
            )
        ]
    slices = []
    for frame in range(_int(ds.get("NumberOfFrames")) or 1):
        plane = _group(ds, frame, "PlanePositionSequence")
        orient = _group(ds, frame, "PlaneOrientationSequence")
        measures = _group(ds, frame, "PixelMeasuresSequence")
        transform = _group(ds, frame, "PixelValueTransformationSequence")
        content = _group(ds, frame, "FrameContentSequence")
        slices.append(
            dataclasses.replace(
                template,
                frame_index=frame,
                orientation=_floats(orient.get("ImageOrientationPatient"), 6) if orient else None,
                position=_point(plane.get("ImagePositionPatient")) if plane else None,
                pixel_spacing=_pair(measures.get("PixelSpacing")) if measures else None,
                rescale=rescale_of(transform if transform is not None else ds, sop_class),
                acquisition_time=_text(
                    content.get("FrameAcquisitionDateTime") if content else None
                ),
                axis_values=_enhanced_axis_values(ds, frame),
            )
        )
    return slices


def series_identity(ds: Dataset) -> SeriesIdentity:
    """The series-level values of a header (the first of the series)."""
    tilt = _floats([ds.get("GantryDetectorTilt")], 1) if "GantryDetectorTilt" in ds else None
    return SeriesIdentity(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        series_number=str(ds.get("SeriesNumber", "") or "").strip(),
        modality=str(ds.get("Modality", "") or "").strip(),
        gantry_detector_tilt=tilt[0] if tilt else None,
    )


# --------------------------------------------------------------------------- planning


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The unit normal of a slice: row cosines × column cosines (PS3.3 C.7.6.2.1.1)."""
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:6]))
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise VolumeError("Image Orientation (Patient) has parallel row and column directions")
    return normal / norm


def _geometry_key_matches(a: SliceHeader, b: SliceHeader) -> bool:
    assert a.orientation and b.orientation and a.pixel_spacing and b.pixel_spacing
    return (
        a.rows == b.rows
        and a.columns == b.columns
        and a.stored[0] == b.stored[0]
        and np.allclose(a.orientation, b.orientation, atol=ORIENTATION_TOLERANCE, rtol=0)
        and np.allclose(a.pixel_spacing, b.pixel_spacing, atol=SPACING_TOLERANCE_MM, rtol=0)
    )


def group_by_geometry(slices: Iterable[SliceHeader]) -> list[list[SliceHeader]]:
    """Slices split by orientation, matrix size and pixel spacing, in first-seen order."""
    groups: list[list[SliceHeader]] = []
    for s in slices:
        for group in groups:
            if _geometry_key_matches(group[0], s):
                group.append(s)
                break
        else:
            groups.append([s])
    return groups


def _along_normal(slices: Sequence[SliceHeader], normal: np.ndarray) -> list[SliceHeader]:
    """Order by position along the normal; Instance Number (then frame) breaks ties."""

    def key(s: SliceHeader) -> tuple[float, int, int]:
        assert s.position is not None
        return (float(np.dot(normal, s.position)), s.instance_number or 0, s.frame_index)

    return sorted(slices, key=key)


def _positions_clustered(ordered: Sequence[SliceHeader]) -> list[list[SliceHeader]]:
    """Consecutive (ordered) slices at the same position, grouped."""
    clusters: list[list[SliceHeader]] = []
    for s in ordered:
        if clusters and _distance(clusters[-1][0], s) < SAME_POSITION_MM:
            clusters[-1].append(s)
        else:
            clusters.append([s])
    return clusters


def _distance(a: SliceHeader, b: SliceHeader) -> float:
    return float(np.linalg.norm(np.subtract(a.position, b.position)))  # type: ignore[arg-type]


def _sort_value(text: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then anything else as text."""
    head = text.split(" ")[0].split("\\")[0]
    try:
        return (0, float(head), text)
    except ValueError:
        return (1, 0.0, text)


def choose_fourth_axis(clusters: Sequence[Sequence[SliceHeader]]) -> FourthAxis | None:
    """The first attribute that tells apart the slices at every shared position."""
    for axis in FourthAxis:
        ok = True
        for cluster in clusters:
            values = [dict(s.axis_values).get(axis) for s in cluster]
            if any(v is None for v in values) or len(set(values)) != len(values):
                ok = False
                break
        if ok:
            return axis
    return None


def _same_step(a: np.ndarray, b: np.ndarray) -> bool:
    limit = max(STEP_TOLERANCE_MM, STEP_TOLERANCE_FRACTION * float(np.linalg.norm(a)))
    return float(np.linalg.norm(b - a)) <= limit


def _uniform_runs(stack: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """[start, stop) ranges of positions with uniform steps: gaps and step changes split.

    A run is grown from its first step while the next steps match it. A slice between two
    different steps that starts a run stands alone (the gap is on one side or the other), so
    one missing slice in a uniform stack gives two runs with the true spacing.
    """
    steps = [stack[n + 1] - stack[n] for n in range(len(stack) - 1)]
    runs: list[tuple[int, int]] = []
    start = 0
    while start < len(stack):
        stop = start + 1
        if start < len(steps) and (
            start + 1 == len(steps) or _same_step(steps[start], steps[start + 1])
        ):
            stop += 1
            while stop - 1 < len(steps) and _same_step(steps[start], steps[stop - 1]):
                stop += 1
        runs.append((start, stop))
        start = stop
    return runs


def _header_spacing(header: Dataset | None) -> float | None:
    if header is None:
        return None
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _floats([header.get(keyword)], 1) if keyword in header else None
        if value and value[0] > 0:
            return value[0]
    return None


@dataclasses.dataclass(frozen=True)
class _Stacks:
    """Slices of one geometry group as [t][k], with what the grouping decided."""

    grid: list[list[SliceHeader]]
    axis: FourthAxis | None
    values: list[str]
    notes: list[str]


def _stacks(group: list[SliceHeader], normal: np.ndarray) -> list[_Stacks] | VolumeRefusal:
    """A geometry group as one stack (3-D), or several sharing positions (4-D)."""
    ordered = _along_normal(group, normal)
    clusters = _positions_clustered(ordered)
    if all(len(c) == 1 for c in clusters):
        return [_Stacks([ordered], None, [], [])]
    shared = [c for c in clusters if len(c) > 1]
    axis = choose_fourth_axis(shared)
    if axis is None:
        return VolumeRefusal(
            tuple(s.source for s in group),
            f"{max(len(c) for c in clusters)} slices share a position and no attribute "
            "(echo, b-value, temporal position, trigger time, acquisition number or time, "
            "dimension index) tells them apart",
        )
    by_value: dict[str, list[SliceHeader]] = {}
    for s in ordered:
        by_value.setdefault(dict(s.axis_values).get(axis, ""), []).append(s)
    values = sorted(by_value, key=_sort_value)
    stacks = [by_value[v] for v in values]
    same = all(
        len(st) == len(stacks[0])
        and all(_distance(a, b) < SAME_POSITION_MM for a, b in zip(st, stacks[0], strict=False))
        for st in stacks
    )
    if same:
        return [_Stacks(stacks, axis, values, [f"4th axis: {axis.value} ({len(values)} values)"])]
    note = f"{axis.value} values cover different slice positions: one 3-D volume per value"
    return [
        _Stacks([st], None, [v], [note, f"{axis.value} = {v}"])
        for v, st in zip(values, stacks, strict=True)
    ]


def _affine(
    first: SliceHeader, step: np.ndarray, normal: np.ndarray, count: int
) -> tuple[np.ndarray, bool, float]:
    """The LPS affine of a run: exact sheared step when the stack drifts sideways."""
    assert first.orientation and first.pixel_spacing and first.position
    row, col = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    along = float(np.dot(step, normal))
    lateral = step - along * normal
    sheared = float(np.linalg.norm(lateral)) * (count - 1) > SHEAR_TOLERANCE_MM
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(lateral), abs(along)))) if along else 90.0
    affine = np.eye(4)
    affine[:3, 0] = row * first.pixel_spacing[1]
    affine[:3, 1] = col * first.pixel_spacing[0]
    affine[:3, 2] = step if sheared else normal * along
    affine[:3, 3] = first.position
    return affine, sheared, tilt


def _plan_run(
    st: _Stacks,
    start: int,
    stop: int,
    normal: np.ndarray,
    identity: SeriesIdentity,
    header: Dataset | None,
    notes: list[str],
) -> VolumePlan:
    grid = [stack[start:stop] for stack in st.grid]
    first = grid[0][0]
    positions = np.array([s.position for s in grid[0]], dtype=np.float64)
    count = len(positions)
    measured = count > 1
    if measured:
        step = (positions[-1] - positions[0]) / (count - 1)
    else:
        thickness = _header_spacing(header)
        step = normal * (thickness or 1.0)
        notes = [
            *notes,
            f"single slice: slice spacing {'from the header' if thickness else 'set to 1 mm'}",
        ]
    affine, sheared, tilt = _affine(first, step, normal, count)
    if sheared:
        notes = [
            *notes,
            f"gantry tilt {tilt:.3f}°: slices step sideways; the exact sheared affine is kept "
            "(sform), no resampling; the qform holds the nearest rigid grid",
        ]
    expected = affine[:3, 3] + np.outer(np.arange(count), affine[:3, 2])
    error = max(
        float(np.max(np.linalg.norm(np.array([s.position for s in stack]) - expected, axis=1)))
        for stack in grid
    )
    stored = {s.stored for stack in grid for s in stack}
    assert first.pixel_spacing is not None
    return VolumePlan(
        identity=identity,
        slices=tuple(
            tuple(
                SliceRef(
                    source=s.source,
                    frame_index=s.frame_index,
                    position=s.position,  # type: ignore[arg-type]
                    rescale=s.rescale,
                    instance_number=s.instance_number,
                    acquisition_time=s.acquisition_time,
                )
                for s in stack
            )
            for stack in grid
        ),
        shape=(first.columns, first.rows, count, *((len(grid),) if st.axis else ())),
        affine_lps=tuple(tuple(float(v) for v in r) for r in affine),
        spacing=(
            first.pixel_spacing[1],
            first.pixel_spacing[0],
            float(np.linalg.norm(affine[:3, 2])),
        ),
        slice_spacing=abs(float(np.dot(affine[:3, 2], normal))),
        slice_spacing_measured=measured,
        sheared=sheared,
        tilt_degrees=tilt if measured else 0.0,
        fourth_axis=st.axis,
        fourth_axis_values=tuple(st.values) if st.axis else (),
        stored=stored.pop() if len(stored) == 1 else None,
        photometric_interpretation=first.photometric_interpretation,
        max_position_error_mm=error,
        part=0,
        parts=0,
        notes=tuple(notes),
    )


def _refuse_unusable(
    slices: Sequence[SliceHeader],
) -> tuple[list[SliceHeader], list[VolumeRefusal]]:
    usable, colour, no_geometry = [], [], []
    for s in slices:
        if not (s.orientation and s.position and s.pixel_spacing and s.rows and s.columns):
            no_geometry.append(s)
        elif s.samples_per_pixel != 1 or s.photometric_interpretation not in _GREYSCALE:
            colour.append(s)
        else:
            usable.append(s)
    refused = []
    if colour:
        refused.append(
            VolumeRefusal(
                tuple(s.source for s in colour),
                f"colour images ({colour[0].photometric_interpretation or 'no photometric'}) "
                "make no volume: volumes are greyscale only",
                colour=True,
            )
        )
    if no_geometry:
        refused.append(
            VolumeRefusal(
                tuple(s.source for s in no_geometry),
                "no Image Position/Orientation (Patient) or Pixel Spacing: no volume geometry",
                no_geometry=True,
            )
        )
    return usable, refused


def plan_volumes(headers: Iterable[tuple[str, Dataset]]) -> SeriesVolumes:
    """Split one series' headers into volumes with exact geometry, or refusals with reasons.

    `headers` are (source, dataset read without pixels) pairs of one Series Instance UID:
    single-frame slices, or enhanced multi-frame files (each frame a slice).
    """
    pairs = list(headers)
    if not pairs:
        raise VolumeError("no slices")
    identity = series_identity(pairs[0][1])
    first_header = pairs[0][1]
    slices = [sh for source, ds in pairs for sh in slice_headers(source, ds)]
    usable, refused = _refuse_unusable(slices)
    plans: list[VolumePlan] = []
    groups = group_by_geometry(usable)
    for group in groups:
        assert group[0].orientation is not None
        try:
            normal = slice_normal(group[0].orientation)
        except VolumeError as exc:
            refused.append(VolumeRefusal(tuple(s.source for s in group), str(exc)))
            continue
        split_notes = [f"one of {len(groups)} orientation/size groups"] if len(groups) > 1 else []
        stacks = _stacks(group, normal)
        if isinstance(stacks, VolumeRefusal):
            refused.append(stacks)
            continue
        for st in stacks:
            positions = [np.asarray(s.position, dtype=np.float64) for s in st.grid[0]]
            runs = _uniform_runs(positions)
            for n, (start, stop) in enumerate(runs):
                notes = [*split_notes, *st.notes]
                if len(runs) > 1:
                    notes.append(
                        f"slice spacing not uniform (gap or change of step): uniform run "
                        f"{n + 1} of {len(runs)}, slices {start + 1}-{stop} along the normal"
                    )
                plans.append(_plan_run(st, start, stop, normal, identity, first_header, notes))
    count = len(plans)
    numbered = tuple(dataclasses.replace(p, part=n + 1, parts=count) for n, p in enumerate(plans))
    return SeriesVolumes(volumes=numbered, refused=tuple(refused))


def is_enhanced_multiframe(ds: Dataset) -> bool:
    """True for a multi-frame file with Per-frame Functional Groups (PS3.3 C.7.6.16): each
    frame may carry its own plane position, so the file alone can be a volume."""
    return (_int(ds.get("NumberOfFrames")) or 1) > 1 and "PerFrameFunctionalGroupsSequence" in ds


def volume_stem(series_number: str, part: int, parts: int) -> str:
    """File stem of a series' volume: ``series_<N>``, or ``series_<N>_part<k>`` when split."""
    base = f"series_{series_number or 'unknown'}"
    return base if parts <= 1 else f"{base}_part{part}"
