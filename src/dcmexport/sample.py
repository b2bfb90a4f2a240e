"""Realistic synthetic DICOM sample data for trying out and testing dcmexport.

Why: a newcomer needs DICOM files to convert, and our tests and benchmarks need files that
exercise every pixel path the converter promises (signed CT with rescale and padding, 12-bit
MR, MONOCHROME1 + VOI LUT, 8-bit XA cine, RGB US cine, palette colour, YBR_FULL_422 and the
compressed / deflated / big-endian transfer syntaxes) without shipping any patient data.
Every image is a smooth numpy phantom (body outline, organs, bone, air, gentle seeded texture),
so windowing and colour mistakes are visible to the eye. Output is deterministic: the same
arguments give byte-identical files (on one machine), and UIDs are ``2.25.`` + a name-based
UUID (PS3.5 B.2) of fixed strings. (``generate_uid(prefix=None, entropy_srcs=...)`` would not
do: pydicom ignores `entropy_srcs` when `prefix` is None and returns a random UID.)

Layout written by :func:`write_samples` (the CLI's default ``DIR`` is ``./dicom_data``)::

    DIR/CT/CT_0001.dcm …  CT Image, 512², signed 16-bit (BitsStored 16, HighBit 15), slope 1 /
                          intercept -1024 (air -1000, fat -100, soft tissue 40, bone 700+ HU),
                          windows SOFT TISSUE 40/400 + LUNG -600/1500, PixelPaddingValue
                          -2000 (VR SS; HU -3024) outside the circular 420 mm field of view
    DIR/MR/MR_0001.dcm …  MR Image (5 slices), 256², 12-bit unsigned (BitsStored 12), a window
    DIR/CR/CR_0001.dcm    CR chest PA, MONOCHROME1, 12-bit, sigmoid VOI LUT Sequence + a window
    DIR/XA/XA_0001.dcm    XA cine, 30 × 512² 8-bit, 15 fps: a contrast bolus fills a vessel
                          tree (white-vessel display), so mean brightness rises every frame
    DIR/US/US_0001.dcm    US Multi-frame, 20 × 240×320 RGB, 30 fps, sector + colour Doppler
    DIR/color/palette.dcm            Secondary Capture perfusion map, PALETTE COLOR (16-bit LUTs)
    DIR/color/palette_segmented.dcm  US Image, PALETTE COLOR given only as Segmented LUT Data
                                     (pydicom reads it; DCMTK 3.6.7's dcm2pnm cannot)
    DIR/color/ybr_full_422.dcm       US Image, native YBR_FULL_422 of frame 1 of the US cine
    DIR/encodings/{CT,MR,US}_{jpegls_lossless,j2k_lossless,rle_lossless,deflated,big_endian}.dcm
                          lossless re-encodings of CT_0001, MR_0001 and the US cine, each its
                          own series (new UIDs) so series grouping never sees duplicate slices
    DIR/cd/DICOMDIR, DIR/cd/PT000000/ST000000/SE00000n/IM00000n
                          a "patient CD": the CT, CR and XA series as JPEG-LS Lossless copies
                          (same UIDs: a lossless transcode keeps the instance's identity)

Why a separate ``cd`` folder: PS3.10 File IDs allow at most 8 characters from A-Z, 0-9 and
``_`` per component, so a conformant DICOMDIR cannot reference ``CT/CT_0001.dcm``, and pydicom's
``FileSet`` copies every instance into its own ``PTxxxxxx/STxxxxxx/…`` layout anyway. The
friendly folders stay for people; the file-set is a copy, compressed to keep the set < 50 MB.

Re-running into the same folder overwrites the files, removes ``CT_nnnn.dcm`` slices beyond the
new count and replaces a ``cd`` file-set written by an earlier run (File-set ID ``DCMEXPORT``).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.pixels import convert_color_space, get_encoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)

from .errors import UsageError

__all__ = ["write_ct_series", "write_samples"]

logger = logging.getLogger(__name__)

_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/dcmexport/sample-data/v1")
_FILESET_ID = "DCMEXPORT"
_CD_SYNTAX = JPEGLSLossless  # transfer syntax of the instances on the "patient CD"
_STUDY_DATE, _STUDY_TIME = "20240115", "093000"

_CT_FOV = 420.0  # mm, reconstruction diameter
_CT_THICKNESS = 5.0  # mm, slice thickness and spacing
_CT_Z0 = -120.0  # mm, z of instance 1 (upper abdomen); z rises towards the lung apices
_CT_RANGE = 120.0  # mm of anatomy; slices beyond it repeat the apex level (new texture)
_CT_PADDING = -2000  # stored value (HU -3024) outside the circular field of view
_CT_INTERCEPT = -1024

_MR_SIZE, _MR_FOV, _MR_SLICES = 256, 240.0, 5
_CR_ROWS, _CR_COLS, _CR_SPACING = 1024, 864, 0.4
_XA_SIZE, _XA_FRAMES = 512, 30
_US_ROWS, _US_COLS, _US_FRAMES = 240, 320, 20
_US_APEX = (-20.0, 160.0)  # (row, col) of the virtual sector apex
_US_HALF_ANGLE = 0.6  # radians
_US_BOX = (85.0, 185.0, -0.5, 0.1)  # colour box: r0, r1, theta0, theta1

_ENCODINGS: tuple[tuple[str, UID, str], ...] = (
    ("jpegls_lossless", JPEGLSLossless, "pyjpegls"),
    ("j2k_lossless", JPEG2000Lossless, "pylibjpeg"),
    ("rle_lossless", RLELossless, "pylibjpeg"),
    ("deflated", DeflatedExplicitVRLittleEndian, ""),
    ("big_endian", ExplicitVRBigEndian, ""),
)


# --------------------------------------------------------------------------- identifiers


def _uid(*parts: object) -> UID:
    """A deterministic ``2.25.<uuid>`` UID named by `parts`."""
    name = "/".join(str(p) for p in parts)
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


def _rng(*keys: object) -> np.random.Generator:
    """A numpy generator seeded reproducibly (across runs and platforms) from `keys`."""
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in keys])


_STUDY_UID = _uid("study")
_FRAME_OF_REFERENCE_UID = _uid("frame-of-reference")
_IMPLEMENTATION_UID = _uid("implementation")


class _Series(NamedTuple):
    """Series-level identity shared by the instances of one series."""

    key: str
    number: int
    modality: str
    sop_class: UID
    description: str
    uid: UID


def _series(key: str, number: int, modality: str, sop_class: UID, description: str) -> _Series:
    """A series whose UID is derived from `key`."""
    return _Series(key, number, modality, sop_class, description, _uid("series", key))


# --------------------------------------------------------------------------- texture & shapes


@functools.lru_cache(maxsize=64)
def _bspline_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells + 3) cubic B-spline weights mapping a control grid onto n samples."""
    u = np.linspace(0.0, cells, n) + 1.0
    t = np.abs(u[:, None] - np.arange(cells + 3)[None, :])
    inner = 2.0 / 3.0 - t**2 + t**3 / 2.0
    outer = np.clip(2.0 - t, 0.0, None) ** 3 / 6.0
    weights = np.where(t < 1.0, inner, outer).astype(np.float32)
    weights.flags.writeable = False
    return weights


