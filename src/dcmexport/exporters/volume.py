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
from typing import Any, BinaryIO

import numpy as np
from pydicom.dataset import Dataset

from .. import errors
from ..dicom import decoding
from ..dicom.geometry import SeriesVolumes, VolumePlan, plan_volumes, slice_normal
from ..render import pixels as px
from ..render.pipeline import PixelDescription, modality_rescale
from ..store import atomic_path

log = logging.getLogger(__name__)

#: LPS → RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: gzip level for ``.nii.gz``: ISA-L level 1 is ~4× faster than zlib 6 at ~10 % larger files.
GZIP_LEVEL = 1
SIDECAR_SCHEMA = "dcmexport.volume/1"


class VolumeFormat(str, enum.Enum):
    """What `--volume` writes per series."""

    NIFTI = "nifti"
    NPZ = "npz"
    NONE = "none"

    @property
    def extension(self) -> str:
        return {"nifti": ".nii.gz", "npz": ".npz", "none": ""}[self.value]


class ValueKind(str, enum.Enum):
    """How voxel values are written."""

    STORED = "stored values with scl_slope/scl_inter"
    MODALITY = "modality values (float32)"


def read_headers(paths: list[str]) -> list[tuple[str, Dataset]]:
    """(path, header without pixels) for each file, as `plan_volumes` takes them."""
    return [(p, decoding.read_dataset(p, stop_before_pixels=True)) for p in paths]


def plan_files(paths: list[str]) -> SeriesVolumes:
    """`plan_volumes` over the headers of one series' files."""
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
def _open_sources() -> Iterator[Any]:
    """A one-entry cache: consecutive frames of an enhanced file reuse its dataset."""
    cache: dict[str, Dataset] = {}

    def get(source: str) -> Dataset:
        if source not in cache:
            cache.clear()
            cache[source] = decoding.read_dataset(source)
        return cache[source]

    yield get
    cache.clear()


def _stored_values(ds: Dataset, frame_index: int, source: str) -> np.ndarray:
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


def assemble_volume(plan: VolumePlan) -> tuple[np.ndarray, ValueKind, tuple[float, float]]:
    """The volume as a C-order array `plan.array_shape`, filled one slice at a time.

    Returns the array, how its values are to be read, and the (slope, intercept) to record.
    """
    kind, dtype, scaling = value_kind(plan)
    volume = np.empty(plan.array_shape, dtype=dtype)
    rows, columns = plan.shape[1], plan.shape[0]
    with _open_sources() as open_source:
        for t, stack in enumerate(plan.slices):
            for k, ref in enumerate(stack):
                ds = open_source(ref.source)
                stored = _stored_values(ds, ref.frame_index, ref.source)
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
    volume, kind, scaling = assemble_volume(plan)
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
