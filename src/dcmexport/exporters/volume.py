"""Write a planned volume as NIfTI-1 (``.nii.gz``) or NumPy (``.npz``), with a JSON sidecar.

The volume is assembled slice by slice into one preallocated array (peak memory ≈ one volume
plus one decoded slice), then written through a temporary file renamed into place.

Values: when every slice has the same Rescale Slope/Intercept and both are exact in float32,
the stored values are written with NIfTI ``scl_slope``/``scl_inter`` (readers apply them);
otherwise the modality values themselves, as float32. The ``.npz`` always holds what a reader
of the NIfTI would get after scaling, in the same (float32 or stored + scaling) form, with
``slope``/``intercept`` arrays.

Geometry: the plan's LPS affine becomes RAS (x and y negated) for NIfTI, in the sform
(exact, sheared for gantry tilt) and the qform (the nearest rigid grid; equal to the sform
unless sheared). Both codes are 1, "scanner": the coordinates are the DICOM patient
coordinates of the scanner's Frame of Reference, not aligned to another image (dcm2niix writes
the same codes). The ``.npz`` keeps LPS, in SimpleITK's convention (see `write_npz`).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import numpy as np
from pydicom.dataset import Dataset

from .. import errors
from ..dicom import decoding
from ..manifest import Kind, ManifestRow, Status
from ..options import ConvertOptions, VolumeFormat
from ..render import pixels as px
from ..render.pipeline import PixelDescription, modality_rescale
from ..store import LocalStore, Store, atomic_path
from .base import Instance, Level, SeriesJob, Target

if TYPE_CHECKING:  # the geometry loads with the first volume (a plain conversion never needs it)
    from ..dicom.geometry import SeriesVolumes, VolumePlan, VolumeRefusal

log = logging.getLogger(__name__)

#: LPS → RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: gzip level for ``.nii.gz``: ISA-L level 1 is ~4× faster than zlib 6 at ~10 % larger files.
GZIP_LEVEL = 1
SIDECAR_SCHEMA = "dcmexport.volume/1"


class ValueKind(str, enum.Enum):
    """How voxel values are written."""

    STORED = "stored values with scl_slope/scl_inter"
    MODALITY = "modality values (float32)"


def read_headers(paths: list[str]) -> list[tuple[str, Dataset]]:
    """(path, header without pixels) for each file, as `plan_volumes` takes them."""
    return [(p, decoding.read_dataset(p, stop_before_pixels=True)) for p in paths]


def plan_files(paths: list[str]) -> SeriesVolumes:
    """`plan_volumes` over the headers of one series' files."""
    from ..dicom.geometry import plan_volumes

    return plan_volumes(read_headers(paths))


# --------------------------------------------------------------------------- values


def _stored_dtype(stored: tuple[int, int, int, int] | None) -> np.dtype | None:
    """The smallest integer dtype holding every stored value, None for float pixel data."""
    if stored is None:
        return None
    allocated, bits, _high, signed = stored
    bits = min(bits, allocated)
    for size in (8, 16, 32):
        if bits <= size:
            return np.dtype(f"{'i' if signed else 'u'}{size // 8}")
    return None


def value_kind(plan: VolumePlan) -> tuple[ValueKind, np.dtype, tuple[float, float]]:
    """Stored values + exact scaling when possible, else float32 modality values."""
    rescale = plan.uniform_rescale
    dtype = _stored_dtype(plan.stored)
    if rescale is not None and dtype is not None:
        slope, inter = rescale
        if float(np.float32(slope)) == slope and float(np.float32(inter)) == inter:
            return ValueKind.STORED, dtype, rescale
    return ValueKind.MODALITY, np.dtype(np.float32), (1.0, 0.0)


def volume_nbytes(plan: VolumePlan) -> int:
    """Bytes of the assembled array (the dominant term of the peak memory)."""
    _, dtype, _ = value_kind(plan)
    return int(np.prod(plan.shape)) * dtype.itemsize


@contextlib.contextmanager
def _open_sources(opened: tuple[Dataset, str | None] | None = None) -> Iterator[Any]:
    """A one-entry cache: consecutive frames of an enhanced file reuse its dataset.

    `opened` is a dataset already read (and the path its deferred pixels stream from): every
    slice then comes from it (an instance's volume).
    """
    cache: dict[str, tuple[Dataset, str | None]] = {}

    def get(source: str) -> tuple[Dataset, str | None]:
        if opened is not None:
            return opened
        if source not in cache:
            cache.clear()
            cache[source] = (decoding.read_dataset(source), source)
        return cache[source]

    yield get
    cache.clear()