def _smooth_noise(
    shape: tuple[int, int], cells: int | tuple[int, int], *keys: object
) -> np.ndarray:
    """Smooth, unit-variance noise: a seeded random grid interpolated by cubic B-splines."""
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    grid = _rng("noise", cy, cx, *keys).standard_normal((cy + 3, cx + 3))
    wy, wx = _bspline_matrix(shape[0], cy), _bspline_matrix(shape[1], cx)
    scale = np.sqrt(np.mean(np.sum(wy**2, 1)) * np.mean(np.sum(wx**2, 1)))
    return (wy @ (grid / scale).astype(np.float32) @ wx.T).astype(np.float64)


def _fractal(shape: tuple[int, int], cells: int, octaves: int, *keys: object) -> np.ndarray:
    """Sum of `octaves` smooth-noise layers, each twice as fine and half as strong."""
    amps = [0.5**o for o in range(octaves)]
    out = sum(a * _smooth_noise(shape, cells * 2**o, *keys, o) for o, a in enumerate(amps))
    return np.asarray(out) / np.sqrt(sum(a * a for a in amps))


def _blur(img: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur (partial-volume softening), edges replicated."""
    out = img.astype(np.float64)
    for _ in range(passes):
        p = np.pad(out, 1, mode="edge")
        out = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
        out = (out[:, :-2] + 2 * out[:, 1:-1] + out[:, 2:]) / 4
    return out


_Box = tuple[slice, slice]


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates in mm: `x` along columns, `y` along rows (both ascending)."""

    x: np.ndarray
    y: np.ndarray
    spacing: float

    @classmethod
    def rect(cls, rows: int, cols: int, spacing: float) -> _Grid:
        """A rows × cols grid of square pixels centred on the origin."""
        x = (np.arange(cols) - (cols - 1) / 2) * spacing
        y = (np.arange(rows) - (rows - 1) / 2) * spacing
        return cls(x, y, spacing)

    def box(self, cx: float, cy: float, radius: float) -> _Box:
        """Row and column slices of the square of half-side `radius` around (cx, cy)."""
        rows = slice(np.searchsorted(self.y, cy - radius), np.searchsorted(self.y, cy + radius))
        cols = slice(np.searchsorted(self.x, cx - radius), np.searchsorted(self.x, cx + radius))
        return rows, cols


def _rho(
    g: _Grid, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, grow: float = 1.0
) -> tuple[_Box, np.ndarray]:
    """Normalised elliptic radius (1 on the outline) inside the ellipse's bounding box."""
    box = g.box(cx, cy, max(ax, ay) * grow + 2 * g.spacing)
    dx = g.x[box[1]][None, :] - cx
    dy = g.y[box[0]][:, None] - cy
    if angle:
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        dx, dy = c * dx + s * dy, c * dy - s * dx
    return box, np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)


def _paint(
    img: np.ndarray, g: _Grid, ellipse: Sequence[float], value: float, angle: float = 0.0
) -> None:
    """Fill the ellipse (cx, cy, ax, ay) with `value`, anti-aliased at its edge."""
    cx, cy, ax, ay = ellipse
    if min(ax, ay) <= 0:
        return
    box, rho = _rho(g, cx, cy, ax, ay, angle)
    cover = np.clip(0.5 + (1.0 - rho) * (ax + ay) / (2 * g.spacing), 0.0, 1.0)
    sub = img[box]
    sub += cover * (value - sub)


def _label(
    labels: np.ndarray, g: _Grid, ellipse: Sequence[float], value: int, angle: float = 0.0
) -> None:
    """Set the pixels whose centres lie inside the ellipse (cx, cy, ax, ay) to `value`."""
    cx, cy, ax, ay = ellipse
    box, rho = _rho(g, cx, cy, ax, ay, angle=angle)
    labels[box][rho < 1] = value


def _dome(
    img: np.ndarray,
    g: _Grid,
    ellipse: Sequence[float],
    weight: float,
    angle: float = 0.0,
    power: float = 0.5,
) -> None:
    """Add `weight` × (1 - rho²)^power: an ellipsoid's chord length (power 0.5) as projected
    on a radiograph, or a flatter body-like profile (smaller power)."""
    cx, cy, ax, ay = ellipse
    box, rho = _rho(g, cx, cy, ax, ay, angle)
    img[box] += weight * np.clip(1.0 - rho**2, 0.0, None) ** power


# --------------------------------------------------------------------------- dataset plumbing


def _new_dataset(series: _Series, instance: int, image_type: Sequence[str]) -> Dataset:
    """A dataset with the patient, study, series, equipment and SOP common modules filled."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(image_type)
    ds.SOPClassUID = series.sop_class
    ds.SOPInstanceUID = _uid("instance", series.uid, instance)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _STUDY_DATE
    ds.StudyTime = _STUDY_TIME
    ds.SeriesTime = ds.ContentTime = f"09{30 + series.number % 30:02d}00"
    ds.AccessionNumber = "SAMPLE0001"
    ds.Modality = series.modality
    ds.Manufacturer = "dcmexport"
    ds.InstitutionName = "dcmexport synthetic sample data"
    ds.ReferringPhysicianName = ""
    ds.StationName = "SAMPLE"
    ds.StudyDescription = "dcmexport synthetic sample study"
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.PatientName = "Sample^Patient"
    ds.PatientID = "SAMPLE001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SoftwareVersions = "dcmexport sample v1"
    ds.StudyInstanceUID = _STUDY_UID
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = "1"
    ds.SeriesNumber = series.number
    ds.InstanceNumber = instance
    ds.BurnedInAnnotation = "NO"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    """Write `ds` as a Part 10 file (preamble + complete file meta) to `path`."""
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DCMEXPORT_1"
    ds.preamble = b"\x00" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    logger.debug("wrote %s", path)
    return path


def _set_cine(ds: Dataset, frame_time_ms: float, fps: int) -> None:
    """Multi-frame + Cine module attributes, frames stepped by Frame Time."""
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    ds.FrameTime = frame_time_ms
    ds.CineRate = fps
    ds.RecommendedDisplayFrameRate = fps
    ds.StartTrim = 1
    ds.StopTrim = int(ds.NumberOfFrames)
    ds.ActualFrameDuration = round(frame_time_ms)


# --------------------------------------------------------------------------- CT


def _ct_frac(z: float) -> float:
    """Position in the phantom's anatomy: 0 at the liver dome, 1 at the lung apices."""
    return float(np.clip((z - _CT_Z0) / _CT_RANGE, 0.0, 1.0))


def _ct_lungs(f: float) -> list[tuple[float, float, float, float]]:
    """The two lung ellipses: small over the liver dome, largest mid-chest."""
    scale = 0.2 + 0.8 * float(np.sin(np.pi * (0.08 + 0.8 * f)))
    return [(side * 72.0, 0.0, 60 * scale, 85 * scale) for side in (-1, 1)]


