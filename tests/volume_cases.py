"""Synthetic DICOM series for the volume tests and benchmark: exact, known geometry.

Each slice holds seeded noise, so a voxel's value identifies it: matching voxels by value and
by world position can only agree if the geometry is right.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_ROOT = "1.2.826.0.1.3680043.8.498.9"


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


ORIENTATIONS = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
}


def oblique_orientation() -> tuple[float, ...]:
    """Rows rotated 20° about the normal, then the plane tilted 15° about x."""
    turn = rotation("x", 15) @ rotation("z", 20)
    row, col = turn @ np.array([1.0, 0, 0]), turn @ np.array([0, 1.0, 0])
    return tuple(float(round(v, 8)) for v in (*row, *col))


@dataclasses.dataclass
class SeriesSpec:
    """How to write one synthetic series."""

    orientation: Sequence[float] = ORIENTATIONS["axial"]
    rows: int = 32
    columns: int = 28
    pixel_spacing: tuple[float, float] = (0.8, 0.7)
    slices: int = 12
    step: float = 2.5
    origin: tuple[float, float, float] = (-12.0, -15.5, 30.0)
    modality: str = "CT"
    series_number: int = 3
    missing: tuple[int, ...] = ()  # slice indices not written
    tilt_degrees: float = 0.0  # gantry tilt: slice k shifts k·step·tan(tilt) along the columns
    echoes: int = 1
    slope: float = 1.0
    intercept: float = -1024.0
    seed: int = 0


def _base(spec: SeriesSpec, series_uid: str, study_uid: str, for_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage if spec.modality == "CT" else MRImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = "20240102"
    ds.StudyTime = "101500"
    ds.Modality = spec.modality
    ds.Manufacturer = "dcmexport tests"
    ds.PatientName = "Volume^Test"
    ds.PatientID = "VOL001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = "volume test"
    ds.SliceThickness = abs(spec.step)
    ds.PixelSpacing = list(spec.pixel_spacing)
    ds.ImageOrientationPatient = [float(v) for v in spec.orientation]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    if spec.modality == "CT":
        ds.RescaleSlope, ds.RescaleIntercept = spec.slope, spec.intercept
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.GantryDetectorTilt = spec.tilt_degrees
    else:
        ds.RepetitionTime = 2000
        ds.MagneticFieldStrength = 3
    return ds


def slice_positions(spec: SeriesSpec) -> list[np.ndarray]:
    """World position of every slice's first pixel (missing slices included)."""
    row = np.asarray(spec.orientation[:3])
    col = np.asarray(spec.orientation[3:])
    normal = np.cross(row, col)
    shift = col * spec.step * np.tan(np.radians(spec.tilt_degrees))
    return [np.asarray(spec.origin) + k * (spec.step * normal + shift) for k in range(spec.slices)]


def write_series(folder: Path, spec: SeriesSpec, names: Sequence[str] | None = None) -> list[Path]:
    """Write the series; `names` (one per written slice) replaces the default file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    series_uid = generate_uid(_ROOT + ".1.", [str(dataclasses.astuple(spec)), "series"])
    study_uid = generate_uid(_ROOT + ".2.", [str(spec.seed), "study"])
    for_uid = generate_uid(_ROOT + ".3.", [str(spec.seed), "for"])
    paths: list[Path] = []
    instance = 0
    for k, position in enumerate(slice_positions(spec)):
        for echo in range(1, spec.echoes + 1):
            pixels = rng.integers(0, 3000, (spec.rows, spec.columns), dtype=np.int16)
            if k in spec.missing:
                continue
            instance += 1
            ds = _base(spec, series_uid, study_uid, for_uid)
            ds.SOPInstanceUID = generate_uid(_ROOT + ".4.", [series_uid, str(instance)])
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = instance
            ds.ImagePositionPatient = [round(float(v), 6) for v in position]
            ds.SliceLocation = round(
                float(
                    np.dot(
                        position,
                        np.cross(
                            np.asarray(spec.orientation[:3]), np.asarray(spec.orientation[3:])
                        ),
                    )
                ),
                6,
            )
            ds.AcquisitionTime = f"1016{k:02d}.{echo:02d}0000"
            if spec.modality == "MR":
                ds.EchoNumbers = echo
                ds.EchoTime = 10.0 * echo
                ds.AcquisitionNumber = 1
            ds.PixelData = pixels.tobytes()
            name = names[len(paths)] if names else f"IM_{instance:04d}.dcm"
            ds.save_as(folder / name, enforce_file_format=True)
            paths.append(folder / name)
    return paths


def write_enhanced_ct(path: Path, spec: SeriesSpec) -> Path:
    """One Enhanced CT file: every frame's position in its Per-frame Functional Groups."""
    rng = np.random.default_rng(spec.seed)
    ds = _base(spec, generate_uid(), generate_uid(), generate_uid())
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240102", "101600"
    ds.AcquisitionDateTime = "20240102101600"
    for keyword in (
        "PixelSpacing",
        "ImageOrientationPatient",
        "SliceThickness",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "GantryDetectorTilt",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = list(spec.pixel_spacing)
    measures.SliceThickness = abs(spec.step)
    orient = Dataset()
    orient.ImageOrientationPatient = [float(v) for v in spec.orientation]
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = spec.slope, spec.intercept
    transform.RescaleType = "HU"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orient])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    dim_org = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_org
    dim = Dataset()
    dim.DimensionOrganizationUID = dim_org
    dim.DimensionIndexPointer = 0x00209057  # In-Stack Position Number
    dim.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    ds.DimensionIndexSequence = DicomSequence([dim])
    positions = slice_positions(spec)
    order = list(rng.permutation(len(positions)))  # frames stored out of spatial order
    frames, per_frame = [], []
    for n, k in enumerate(order):
        frames.append(rng.integers(0, 3000, (spec.rows, spec.columns), dtype=np.int16))
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [round(float(v), 6) for v in positions[k]]
        content = Dataset()
        content.InStackPositionNumber = int(k) + 1
        content.StackID = "1"
        content.DimensionIndexValues = [int(k) + 1]
        content.FrameAcquisitionDateTime = f"20240102101600.{n:06d}"
        item.PlanePositionSequence = DicomSequence([plane])
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(frames).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