def _stored_values(ds: Dataset, frame_index: int, source: str | None) -> np.ndarray:
    desc = PixelDescription.from_dataset(ds)
    if desc.samples_per_pixel != 1 or desc.photometric_interpretation not in (
        "MONOCHROME1",
        "MONOCHROME2",
    ):
        raise errors.ColourVolumeError(
            f"colour pixels ({desc.photometric_interpretation}) make no volume: greyscale only"
        )
    frame = decoding.decode_frame(ds, frame_index, source)
    if frame.dtype.kind == "f":
        return frame
    return px.extract_stored_values(
        frame, desc.bits_stored, desc.high_bit, desc.pixel_representation
    )


def assemble_volume(
    plan: VolumePlan, opened: tuple[Dataset, str | None] | None = None
) -> tuple[np.ndarray, ValueKind, tuple[float, float]]:
    """The volume as a C-order array `plan.array_shape`, filled one slice at a time.

    Returns the array, how its values are to be read, and the (slope, intercept) to record.
    `opened`: the one file's dataset already read (and its pixel path), for a single-file plan.
    """
    kind, dtype, scaling = value_kind(plan)
    volume = np.empty(plan.array_shape, dtype=dtype)
    rows, columns = plan.shape[1], plan.shape[0]
    with _open_sources(opened) as open_source:
        for t, stack in enumerate(plan.slices):
            for k, ref in enumerate(stack):
                ds, pixel_source = open_source(ref.source)
                stored = _stored_values(ds, ref.frame_index, pixel_source)
                if stored.shape != (rows, columns):
                    raise errors.PixelDataError(
                        f"a slice decodes to {stored.shape}, not ({rows}, {columns})"
                    )
                rescale = modality_rescale(ds, ref.frame_index)
                target = volume[t, k] if len(plan.shape) == 4 else volume[k]
                if kind is ValueKind.STORED:
                    if rescale != scaling:
                        raise errors.PixelDataError(
                            "Rescale Slope/Intercept changed since planning"
                        )
                    target[...] = stored
                else:
                    target[...] = stored * rescale[0] + rescale[1]
                del stored
    return volume, kind, scaling


# --------------------------------------------------------------------------- geometry forms


def qform_lps(plan: VolumePlan) -> np.ndarray:
    """The nearest rigid grid: rows and columns exact, slices along the normal."""
    from ..dicom.geometry import slice_normal

    affine = plan.affine.copy()
    if plan.sheared:
        first = plan.affine
        row = first[:3, 0] / np.linalg.norm(first[:3, 0])
        col = first[:3, 1] / np.linalg.norm(first[:3, 1])
        normal = slice_normal([*row, *col])
        affine[:3, 2] = normal * float(np.dot(first[:3, 2], normal))
    return affine


def _gzip_open(path: Path) -> BinaryIO:
    try:
        from isal import igzip

        return igzip.open(path, "wb", compresslevel=GZIP_LEVEL)
    except ImportError:  # pragma: no cover - isal is a dependency
        import gzip

        return gzip.open(path, "wb", compresslevel=GZIP_LEVEL)  # type: ignore[return-value]


def _slices(volume: np.ndarray) -> Iterator[memoryview]:
    """The C-order volume's bytes one slice at a time, little-endian, without copying it."""
    volume = volume.astype(volume.dtype.newbyteorder("<"), copy=False)
    flat = volume.reshape(-1, *volume.shape[-2:])
    for index in range(flat.shape[0]):
        yield memoryview(flat[index]).cast("B")