def _ct_soft_tissue(hu: np.ndarray, g: _Grid, f: float) -> None:
    """Body wall, abdominal organs, mediastinum and heart (HU values)."""
    ax, ay = 168.0 - 10 * f, 118.0 - 4 * f
    _paint(hu, g, (0, 0, ax, ay), -95)  # subcutaneous fat
    _paint(hu, g, (0, 2, ax - 14, ay - 12), 50)  # muscle
    _paint(hu, g, (0, 4, ax - 27, ay - 24), 35)  # thoracic / abdominal contents
    liver = np.sqrt(np.clip((0.5 - f) / 0.5, 0, 1))
    _paint(hu, g, (-50, 8, 100 * liver, 82 * liver), 95)  # portal-venous phase
    _paint(hu, g, (75, 40, 35 * liver, 50 * liver), 105, angle=-30)  # spleen
    _paint(hu, g, (50, -40, 40 * liver, 30 * liver), 25)  # stomach
    _paint(hu, g, (50, -55, 30 * liver, 12 * liver), -990)  # its gas bubble
    for lung in _ct_lungs(f):
        _paint(hu, g, lung, -860)
    heart = np.sin(np.pi * np.clip((f - 0.05) / 0.7, 0, 1))
    _paint(hu, g, (18, -8, 62 * heart, 52 * heart), -80, angle=-30)  # pericardial fat
    _paint(hu, g, (18, -8, 57 * heart, 47 * heart), 40, angle=-30)
    _paint(hu, g, (30, -8, 26 * heart, 18 * heart), 160, angle=-30)  # contrast in the LV
    _paint(hu, g, (30, 24, 12, 12), 160)  # descending aorta
    if f > 0.6:
        _paint(hu, g, (-10, -30, 15, 15), 160)  # ascending aorta
    _paint(hu, g, (4, 20, 6, 6), 30)  # oesophagus
    if f > 0.72:
        _paint(hu, g, (-2, 0, 11, 10), 40)  # trachea
        _paint(hu, g, (-2, 0, 9, 8), -990)
    _paint(hu, g, (0, 152, 215, 4), 250)  # scanner table


def _ct_skeleton(hu: np.ndarray, g: _Grid, z: float, f: float) -> None:
    """Vertebra, ribs and sternum: cortical bone 700–900 HU, cancellous ~250 HU."""
    _paint(hu, g, (0, 84, 20, 10), 700)  # lamina
    _paint(hu, g, (0, 96, 5, 10), 700)  # spinous process
    _paint(hu, g, (0, 50, 19, 18), 880)  # vertebral body cortex
    _paint(hu, g, (0, 50, 15.5, 14.5), 240)
    _paint(hu, g, (0, 76, 9, 8), 15)  # spinal canal
    ax, ay = 168.0 - 10 * f - 22, 118.0 - 4 * f - 20
    for deg in (-160, -130, -100, -65, -35, -10, 10, 35, 65, 100, 130, 160):
        if np.sin(2 * np.pi * (z / 24.0 + deg / 90.0)) < 0.1:
            continue
        a = np.radians(deg)
        cx, cy = ax * np.cos(a), 2 + ay * np.sin(a)
        _paint(hu, g, (cx, cy, 9, 5.5), 780, angle=deg + 90)
        _paint(hu, g, (cx, cy, 5.5, 2.5), 300, angle=deg + 90)
    if f > 0.3:
        _paint(hu, g, (0, -100, 14, 6), 450)  # sternum


@functools.lru_cache(maxsize=8)
def _ct_layer(shape: tuple[int, int], cells: int, key: str, layer: int) -> np.ndarray:
    """One 20 mm layer of CT texture (cached: four consecutive slices share it)."""
    out = _fractal(shape, cells, 2, key, layer)
    out.flags.writeable = False
    return out


def _ct_texture(shape: tuple[int, int], z: float, cells: int, key: str) -> np.ndarray:
    """Smooth noise that also varies smoothly with z (interpolated between 20 mm layers)."""
    k = int(np.floor(z / 20.0))
    t = z / 20.0 - k
    s = t * t * (3 - 2 * t)
    return (1 - s) * _ct_layer(shape, cells, key, k) + s * _ct_layer(shape, cells, key, k + 1)