def nifti_header(plan: VolumePlan, dtype: np.dtype, scaling: tuple[float, float]) -> Any:
    """The NIfTI-1 header: RAS sform (exact) and qform (rigid), codes 1, mm and s, scaling."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(plan.shape)
    header.set_data_dtype(dtype)
    header.set_sform(LPS_TO_RAS @ plan.affine, code=1)
    header.set_qform(LPS_TO_RAS @ qform_lps(plan), code=1)
    zooms = [*plan.spacing, *([1.0] if len(plan.shape) == 4 else [])]
    header.set_zooms(zooms)
    header.set_xyzt_units("mm", "sec")
    header["scl_slope"], header["scl_inter"] = scaling
    header["descrip"] = b"dcmexport volume"
    return header


def write_nifti(
    plan: VolumePlan,
    volume: np.ndarray,
    scaling: tuple[float, float],
    path: Path,
    tmp_dir: Path | None = None,
) -> None:
    """NIfTI-1 single file, gzip-compressed, streamed slice by slice (no copy of the volume).

    The C-order array [t,] k, j, i has exactly the byte order NIfTI stores (i fastest).
    """
    header = nifti_header(plan, volume.dtype, scaling)
    with atomic_path(path, tmp_dir) as tmp, _gzip_open(tmp) as stream:
        header.write_to(stream)  # 348 bytes + the 4-byte "no extensions" flag = vox_offset
        for chunk in _slices(volume):
            stream.write(chunk)


def npz_geometry(plan: VolumePlan) -> dict[str, np.ndarray]:
    """`affine` (4×4, LPS), `spacing`, `origin`, `direction` in SimpleITK's convention."""
    affine = plan.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return {
        "affine": affine,
        "spacing": spacing,
        "origin": affine[:3, 3].copy(),
        "direction": affine[:3, :3] / spacing,
    }


def write_npz(
    plan: VolumePlan,
    volume: np.ndarray,
    scaling: tuple[float, float],
    path: Path,
    tmp_dir: Path | None = None,
) -> None:
    """``array`` indexed [t,] k, j, i (slice, row, column), and LPS geometry.

    ``affine @ (i, j, k, 1)`` is the voxel's LPS position in mm; ``direction`` has the unit
    axis vectors as columns, so ``sitk.GetImageFromArray(array)`` with ``SetSpacing(spacing)``,
    ``SetOrigin(origin)``, ``SetDirection(direction.ravel())`` is the same image. Modality
    values are ``array * slope + intercept``. Written like `np.savez_compressed`, but the
    array is streamed slice by slice instead of copied whole.
    """
    from numpy.lib import format as npy

    little = volume.astype(volume.dtype.newbyteorder("<"), copy=False)
    small = {
        **npz_geometry(plan),
        "slope": np.float64(scaling[0]),
        "intercept": np.float64(scaling[1]),
    }
    with (
        atomic_path(path, tmp_dir) as tmp,
        zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=GZIP_LEVEL
        ) as archive,
    ):
        with archive.open("array.npy", "w", force_zip64=True) as member:
            npy.write_array_header_1_0(member, npy.header_data_from_array_1_0(little))
            for chunk in _slices(little):
                member.write(chunk)
        for name, value in small.items():
            with archive.open(f"{name}.npy", "w") as member:
                npy.write_array(member, np.asanyarray(value))


# --------------------------------------------------------------------------- sidecar


def _rounded(values: Any, digits: int = 6) -> Any:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def sidecar(
    plan: VolumePlan,
    kind: ValueKind,
    scaling: tuple[float, float],
    fmt: VolumeFormat,
    *,
    deidentify: bool = False,
) -> dict[str, Any]:
    """The volume's JSON sidecar: geometry and what was done; never patient data.

    With `deidentify`, UIDs and times of day are left out as well.
    """
    from ..dicom.geometry import slice_normal

    identity = plan.identity
    affine = plan.affine
    row = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    col = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    doc: dict[str, Any] = {
        "schema": SIDECAR_SCHEMA,
        "format": fmt.value,
        "modality": identity.modality,
        "series_number": identity.series_number,
    }
    if not deidentify:
        doc["series_instance_uid"] = identity.series_instance_uid
        doc["study_instance_uid"] = identity.study_instance_uid
        doc["frame_of_reference_uid"] = identity.frame_of_reference_uid
    doc.update(
        {
            "shape": list(plan.shape),
            "axes": [
                "i: column",
                "j: row",
                "k: slice",
                *(["t: 4th axis"] if len(plan.shape) == 4 else []),
            ],
            "voxel_size_mm": _rounded(plan.spacing),
            "slice_spacing_mm": round(plan.slice_spacing, 6),
            "slice_spacing_measured": plan.slice_spacing_measured,
            "affine_lps": _rounded(affine),
            "affine_ras": _rounded(LPS_TO_RAS @ affine),
            "row_direction_lps": _rounded(row),
            "column_direction_lps": _rounded(col),
            "slice_normal_lps": _rounded(slice_normal([*row, *col])),
            "slice_positions_lps": [_rounded(s.position, 4) for s in plan.slices[0]],
            "instance_numbers": [[s.instance_number for s in st] for st in plan.slices],
            "ordering": "position along the slice normal; Instance Number breaks ties",
            "max_position_error_mm": round(plan.max_position_error_mm, 6),
            "tilt": {
                "sheared": plan.sheared,
                "tilt_degrees": round(plan.tilt_degrees, 4),
                "gantry_detector_tilt": identity.gantry_detector_tilt,
                "handling": (
                    "exact sheared affine in the sform (no resampling); qform rigid"
                    if plan.sheared
                    else "none needed"
                ),
            },
            "split": {"part": plan.part, "parts": plan.parts},
            "fourth_axis": (
                {"attribute": plan.fourth_axis.value, "values": list(plan.fourth_axis_values)}
                if plan.fourth_axis
                else None
            ),
            "values": {
                "kind": kind.name.lower(),
                "description": kind.value,
                "scl_slope": scaling[0],
                "scl_inter": scaling[1],
                "photometric_interpretation": plan.photometric_interpretation,
            },
            "notes": list(plan.notes),
        }
    )
    if not deidentify:
        doc["acquisition_times"] = [[s.acquisition_time for s in st] for st in plan.slices]
    return doc


def write_volume(
    plan: VolumePlan,
    target_base: Path,
    fmt: VolumeFormat,
    *,
    tmp_dir: Path | None = None,
    deidentify: bool = False,
    opened: tuple[Dataset, str | None] | None = None,
) -> list[Path]:
    """Write `plan` as ``<target_base>.nii.gz`` (or ``.npz``) and ``<target_base>.json``.

    Returns the paths written (none for `VolumeFormat.NONE`). Raises `ColourVolumeError` for
    colour pixels and `PixelDataError`/`UnsupportedTransferSyntaxError` from decoding.
    """
    if fmt is VolumeFormat.NONE:
        return []
    if plan.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2"):
        raise errors.ColourVolumeError(
            f"colour images ({plan.photometric_interpretation}) make no volume: greyscale only"
        )
    volume, kind, scaling = assemble_volume(plan, opened)
    out = target_base.with_name(target_base.name + fmt.extension)
    writer = write_nifti if fmt is VolumeFormat.NIFTI else write_npz
    writer(plan, volume, scaling, out, tmp_dir)
    del volume
    meta = target_base.with_name(target_base.name + ".json")
    doc = sidecar(plan, kind, scaling, fmt, deidentify=deidentify)
    with atomic_path(meta, tmp_dir) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    log.debug("wrote volume %s %s", out.name, plan.shape)
    return [out, meta]


# --------------------------------------------------------------------------- exporters


def plan_series_volumes(jobs: list[SeriesJob]) -> list[SeriesVolumes]:
    """`plan_files` for a chunk of series (one executor task), before their names are claimed.

    A series whose headers cannot be planned at all gets one refusal saying why.
    """
    from ..dicom.geometry import SeriesVolumes, VolumeRefusal

    planned = []
    for job in jobs:
        try:
            planned.append(plan_files(list(job.paths)))
        except errors.DcmExportError as exc:
            planned.append(SeriesVolumes((), (VolumeRefusal(job.paths, str(exc)),)))
    return planned


def _refusal_row(refusal: VolumeRefusal, source: str, note: str) -> ManifestRow:
    """A refused part: `skipped` when it has no plane geometry at all, else `error`."""
    count = len(set(refusal.sources))
    return ManifestRow(
        source=source,
        status=Status.SKIPPED if refusal.no_geometry else Status.ERROR,
        error=f"no volume from {count} slice(s): {refusal.reason}",
        kind=Kind.VOLUME,
        note=note,
    )