def _ct_hu(size: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Hounsfield units of the chest phantom at `z` and the field-of-view mask."""
    spacing = _CT_FOV / size
    g = _Grid.rect(size, size, spacing)
    f = _ct_frac(z)
    hu = np.full((size, size), -1000.0)
    _ct_soft_tissue(hu, g, f)
    _ct_skeleton(hu, g, z, f)
    lungs = np.zeros_like(hu)
    for lung in _ct_lungs(f):
        _paint(lungs, g, lung, 1.0)
    hu = _blur(hu)
    lungs *= np.clip((-400 - hu) / 300, 0, 1)
    tissue = np.clip((hu + 300) / 300, 0, 1)
    soft = _ct_texture(hu.shape, z, 8, "ct-soft")
    vessels = np.clip((_ct_texture(hu.shape, z, 40, "ct-lung") - 1.3) * 2.5, 0, 1)
    hu += 10 * tissue * soft + lungs * (25 * soft + 850 * vessels)
    hu += _rng("ct-quantum", round(z * 100)).normal(0.0, 9.0, hu.shape)
    fov = np.hypot(g.x[None, :], g.y[:, None]) <= _CT_FOV / 2 - spacing
    return np.clip(hu, -1024, 3071), fov


def _ct_dataset(series: _Series, instance: int, size: int) -> Dataset:
    """One CT slice: stored = HU + 1024, padding outside the field of view."""
    spacing = round(_CT_FOV / size, 6)
    z = _CT_Z0 + (instance - 1) * _CT_THICKNESS
    hu, fov = _ct_hu(size, z)
    stored = np.where(fov, np.rint(hu) - _CT_INTERCEPT, _CT_PADDING).astype(np.int16)
    ds = _new_dataset(series, instance, ["ORIGINAL", "PRIMARY", "AXIAL"])
    ds.FrameOfReferenceUID = _FRAME_OF_REFERENCE_UID
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.SliceThickness = _CT_THICKNESS
    ds.SpacingBetweenSlices = _CT_THICKNESS
    ds.ReconstructionDiameter = _CT_FOV
    ds.ConvolutionKernel = "STANDARD"
    ds.GantryDetectorTilt = 0
    ds.AcquisitionNumber = 1
    offset = -(size - 1) / 2 * spacing
    ds.ImagePositionPatient = [round(offset, 4), round(offset, 4), round(z, 4)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = round(z, 4)
    ds.PixelSpacing = [spacing, spacing]
    ds.set_pixel_data(stored, "MONOCHROME2", 16, generate_instance_uid=False)
    ds.add_new(0x00280120, "SS", _CT_PADDING)  # Pixel Padding Value
    ds.RescaleIntercept = _CT_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    return ds


def _iter_ct(
    directory: Path, n_slices: int, size: int, start_instance: int, series: _Series
) -> Iterator[tuple[Path, Dataset]]:
    """Write the CT slices one by one, yielding each path and dataset."""
    for instance in range(start_instance, start_instance + n_slices):
        ds = _ct_dataset(series, instance, size)
        yield _save(ds, directory / f"CT_{instance:04d}.dcm"), ds


def _ct_series(series_uid: str | None = None) -> _Series:
    """The sample CT series, optionally under another Series Instance UID."""
    series = _series("CT", 1, "CT", CTImageStorage, "Chest CT (synthetic phantom)")
    return series._replace(uid=UID(series_uid)) if series_uid else series


def write_ct_series(
    directory: str | os.PathLike[str],
    n_slices: int,
    *,
    size: int = 512,
    start_instance: int = 1,
    series_uid: str | None = None,
) -> list[Path]:
    """Write `n_slices` CT slices (``CT_0001.dcm`` …) of `size`² into `directory`.

    Slice ``k`` (the Instance Number, from `start_instance`) lies at z = -120 + 5 (k - 1) mm,
    so series written in chunks with consecutive `start_instance` values join up seamlessly.
    SOP Instance UIDs derive from the series UID and the instance number.
    """
    if n_slices < 0 or size < 16 or start_instance < 1:
        raise ValueError("need n_slices >= 0, size >= 16 and start_instance >= 1")
    out = Path(directory)
    series = _ct_series(series_uid)
    try:
        return [path for path, _ in _iter_ct(out, n_slices, size, start_instance, series)]
    finally:
        _ct_layer.cache_clear()


# --------------------------------------------------------------------------- MR / head labels

_BG, _SCALP, _SKULL, _CSF, _GM, _WM, _VENTRICLE, _DEEP_GM = range(8)


def _head_labels(n: int, fov: float, z: float) -> np.ndarray:
    """Tissue labels of an axial head slice at `z` mm above the skull base."""
    g = _Grid.rect(n, n, fov / n)
    s = float(np.sqrt(np.clip(1 - ((z - 20) / 120) ** 2, 0.2, 1)))
    labels = np.zeros((n, n), dtype=np.intp)
    gyri = _fractal((n, n), 20, 2, "gyri", z)
    for label, ax, ay in ((_SCALP, 80, 98), (_SKULL, 74, 92), (_CSF, 69, 87), (_GM, 67, 85)):
        _label(labels, g, (0, 0, ax * s, ay * s), label)
    box, rho = _rho(g, 0, 0, 55 * s, 72 * s, grow=1.3)
    labels[box][rho + 0.09 * gyri[box] < 1] = _WM
    for side in (-1, 1):
        _label(labels, g, (side * 21, 4, 10 * s, 16 * s), _DEEP_GM, angle=side * 10)
        _label(labels, g, (side * 9, -8, 5 * s, 24 * s), _VENTRICLE, angle=-side * 12)
    _label(labels, g, (0, 10, 1.5, 8 * s), _VENTRICLE)
    _label(labels, g, (0, -60 * s, 1.4, 24 * s), _CSF)  # interhemispheric fissure
    _label(labels, g, (0, 64 * s, 1.4, 18 * s), _CSF)
    return labels


def _mr_slice(z: float) -> np.ndarray:
    """A T1-weighted 12-bit head slice with coil shading and Rician noise."""
    labels = _head_labels(_MR_SIZE, _MR_FOV, z)
    t1 = np.array([0, 2600, 120, 450, 1450, 2050, 420, 1650], dtype=np.float64)
    img = _blur(t1[labels])
    shape = img.shape
    yy, xx = np.mgrid[-1 : 1 : shape[0] * 1j, -1 : 1 : shape[1] * 1j]
    bias = 1 + 0.08 * _smooth_noise(shape, 2, "mr-bias") + 0.15 * (xx**2 + yy**2)
    img *= bias * (1 + 0.025 * _fractal(shape, 16, 2, "mr-texture", z))
    rng = _rng("mr-noise", z)
    img = np.hypot(img + rng.normal(0, 18, shape), rng.normal(0, 18, shape))
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def _mr_datasets() -> list[Dataset]:
    """Five axial T1 slices, 12 bits stored in 16 allocated."""
    series = _series("MR", 2, "MR", MRImageStorage, "Head T1 SE axial (synthetic phantom)")
    spacing = _MR_FOV / _MR_SIZE
    out = []
    for instance in range(1, _MR_SLICES + 1):
        z = 20.0 + 6.0 * (instance - 1)
        ds = _new_dataset(series, instance, ["ORIGINAL", "PRIMARY", "M", "NONE"])
        ds.FrameOfReferenceUID = _uid("frame-of-reference", "MR")
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 500, 15, 1
        ds.MagneticFieldStrength = 1.5
        ds.ImagedNucleus = "1H"
        ds.SliceThickness, ds.SpacingBetweenSlices = 5.0, 6.0
        offset = round(-(_MR_SIZE - 1) / 2 * spacing, 4)
        ds.ImagePositionPatient = [offset, offset, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z
        ds.PixelSpacing = [spacing, spacing]
        ds.set_pixel_data(_mr_slice(z), "MONOCHROME2", 12, generate_instance_uid=False)
        ds.WindowCenter, ds.WindowWidth = 1300, 2600
        ds.WindowCenterWidthExplanation = "T1 BRAIN"
        out.append(ds)
    return out


# --------------------------------------------------------------------------- CR


def _cr_ribs(t: np.ndarray, g: _Grid) -> None:
    """Posterior rib arcs: ellipse rings lateral to the spine, fading as they curve down."""
    for k in range(10):
        cy = -125.0 + 26 * k
        for side in (-1, 1):
            cx, ax, ay = side * 35.0, 118.0 + 2 * k, 55.0
            box, rho = _rho(g, cx, cy, ax, ay, angle=side * 10)
            ring = np.sqrt(np.clip(1 - np.abs(rho - 1) * (ax + ay) / 2 / 5.0, 0, 1))
            medial = np.clip((side * g.x[box[1]] - 12) / 6, 0, 1)[None, :]
            fade = np.clip((cy + 20 - g.y[box[0]]) / 30, 0, 1)[:, None]
            t[box] += 0.5 * ring * medial * fade


def _cr_image() -> np.ndarray:
    """A PA chest radiograph as 12-bit log exposure (high = dark in MONOCHROME1)."""
    g = _Grid.rect(_CR_ROWS, _CR_COLS, _CR_SPACING)
    shape = (_CR_ROWS, _CR_COLS)
    t = np.zeros(shape)  # attenuation (line integral of mu)
    _dome(t, g, (0, 70, 150, 330), 4.0, power=0.35)  # torso
    _dome(t, g, (0, -210, 50, 75), 1.0, power=0.35)  # neck
    for side in (-1, 1):
        _dome(t, g, (side * 135, -165, 60, 45), 1.5)  # shoulders
        _dome(t, g, (side * 70, -150, 72, 7), 0.7, angle=side * 12)  # clavicles
    lungs = np.zeros(shape)
    _dome(lungs, g, (-68, -30, 62, 128), 1.0, angle=4)
    _dome(lungs, g, (68, -20, 60, 136), 1.0, angle=-4)
    markings = np.clip(_fractal(shape, 24, 3, "cr-lung"), -1.5, 2.5)
    t -= lungs * (2.4 - 0.25 * markings)
    _dome(t, g, (26, 32, 66, 55), 1.2, angle=-20)  # heart
    _dome(t, g, (0, -80, 28, 105), 0.8)  # mediastinum
    _dome(t, g, (26, -92, 15, 15), 0.5)  # aortic knob
    _dome(t, g, (0, -150, 8, 75), -0.6)  # trachea
    discs = 0.85 + 0.15 * np.cos(2 * np.pi * g.y / 26.0)
    t += 0.7 * discs[:, None] * np.exp(-((g.x / 20.0) ** 2))[None, :]  # spine
    _cr_ribs(t, g)
    t += 0.06 * _fractal(shape, 6, 2, "cr-soft")
    edge_x = np.clip((np.abs(g.x) - 166) / 2, 0, 1)[None, :]
    edge_y = np.clip((np.abs(g.y) - 198) / 2, 0, 1)[:, None]
    t += 9 * np.maximum(edge_x, edge_y)  # collimator blades: no exposure
    img = 3700 - 600 * t + _rng("cr-quantum").normal(0, 10, shape)
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def _cr_dataset() -> Dataset:
    """CR chest PA: MONOCHROME1 with a sigmoid VOI LUT and an equivalent window."""
    series = _series("CR", 3, "CR", ComputedRadiographyImageStorage, "Chest PA (synthetic)")
    ds = _new_dataset(series, 1, ["ORIGINAL", "PRIMARY"])
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.KVP = 125
    ds.ImagerPixelSpacing = [_CR_SPACING, _CR_SPACING]
    ds.PixelSpacing = [_CR_SPACING, _CR_SPACING]
    ds.PixelIntensityRelationship = "LOG"
    ds.set_pixel_data(_cr_image(), "MONOCHROME1", 12, generate_instance_uid=False)
    x = np.arange(4096, dtype=np.float64)
    lut = np.rint(4095 / (1 + np.exp(-(x - 2100) / 450))).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 12])  # LUT Descriptor
    item.LUTExplanation = "SIGMOID NORMAL"
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    ds.VOILUTSequence = DicomSequence([item])
    ds.WindowCenter, ds.WindowWidth = 2100, 1800  # the LUT's slope at its centre
    ds.WindowCenterWidthExplanation = "NORMAL"
    return ds


# --------------------------------------------------------------------------- XA


class _Capsule(NamedTuple):
    """A straight vessel piece from p0 to p1 (pixels), radius r, path distance d0 at p0."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    r: float
    d0: float


def _vessel_tree(levels: int = 6) -> list[_Capsule]:
    """A seeded, binary-branching, slightly tortuous arterial tree (pixel coordinates)."""
    rng = _rng("xa-tree")
    stack = [((300.0, 70.0), np.radians(100.0), 120.0, 6.0, 0.0, 0)]
    out: list[_Capsule] = []
    while stack:
        (x, y), angle, length, radius, dist, level = stack.pop()
        for _ in range(4):
            angle += rng.normal(0.0, np.radians(9.0))
            x1, y1 = x + length / 4 * np.cos(angle), y + length / 4 * np.sin(angle)
            out.append(_Capsule((x, y), (x1, y1), radius, dist))
            x, y, dist = x1, y1, dist + length / 4
        if level + 1 < levels:
            for sign in (-1, 1):
                turn = np.radians(22.0 + 15.0 * rng.random())
                child_r = max(radius * 0.72, 1.2)
                stack.append(((x, y), angle + sign * turn, length * 0.74, child_r, dist, level + 1))
    return out


def _render_vessels(size: int, capsules: Sequence[_Capsule]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel vessel opacity (0..1) and arrival path distance of the bolus (inf = none)."""
    opacity = np.zeros((size, size))
    arrival = np.full((size, size), np.inf)
    pix = np.arange(size, dtype=np.float64)
    for (x0, y0), (x1, y1), r, d0 in capsules:
        pad = r + 2
        c0, c1 = int(max(min(x0, x1) - pad, 0)), int(min(max(x0, x1) + pad + 1, size))
        r0, r1 = int(max(min(y0, y1) - pad, 0)), int(min(max(y0, y1) + pad + 1, size))
        if c0 >= c1 or r0 >= r1:
            continue
        px, py = pix[None, c0:c1] - x0, pix[r0:r1, None] - y0
        dx, dy = x1 - x0, y1 - y0
        seg_len2 = max(dx * dx + dy * dy, 1e-9)
        t = np.clip((px * dx + py * dy) / seg_len2, 0, 1)
        dist = np.hypot(px - t * dx, py - t * dy)
        prof = np.sqrt(np.clip(1 - (dist / (r + 0.6)) ** 2, 0, None))
        box = (slice(r0, r1), slice(c0, c1))
        opacity[box] = np.maximum(opacity[box], prof)
        arrival[box] = np.where(
            prof > 0, np.minimum(arrival[box], d0 + t * seg_len2**0.5), arrival[box]
        )
    return opacity, arrival


def _xa_frames() -> np.ndarray:
    """30 frames of an inverted (white-vessel) angiogram as a contrast bolus fills the tree."""
    n, size = _XA_FRAMES, _XA_SIZE
    opacity, arrival = _render_vessels(size, _vessel_tree())
    catheter = [
        _Capsule((330.0, -10.0), (315.0, 30.0), 1.8, 0),
        _Capsule((315.0, 30.0), (300.0, 70.0), 1.8, 0),
    ]
    cath, _ = _render_vessels(size, catheter)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    radius = np.hypot(xx, yy) / (size / 2 - 6)
    field = np.clip((1 - radius) * size / 4, 0, 1)  # round image-intensifier field
    base = (55 + 14 * _fractal((size, size), 5, 3, "xa-bg")) * (1 - 0.25 * radius**2)
    base += 30 * np.exp(-((xx / (size / 9)) ** 2)) + 45 * cath  # spine shadow, catheter
    d_max = float(arrival[np.isfinite(arrival)].max())
    frames = np.empty((n, size, size), dtype=np.uint8)
    for k in range(n):
        front = d_max * (0.05 + 1.0 * (k / (n - 1)) ** 0.6)  # fast proximally, slower distally
        fill = np.clip((front - arrival) / 20.0, 0, 1)
        conc = 0.45 + 0.55 * k / (n - 1)
        img = base + 140 * opacity * fill * conc + _rng("xa-quantum", k).normal(0, 1.5, field.shape)
        frames[k] = np.clip(np.rint(img * field), 0, 255)
    return frames


def _xa_dataset() -> Dataset:
    """XA cine: 8-bit MONOCHROME2, 15 fps (Frame Time 66.67 ms)."""
    series = _series("XA", 4, "XA", XRayAngiographicImageStorage, "Angio run (synthetic)")
    ds = _new_dataset(series, 1, ["ORIGINAL", "PRIMARY", "SINGLE PLANE"])
    ds.PatientOrientation = ["L", "F"]
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = 80
    ds.RadiationSetting = "GR"
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = 0, 0
    ds.DistanceSourceToDetector = 1100
    ds.DistanceSourceToPatient = 750
    ds.ImagerPixelSpacing = [0.3, 0.3]
    ds.PixelIntensityRelationship = "LIN"
    ds.set_pixel_data(_xa_frames(), "MONOCHROME2", 8, generate_instance_uid=False)
    _set_cine(ds, 66.67, 15)
    ds.WindowCenter, ds.WindowWidth = 128, 256
    return ds


# --------------------------------------------------------------------------- US


class _UsScene(NamedTuple):
    """Static parts of the US scene: beam geometry, tissue echogenicity, speckle."""

    r: np.ndarray  # depth along the beam, pixels from the apex
    theta: np.ndarray  # beam angle, radians
    x: np.ndarray  # lateral position, pixels from the apex
    y: np.ndarray  # axial position, pixels from the apex
    sector: np.ndarray  # bool: inside the imaged sector
    tissue: np.ndarray  # echogenicity without the vessel
    speckle: np.ndarray  # Rayleigh speckle, 8 rows taller than the image (for motion)


def _us_tissue(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Echogenicity of skin, subcutaneous fat with septa, fascia, muscle and parenchyma."""
    echo = 0.3 + 0.05 * _fractal(x.shape, 6, 2, "us-tissue")
    echo += 0.9 * np.exp(-(((y - 28) / 2.5) ** 2))  # skin
    septa = 0.22 + 0.5 * np.exp(-(((y - 43 - 3 * np.sin(x / 17)) / 1.2) ** 2))
    echo = np.where((y > 31) & (y < 55), septa, echo)  # fat
    echo += 0.7 * np.exp(-(((y - 57) / 1.8) ** 2))  # fascia
    fibres = 0.8 + 0.35 * np.sin((y + 0.3 * x) / 2.6) ** 8
    return np.where((y > 59) & (y < 105), echo * fibres, echo)  # muscle


@functools.lru_cache(maxsize=1)
def _us_scene() -> _UsScene:
    """Compute (once) everything that does not change from frame to frame."""
    rows, cols = np.mgrid[0:_US_ROWS, 0:_US_COLS].astype(np.float64)
    dy, dx = rows - _US_APEX[0], cols - _US_APEX[1]
    r, theta = np.hypot(dx, dy), np.arctan2(dx, dy)
    sector = (np.abs(theta) < _US_HALF_ANGLE) & (r > 25) & (r < 255)
    shape = (_US_ROWS + 8, _US_COLS)
    a, b = (_smooth_noise(shape, (120, 90), "speckle", i) for i in (0, 1))
    speckle = (np.hypot(a, b) / np.sqrt(2)) ** 0.7  # mild speckle reduction, as scanners do
    scene = _UsScene(r, theta, dx, dy, sector, _us_tissue(dx, dy), speckle)
    for array in scene:
        array.flags.writeable = False
    return scene


def _us_frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey level (0..1, speckled, log-compressed) and Doppler velocity (-1..1) of frame k."""
    sc = _us_scene()
    pulse = max(0.0, float(np.sin(2 * np.pi * k / 24))) ** 2  # cardiac cycle: 24 frames
    c, s = np.cos(0.26), np.sin(0.26)  # vessel axis tilted 15 degrees
    along, across = (sc.x + 20) * c + (sc.y - 135) * s, (sc.y - 135) * c - (sc.x + 20) * s
    rho = np.hypot(along / 70, across / (20 * (1 + 0.08 * pulse)))
    echo = np.where(rho < 1, 0.03, sc.tissue) + np.exp(-(((rho - 1.05) / 0.05) ** 2))
    echo *= np.where((np.abs(along) < 60) & (across > 22), 1.25, 1.0)  # acoustic enhancement
    shift = 4 + round(2 * np.sin(2 * np.pi * k / 40))  # slow probe / breathing motion
    intensity = echo * sc.speckle[shift : shift + _US_ROWS] * (1.0 - 0.25 * sc.r / 255)
    decibels = 20 * np.log10(np.maximum(intensity, 1e-3))
    grey = np.clip((decibels + 30) / 45, 0, 1) * sc.sector  # 45 dB dynamic range
    r0, r1, t0, t1 = _US_BOX
    in_box = sc.sector & (sc.r > r0) & (sc.r < r1) & (sc.theta > t0) & (sc.theta < t1)
    beam = np.sin(sc.theta) * c + np.cos(sc.theta) * s  # cosine of the Doppler angle
    profile = np.clip(1 - rho**2, 0, None)  # laminar (parabolic) flow
    velocity = np.clip((0.35 + 0.65 * pulse) * profile * beam / 0.25, -1, 1) * in_box
    velocity = np.where((rho < 1) & (np.abs(velocity) > 0.06), velocity, 0.0)  # wall filter
    return grey, velocity


def _us_overlay(rgb: np.ndarray, r: np.ndarray, theta: np.ndarray) -> None:
    """Colour-box outline, colour bar and 1 cm depth dots, as a scanner would burn them in."""
    r0, r1, t0, t1 = _US_BOX
    on_arc = ((np.abs(r - r0) < 0.7) | (np.abs(r - r1) < 0.7)) & (theta > t0) & (theta < t1)
    on_side = (
        ((np.abs(theta - t0) * r < 0.7) | (np.abs(theta - t1) * r < 0.7)) & (r > r0) & (r < r1)
    )
    rgb[on_arc | on_side] = 170
    ramp = np.linspace(1, -1, 120)
    bar = np.stack(
        [
            255 * np.clip(ramp, 0, 1),
            90 * np.clip(np.abs(ramp) - 0.5, 0, 1) * 2,
            255 * np.clip(-ramp, 0, 1),
        ],
        axis=-1,
    )
    rgb[60:180, 302:310] = bar[:, None, :].astype(np.uint8)
    for depth in range(1, 8):
        row = round(depth * 10 / 0.3 + _US_APEX[0] + 25)
        if row < _US_ROWS - 1:
            rgb[row - 1 : row + 1, 286:289] = 200


def _doppler_rgb(velocity: np.ndarray) -> np.ndarray:
    """Red (towards) / blue (away) colour map brightening to yellow / cyan at high speed."""
    mag = np.abs(velocity)
    main = 255 * np.clip(0.45 + mag, 0, 1)
    extra = 255 * np.clip((mag - 0.6) * 2, 0, 1)
    towards = velocity > 0
    red = np.where(towards, main, 0)
    green = extra
    blue = np.where(towards, 0, main)
    return np.stack([red, green, blue], axis=-1)


def _us_frames() -> np.ndarray:
    """The RGB cine: (frames, rows, cols, 3) uint8."""
    sc = _us_scene()
    frames = np.empty((_US_FRAMES, _US_ROWS, _US_COLS, 3), dtype=np.uint8)
    for k in range(_US_FRAMES):
        grey, velocity = _us_frame(k)
        rgb = np.repeat((255 * grey)[..., None], 3, axis=-1)
        colour = velocity != 0
        rgb[colour] = _doppler_rgb(velocity)[colour]
        frames[k] = np.rint(rgb).astype(np.uint8)
        _us_overlay(frames[k], sc.r, sc.theta)
    return frames


def _us_regions() -> DicomSequence:
    """One 2D tissue calibration region (0.3 mm pixels) for the sector."""
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = _US_COLS - 1, _US_ROWS - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = 0.03
    region.ReferencePixelX0, region.ReferencePixelY0 = int(_US_APEX[1]), int(_US_APEX[0])
    region.ReferencePixelPhysicalValueX = region.ReferencePixelPhysicalValueY = 0.0
    return DicomSequence([region])


def _us_dataset(series: _Series, instance: int, image_type4: str) -> Dataset:
    """US Image / US Multi-frame Image common attributes (pixel data set by the caller)."""
    ds = _new_dataset(series, instance, ["ORIGINAL", "PRIMARY", "VASCULAR", image_type4])
    ds.PatientOrientation = ""
    ds.BodyPartExamined = "NECK"
    ds.TransducerType = "SECTOR_PHASED"
    ds.SequenceOfUltrasoundRegions = _us_regions()
    ds.LossyImageCompression = "00"
    return ds


def _us_cine_dataset(frames: np.ndarray) -> Dataset:
    """US Multi-frame: RGB, Planar Configuration 0, 30 fps."""
    series = _series("US", 5, "US", UltrasoundMultiFrameImageStorage, "Vascular cine (synthetic)")
    ds = _us_dataset(series, 1, "0011")
    ds.set_pixel_data(frames, "RGB", 8, generate_instance_uid=False)
    _set_cine(ds, 33.33, 30)
    return ds


# --------------------------------------------------------------------------- colour


def _hot_iron() -> np.ndarray:
    """(256, 3) uint16 black-red-yellow-white palette."""
    x = np.linspace(0, 1, 256)
    rgb = np.stack([np.clip(x * 2.5, 0, 1), np.clip(x * 2.5 - 1, 0, 1), np.clip(x * 5 - 4, 0, 1)])
    return np.rint(rgb.T * 65535).astype(np.uint16)


def _palette_dataset() -> Dataset:
    """Secondary Capture perfusion map (with a left MCA deficit) in PALETTE COLOR."""
    series = _series("PAL", 6, "OT", SecondaryCaptureImageStorage, "CBF map, palette (synthetic)")
    ds = _new_dataset(series, 1, ["DERIVED", "SECONDARY"])
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ["L", "P"]
    labels = _head_labels(_MR_SIZE, _MR_FOV, 30.0)
    cbf = np.array([0, 20, 5, 15, 205, 95, 12, 175], dtype=np.float64)[labels]
    yy, xx = np.mgrid[0:_MR_SIZE, 0:_MR_SIZE] - _MR_SIZE / 2
    angle, radius = np.arctan2(yy, xx), np.hypot(xx, yy)
    wedge = np.clip((0.6 - np.abs(angle + 0.1)) * 6, 0, 1) * np.clip((radius - 20) / 15, 0, 1)
    cbf *= 1 - 0.55 * wedge  # hypoperfused territory on the patient's left
    cbf = _blur(cbf, 3) * (1 + 0.1 * _fractal(cbf.shape, 10, 2, "cbf"))
    index = np.clip(np.rint(cbf), 0, 255).astype(np.uint8)
    ds.set_pixel_data(index, "PALETTE COLOR", 8, generate_instance_uid=False)
    lut = _hot_iron()
    for i in range(3):  # Red, Green, Blue
        ds.add_new(0x00281101 + i, "US", [256, 0, 16])  # Palette Color LUT Descriptor
        ds.add_new(0x00281201 + i, "OW", lut[:, i].astype("<u2").tobytes())  # LUT Data
    ds.PaletteColorLookupTableUID = _uid("palette", "hot-iron")
    return ds


#: Segmented palette per channel: (first value, [(count, end value) linear ramps or jumps]).
#: Indices 0–191 are grey, 192–223 red (flow towards), 224–255 blue (flow away).
_SEGMENTS: dict[str, tuple[int, list[tuple[int, int]]]] = {
    "Red": (0, [(191, 65535), (-1, 32768), (31, 65535), (-1, 0), (31, 0)]),
    "Green": (0, [(191, 65535), (-1, 0), (31, 32768), (-1, 0), (31, 32768)]),
    "Blue": (0, [(191, 65535), (-1, 0), (31, 0), (-1, 32768), (31, 65535)]),
}


def _segmented_lut(first: int, pieces: Sequence[tuple[int, int]]) -> bytes:
    """PS3.3 C.7.9.2 segments: discrete (opcode 0) for jumps, linear (opcode 1) for ramps."""
    words = [0, 1, first]
    for count, value in pieces:
        words += [0, 1, value] if count < 0 else [1, count, value]
    return np.asarray(words, dtype="<u2").tobytes()


def _segmented_palette_dataset(grey: np.ndarray, velocity: np.ndarray) -> Dataset:
    """US Image in PALETTE COLOR whose LUTs are given only as Segmented LUT Data."""
    series = _series("USPAL", 7, "US", UltrasoundImageStorage, "US frame, segmented palette")
    ds = _us_dataset(series, 1, "0011")
    index = np.rint(grey * 191)
    towards = 192 + np.rint(np.abs(velocity) * 31)
    away = 224 + np.rint(np.abs(velocity) * 31)
    index = np.where(velocity > 0, towards, np.where(velocity < 0, away, index))
    ds.set_pixel_data(index.astype(np.uint8), "PALETTE COLOR", 8, generate_instance_uid=False)
    for i, (first, pieces) in enumerate(_SEGMENTS.values()):
        ds.add_new(0x00281101 + i, "US", [256, 0, 16])
        ds.add_new(0x00281221 + i, "OW", _segmented_lut(first, pieces))
    return ds


def _ybr_full_422(rgb: np.ndarray) -> bytes:
    """RGB → YBR_FULL, then 4:2:2: each horizontal pixel pair stores Y1 Y2 Cb Cr (C.7.6.3.1.2),
    with Cb/Cr the rounded mean of the pair."""
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.float64)
    rows, cols = ybr.shape[:2]
    pairs = ybr.reshape(rows, cols // 2, 2, 3)
    out = np.empty((rows, cols // 2, 4), dtype=np.uint8)
    out[..., 0] = pairs[:, :, 0, 0]
    out[..., 1] = pairs[:, :, 1, 0]
    out[..., 2:] = np.clip(np.rint(pairs[:, :, :, 1:].mean(axis=2)), 0, 255)
    return out.tobytes()


def _ybr_dataset(rgb: np.ndarray) -> Dataset:
    """US Image, native YBR_FULL_422 (frame 1 of the US cine)."""
    series = _series("USYBR", 8, "US", UltrasoundImageStorage, "US frame, YBR_FULL_422")
    ds = _us_dataset(series, 1, "0011")
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds.set_pixel_data(ybr, "YBR_FULL_422", 8, generate_instance_uid=False)
    ds.PixelData = _ybr_full_422(rgb)  # chroma averaged over each pixel pair
    return ds


# --------------------------------------------------------------------------- encodings


def _big_endian_copy(ds: Dataset) -> None:
    """Switch `ds` to Explicit VR Big Endian, byte-swapping 16-bit Pixel Data words."""
    if ds.BitsAllocated == 16:
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _encoded_copy(source: Dataset, name: str, suffix: str, tsyntax: UID, plugin: str) -> Dataset:
    """A lossless re-encoding of `source` as a new instance in its own series."""
    ds = copy.deepcopy(source)
    key = f"{name}-{suffix}"
    ds.SeriesInstanceUID = _uid("series", key)
    ds.SOPInstanceUID = _uid("instance", key)
    ds.SeriesNumber = 100 + [e[0] for e in _ENCODINGS].index(suffix) * 10 + int(source.SeriesNumber)
    ds.SeriesDescription = f"{source.SeriesDescription} [{suffix}]"
    if tsyntax == ExplicitVRBigEndian:
        _big_endian_copy(ds)
    elif tsyntax.is_compressed:
        available = get_encoder(tsyntax).available_plugins
        ds.compress(
            tsyntax,
            encoding_plugin=plugin if plugin in available else "",
            generate_instance_uid=False,
        )
    else:
        ds.file_meta.TransferSyntaxUID = tsyntax
    return ds


def _write_encodings(sources: dict[str, Dataset], folder: Path) -> list[Path]:
    """Every source in every transfer syntax of `_ENCODINGS` whose encoder is installed."""
    paths = []
    for suffix, tsyntax, plugin in _ENCODINGS:
        if tsyntax.is_compressed and not get_encoder(tsyntax).is_available:
            logger.warning("no encoder installed for %s: skipped", tsyntax.name)
            continue
        for name, source in sources.items():
            ds = _encoded_copy(source, name, suffix, tsyntax, plugin)
            paths.append(_save(ds, folder / f"{name}_{suffix}.dcm"))
    return paths


# --------------------------------------------------------------------------- DICOMDIR


def _close(fs: FileSet) -> None:
    """Delete the file-set's staging folder now; pydicom leaves it to the garbage collector,
    which then emits a ResourceWarning."""
    stage = getattr(fs, "_stage", {}).get("t")
    if stage is not None:
        stage.cleanup()


def _remove_old_fileset(cd: Path) -> None:
    """Delete a file-set written by an earlier run (recognised by its File-set ID)."""
    dicomdir = cd / "DICOMDIR"
    if not dicomdir.exists():
        return
    old = FileSet(dicomdir)
    _close(old)
    if old.ID != _FILESET_ID:
        raise FileExistsError(f"{dicomdir} belongs to another file-set ({old.ID!r})")
    for instance in old:
        Path(instance.path).unlink(missing_ok=True)
    dicomdir.unlink()
    for folder in sorted(cd.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _cd_copy(ds: Dataset) -> Dataset:
    """The same instance (same UIDs) losslessly transcoded to JPEG-LS, as on many patient CDs."""
    if not get_encoder(_CD_SYNTAX).is_available:
        return ds
    out = copy.deepcopy(ds)
    out.compress(_CD_SYNTAX, generate_instance_uid=False)
    return out


def _write_cd(datasets: Sequence[Dataset], cd: Path) -> list[Path]:
    """A DICOMDIR file-set in `cd` (pydicom's PTxxxxxx/… layout) holding copies of `datasets`."""
    _remove_old_fileset(cd)
    fs = FileSet()
    fs.ID = _FILESET_ID
    fs.UID = _uid("file-set")
    for ds in datasets:
        fs.add(_cd_copy(ds))
    cd.mkdir(parents=True, exist_ok=True)
    fs.write(cd.resolve())
    _close(fs)
    return [*sorted(cd / instance.FileID for instance in fs), cd / "DICOMDIR"]


# --------------------------------------------------------------------------- public entry


def _remove_stale_ct(folder: Path, keep: Sequence[Path]) -> None:
    """Remove CT_nnnn.dcm files left by an earlier run with more slices."""
    kept = {p.name for p in keep}
    for path in folder.glob("CT_[0-9][0-9][0-9][0-9].dcm"):
        if path.name not in kept:
            path.unlink()


#: Marks a folder as written by `write_samples`, so a rerun may rewrite it and nothing else.
SAMPLE_MARKER = ".dcmexport-sample"


def _check_target(root: Path) -> None:
    """Refuse to write into a folder that holds anything but an earlier sample set.

    Writing replaces files by name and removes stale CT slices: in a folder of real data
    (the default, ./dicom_data, is also `convert`'s default input) that would destroy it.
    """
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / SAMPLE_MARKER).exists():
        raise UsageError(
            f"{root} already holds files that dcmexport did not write: "
            "choose an empty or new folder with -o"
        )


def write_samples(
    directory: str | os.PathLike[str], *, ct_slices: int = 24, size: int = 512
) -> list[Path]:
    """Write the synthetic sample set (see the module docstring) and return every file path.

    `ct_slices` and `size` set the CT series' length and matrix; the other series have fixed,
    realistic sizes. The list includes the ``cd/DICOMDIR`` file (which has no pixel data).
    """
    if ct_slices < 1 or size < 16:
        raise ValueError("need ct_slices >= 1 and size >= 16")
    root = Path(directory)
    _check_target(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / SAMPLE_MARKER).write_text("written by `dcmexport sample`; safe to rewrite\n")
    try:
        written = _write_all(root, ct_slices, size)
    finally:
        _ct_layer.cache_clear()
        _us_scene.cache_clear()
    logger.info("wrote %d sample files to %s", len(written), root)
    return written


def _write_all(root: Path, ct_slices: int, size: int) -> list[Path]:
    """Write every series of the sample set under `root`."""
    ct = list(_iter_ct(root / "CT", ct_slices, size, 1, _ct_series()))
    _remove_stale_ct(root / "CT", [p for p, _ in ct])
    written = [p for p, _ in ct]
    mr = _mr_datasets()
    written += [_save(ds, root / "MR" / f"MR_{ds.InstanceNumber:04d}.dcm") for ds in mr]
    cr, xa = _cr_dataset(), _xa_dataset()
    written += [_save(cr, root / "CR" / "CR_0001.dcm"), _save(xa, root / "XA" / "XA_0001.dcm")]
    us_frames = _us_frames()
    us = _us_cine_dataset(us_frames)
    written.append(_save(us, root / "US" / "US_0001.dcm"))
    grey, velocity = _us_frame(0)
    color = root / "color"
    written += [
        _save(_palette_dataset(), color / "palette.dcm"),
        _save(_segmented_palette_dataset(grey, velocity), color / "palette_segmented.dcm"),
        _save(_ybr_dataset(us_frames[0]), color / "ybr_full_422.dcm"),
    ]
    sources = {"CT": ct[0][1], "MR": mr[0], "US": us}
    written += _write_encodings(sources, root / "encodings")
    return written + _write_cd([ds for _, ds in ct] + [cr, xa], root / "cd")