def volume_rows(
    volumes: SeriesVolumes,
    bases: list[tuple[str, str]],
    *,
    source: str,
    note: str,
    options: ConvertOptions,
    store: Store,
    opened: tuple[Dataset, str | None] | None = None,
) -> list[ManifestRow]:
    """Write each planned volume under its claimed base (relative to OUT), with one manifest
    row per file written and one `error`/`skipped` row per part refused or failed.

    `bases` pairs each volume with its base and the naming note it got when claimed. Volumes
    are streamed to local files, so OUT must be a local folder (the engine refuses `--volume`
    with an object-store OUT before any work; a library caller gets an error row here).
    """
    if not isinstance(store, LocalStore):
        raise errors.VolumeError(
            "volumes are written to a local output folder only, not yet to object storage"
        )
    rows: list[ManifestRow] = []
    tmp_dir = store.temp_dir if store.temp_dir.is_dir() else None
    for plan, (base, claim_note) in zip(volumes.volumes, bases, strict=True):
        text = "; ".join(
            n
            for n in (
                claim_note,
                note,
                f"volume {'x'.join(map(str, plan.shape))} from "
                f"{sum(len(stack) for stack in plan.slices)} slice(s) ordered by position "
                "along the slice normal",
                *plan.notes,
            )
            if n
        )
        try:
            for suffix in (options.volume.extension, ".json"):
                store.path(base + suffix)  # refused if a link leads outside OUT
            data, meta = write_volume(
                plan, store.path(base), options.volume, tmp_dir=tmp_dir, opened=opened
            )
        except errors.DcmExportError as exc:
            rows.append(
                ManifestRow(
                    source=source, status=Status.ERROR, error=str(exc), kind=Kind.VOLUME, note=text
                )
            )
            continue
        kind, _, scaling = value_kind(plan)
        stored = kind is ValueKind.STORED
        rows.append(
            ManifestRow(
                source=source,
                output=store.relative(data),
                rescale_slope=scaling[0] if stored else None,
                rescale_intercept=scaling[1] if stored else None,
                kind=Kind.VOLUME,
                note=text,
            )
        )
        rows.append(
            ManifestRow(
                source=source,
                output=store.relative(meta),
                kind=Kind.METADATA,
                note="the volume's geometry and what was done (dcmexport.volume/1)",
            )
        )
    rows += [_refusal_row(refusal, source, note) for refusal in volumes.refused]
    return rows


class SeriesVolumeExporter:
    """One volume per series of single-frame slices (`--volume`), split where the geometry
    says so; names claimed by the engine (`SeriesJob.volume_bases`)."""

    level: ClassVar[Level] = Level.SERIES

    def wanted(self, options: ConvertOptions) -> bool:
        return options.volume is not VolumeFormat.NONE

    def write(self, job: SeriesJob, options: ConvertOptions, store: Store) -> list[ManifestRow]:
        volumes = job.volumes
        bases = list(job.volume_bases)
        if volumes is None:  # not planned by the engine (a library caller): plan here
            (volumes,) = plan_series_volumes([job])
            count = len(volumes.volumes)
            bases = [
                (job.base if count == 1 else f"{job.base}_part{k}", "") for k in range(1, count + 1)
            ]
        return volume_rows(volumes, bases, source=job.source, note="", options=options, store=store)


def instance_volume_wanted(instance: Instance, options: ConvertOptions) -> bool:
    """True when `--volume` makes this input a volume of its own (an enhanced multi-frame
    file); it then needs no stills or video to count as converted."""
    if options.volume is VolumeFormat.NONE:
        return False
    from ..dicom.geometry import is_enhanced_multiframe

    return is_enhanced_multiframe(instance.ds)


class InstanceVolumeExporter:
    """One volume per enhanced multi-frame file (`--volume`): in the folder of its outputs,
    ``<base>/series_<SeriesNumber>.nii.gz`` (under the input's own claimed base)."""

    level: ClassVar[Level] = Level.INSTANCE

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool:
        return instance_volume_wanted(instance, options)

    def _planned(self, instance: Instance) -> tuple[SeriesVolumes, list[tuple[str, str]]]:
        from ..dicom.geometry import plan_volumes, volume_stem

        volumes = plan_volumes([(instance.source, instance.ds)])
        count = len(volumes.volumes)
        number = str(instance.ds.get("SeriesNumber", "") or "").strip()
        stems = [volume_stem(_safe_number(number), k, count) for k in range(1, count + 1)]
        return volumes, [(f"{instance.base}/{stem}", "") for stem in stems]

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]:
        _, bases = self._planned(instance)
        return [Target(base + options.volume.extension) for base, _ in bases]

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]:
        volumes, bases = self._planned(instance)
        return volume_rows(
            volumes,
            bases,
            source=instance.source,
            note=instance.note,
            options=options,
            store=store,
            opened=(instance.ds, instance.pixel_path),
        )


def _safe_number(text: str) -> str:
    """A Series Number as a file name part: digits and letters only."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "_" for c in text).strip("._")
    return cleaned[:32] or "unknown"
