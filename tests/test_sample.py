"""`dcmexport sample`: the synthetic data set is valid Part 10, decodes, and looks like anatomy.

The set is written once per module (20 CT slices of 256² for speed); the 512² default is
checked with a single `write_ct_series` slice.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import (
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

from dcmexport.sample import SAMPLE_MARKER, write_ct_series, write_samples

from .conftest import SAMPLE_CT_SIZE, SAMPLE_CT_SLICES

CT_SLICES, CT_SIZE = SAMPLE_CT_SLICES, SAMPLE_CT_SIZE
ENCODINGS = {
    "jpegls_lossless": JPEGLSLossless,
    "j2k_lossless": JPEG2000Lossless,
    "rle_lossless": RLELossless,
    "deflated": DeflatedExplicitVRLittleEndian,
    "big_endian": ExplicitVRBigEndian,
}
ENCODING_SOURCES = {"CT": "CT/CT_0001.dcm", "MR": "MR/MR_0001.dcm", "US": "US/US_0001.dcm"}


@pytest.fixture(scope="module")
def written(sample_set: tuple[Path, list[Path]]) -> tuple[Path, list[Path]]:
    return sample_set


@pytest.fixture(scope="module")
def root(written: tuple[Path, list[Path]]) -> Path:
    return written[0]


@pytest.fixture(scope="module")
def images(written: tuple[Path, list[Path]]) -> list[Path]:
    """Every written file except the DICOMDIR (which has no pixel data)."""
    return [p for p in written[1] if p.name != "DICOMDIR"]


def read(path: Path) -> pydicom.FileDataset:
    return pydicom.dcmread(path)


def ct_series(root: Path) -> list[pydicom.FileDataset]:
    return [read(p) for p in sorted((root / "CT").glob("CT_*.dcm"))]


def lag1_correlation(image: np.ndarray) -> float:
    """Correlation of horizontally adjacent pixels: ~0 for noise, near 1 for smooth anatomy."""
    a = image.astype(np.float64)
    return float(np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1])


# --------------------------------------------------------------------------- layout & format


def test_layout(written: tuple[Path, list[Path]]) -> None:
    root, paths = written
    rel = {p.relative_to(root).as_posix() for p in paths}
    assert len(rel) == len(paths)
    assert all(p.is_file() for p in paths)
    expected = {f"CT/CT_{i:04d}.dcm" for i in range(1, CT_SLICES + 1)}
    expected |= {f"MR/MR_{i:04d}.dcm" for i in range(1, 6)}
    expected |= {"CR/CR_0001.dcm", "XA/XA_0001.dcm", "US/US_0001.dcm", "cd/DICOMDIR"}
    expected |= {f"color/{n}.dcm" for n in ("palette", "palette_segmented", "ybr_full_422")}
    expected |= {f"encodings/{s}_{e}.dcm" for s in ENCODING_SOURCES for e in ENCODINGS}
    assert expected <= rel
    assert {r for r in rel - expected if not r.startswith("cd/PT")} == set()


def test_defaults_are_a_realistic_ct() -> None:
    params = inspect.signature(write_samples).parameters
    assert params["ct_slices"].default >= 20
    assert params["size"].default == 512
    assert inspect.signature(write_ct_series).parameters["size"].default == 512


def test_default_ct_slice_is_512(tmp_path: Path) -> None:
    (path,) = write_ct_series(tmp_path, 1)
    ds = read(path)
    assert path.name == "CT_0001.dcm"
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert ds.pixel_array.shape == (512, 512)


def test_every_file_is_part10_and_decodes(images: list[Path]) -> None:
    study_uids = set()
    for path in images:
        with path.open("rb") as f:
            assert f.read(132)[128:] == b"DICM", path
        ds = read(path)
        meta = ds.file_meta
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID, path
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, path
        assert meta.ImplementationClassUID.is_valid, path
        assert ds.SOPInstanceUID.is_valid and ds.SeriesInstanceUID.is_valid, path
        assert str(ds.PatientName) == "Sample^Patient" and ds.PatientID == "SAMPLE001"
        assert ds.StudyDate and ds.Modality
        study_uids.add(ds.StudyInstanceUID)
        arr = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1))
        shape = ((frames,) if frames > 1 else ()) + (ds.Rows, ds.Columns)
        shape += (3,) if ds.SamplesPerPixel == 3 else ()
        assert arr.shape == shape, path
    assert len(study_uids) == 1


def test_sop_classes(root: Path) -> None:
    expected = {
        "CT/CT_0001.dcm": (CTImageStorage, "CT"),
        "MR/MR_0001.dcm": (MRImageStorage, "MR"),
        "CR/CR_0001.dcm": (ComputedRadiographyImageStorage, "CR"),
        "XA/XA_0001.dcm": (XRayAngiographicImageStorage, "XA"),
        "US/US_0001.dcm": (UltrasoundMultiFrameImageStorage, "US"),
        "color/palette.dcm": (SecondaryCaptureImageStorage, "OT"),
        "color/palette_segmented.dcm": (UltrasoundImageStorage, "US"),
        "color/ybr_full_422.dcm": (UltrasoundImageStorage, "US"),
    }
    for rel, (sop_class, modality) in expected.items():
        ds = read(root / rel)
        assert (ds.SOPClassUID, ds.Modality) == (sop_class, modality), rel
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, rel


def test_uids_are_unique_outside_the_cd(images: list[Path], root: Path) -> None:
    outside = [p for p in images if "cd" not in p.relative_to(root).parts]
    uids = [read(p).SOPInstanceUID for p in outside]
    assert len(set(uids)) == len(uids)


def test_images_are_smooth_anatomy_not_noise(root: Path) -> None:
    assert lag1_correlation(read(root / "CT/CT_0010.dcm").pixel_array) > 0.9
    assert lag1_correlation(read(root / "MR/MR_0003.dcm").pixel_array) > 0.9
    assert lag1_correlation(read(root / "CR/CR_0001.dcm").pixel_array) > 0.9
    assert lag1_correlation(read(root / "XA/XA_0001.dcm").pixel_array[-1]) > 0.9
    assert lag1_correlation(read(root / "US/US_0001.dcm").pixel_array[0, ..., 1]) > 0.5


# --------------------------------------------------------------------------- modalities


def test_ct_pixel_module(root: Path) -> None:
    for ds in ct_series(root):
        assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
        assert (ds.BitsStored, ds.HighBit) == (16, 15)
        assert ds.pixel_array.dtype == np.int16
        assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, -1024)
        assert list(ds.WindowCenter) == [40, -600]
        assert list(ds.WindowWidth) == [400, 1500]
        assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "LUNG"]


def test_ct_padding_is_signed_and_used(root: Path) -> None:
    ds = read(root / "CT/CT_0001.dcm")
    assert ds["PixelPaddingValue"].VR == "SS"
    padding = ds.PixelPaddingValue
    assert padding < 0
    arr = ds.pixel_array
    assert arr[0, 0] == arr[-1, -1] == padding  # corners lie outside the circular FOV
    centre = arr[CT_SIZE // 2 - 20 : CT_SIZE // 2 + 20, CT_SIZE // 2 - 20 : CT_SIZE // 2 + 20]
    assert not np.any(centre == padding)
    assert 0.1 < np.mean(arr == padding) < 0.3  # 1 - pi/4 of the square, roughly


def test_ct_geometry(root: Path) -> None:
    series = ct_series(root)
    assert [ds.InstanceNumber for ds in series] == list(range(1, CT_SLICES + 1))
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in series])
    assert np.allclose(np.diff(z), float(series[0].SliceThickness))
    for ds, zz in zip(series, z, strict=True):
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.SliceLocation) == pytest.approx(zz)
        assert float(ds.PixelSpacing[0]) * CT_SIZE == pytest.approx(420, rel=1e-3)
        x0 = float(ds.ImagePositionPatient[0])
        assert x0 == pytest.approx(-(CT_SIZE - 1) / 2 * float(ds.PixelSpacing[1]), abs=1e-3)


def test_ct_hounsfield_ranges(root: Path) -> None:
    ds = read(root / f"CT/CT_{CT_SLICES // 2:04d}.dcm")
    arr = ds.pixel_array
    hu = apply_modality_lut(arr, ds)[arr != ds.PixelPaddingValue]

    def share(lo: float, hi: float) -> float:
        return float(np.mean((hu >= lo) & (hu <= hi)))

    assert share(-1050, -950) > 0.10  # air around the body
    assert share(-900, -750) > 0.02  # lung
    assert share(-130, -60) > 0.01  # fat
    assert share(20, 70) > 0.05  # soft tissue
    assert share(700, 2000) > 0.001  # cortical bone
    assert hu.min() >= -1024


def test_write_ct_series_chunks_join_up(tmp_path: Path, root: Path) -> None:
    paths = write_ct_series(tmp_path, 2, size=CT_SIZE, start_instance=5)
    assert [p.name for p in paths] == ["CT_0005.dcm", "CT_0006.dcm"]
    chunk, full = read(paths[0]), read(root / "CT/CT_0005.dcm")
    assert chunk.InstanceNumber == 5
    assert chunk.SOPInstanceUID == full.SOPInstanceUID
    assert chunk.ImagePositionPatient == full.ImagePositionPatient
    assert np.array_equal(chunk.pixel_array, full.pixel_array)


def test_write_ct_series_custom_series_uid(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, 2, size=64, series_uid="1.2.826.0.1.3680043.10.1")
    a, b = (read(p) for p in paths)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID == "1.2.826.0.1.3680043.10.1"
    assert a.SOPInstanceUID != b.SOPInstanceUID
    default = read(write_ct_series(tmp_path / "default", 1, size=64)[0])
    assert default.SOPInstanceUID != a.SOPInstanceUID


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = write_ct_series(tmp_path / "a", 2, size=64)
    second = write_ct_series(tmp_path / "b", 2, size=64)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_samples(tmp_path, ct_slices=0)
    with pytest.raises(ValueError):
        write_ct_series(tmp_path, 1, size=4)


def test_mr_is_12_bit(root: Path) -> None:
    for path in sorted((root / "MR").glob("MR_*.dcm")):
        ds = read(path)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
        assert ds.PixelRepresentation == 0 and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.WindowCenter and ds.WindowWidth
        arr = ds.pixel_array
        assert arr.max() <= 4095 and arr.max() > 2000


def test_cr_monochrome1_with_voi_lut(root: Path) -> None:
    ds = read(root / "CR/CR_0001.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert (ds.BitsStored, ds.PixelRepresentation) == (12, 0)
    item = ds.VOILUTSequence[0]
    assert list(item.LUTDescriptor) == [4096, 0, 12]
    assert item.LUTExplanation
    lut = np.asarray(item.LUTData)
    assert lut.size == 4096 and np.all(np.diff(lut) >= 0) and lut[-1] > 4000
    assert ds.WindowCenter and ds.WindowWidth
    shown = apply_voi_lut(ds.pixel_array, ds)
    assert shown.min() >= 0 and shown.max() <= 4095 and shown.std() > 500


def test_xa_cine_brightens(root: Path) -> None:
    ds = read(root / "XA/XA_0001.dcm")
    assert ds.NumberOfFrames == 30
    assert ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == pytest.approx(66.67) and ds.CineRate == 15
    assert (ds.BitsAllocated, ds.PhotometricInterpretation) == (8, "MONOCHROME2")
    means = ds.pixel_array.reshape(30, -1).mean(axis=1)
    assert np.all(np.diff(means) > 0)
    assert means[-1] - means[0] > 2


def test_us_rgb_cine(root: Path) -> None:
    ds = read(root / "US/US_0001.dcm")
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.PlanarConfiguration == 0 and ds.NumberOfFrames == 20
    assert ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == pytest.approx(33.33)
    assert ds.RecommendedDisplayFrameRate == 30
    rgb = ds.pixel_array.astype(int)
    red = (rgb[..., 0] > rgb[..., 1] + 60) & (rgb[..., 0] > rgb[..., 2] + 60)
    blue = (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 1] + 60)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2]) & (rgb[..., 0] > 40)
    assert red.mean() > 0.005 and blue.mean() > 0.002 and grey.mean() > 0.2


# --------------------------------------------------------------------------- colour


def test_palette_color(root: Path) -> None:
    ds = read(root / "color/palette.dcm")
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert list(ds.RedPaletteColorLookupTableDescriptor) == [256, 0, 16]
    assert len(ds.RedPaletteColorLookupTableData) == 512
    rgb = apply_color_lut(ds.pixel_array, ds)
    assert rgb.shape == (ds.Rows, ds.Columns, 3) and rgb.dtype == np.uint16
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50


def test_segmented_palette_reads_back(root: Path) -> None:
    ds = read(root / "color/palette_segmented.dcm")
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert "RedPaletteColorLookupTableData" not in ds  # only the segmented form
    assert "SegmentedRedPaletteColorLookupTableData" in ds
    lut = apply_color_lut(np.arange(256, dtype=np.uint8), ds).astype(int)
    assert lut.shape == (256, 3)
    assert lut[0].tolist() == [0, 0, 0] and lut[191].tolist() == [65535] * 3
    assert np.all(lut[:192, 0] == lut[:192, 1]) and np.all(np.diff(lut[:192, 0]) > 0)
    assert lut[192].tolist() == [32768, 0, 0] and lut[223].tolist() == [65535, 32768, 0]
    assert lut[224].tolist() == [0, 0, 32768] and lut[255].tolist() == [0, 32768, 65535]
    index = ds.pixel_array
    assert np.any(index < 192) and np.any((index >= 192) & (index < 224)) and np.any(index >= 224)


def test_ybr_full_422_decodes_close_to_rgb_source(root: Path) -> None:
    ds = read(root / "color/ybr_full_422.dcm")
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.SamplesPerPixel == 3 and ds.PlanarConfiguration == 0
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2  # Y1 Y2 Cb Cr per pixel pair
    source = read(root / "US/US_0001.dcm").pixel_array[0].astype(int)
    decoded = ds.pixel_array.astype(int)  # pydicom returns RGB
    assert decoded.shape == source.shape
    assert np.abs(decoded - source).mean() < 3


# --------------------------------------------------------------------------- encodings & CD


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("name", sorted(ENCODING_SOURCES))
def test_encoded_copy_is_lossless(root: Path, name: str, encoding: str) -> None:
    source = read(root / ENCODING_SOURCES[name])
    copy = read(root / "encodings" / f"{name}_{encoding}.dcm")
    assert copy.file_meta.TransferSyntaxUID == ENCODINGS[encoding]
    assert copy.SOPInstanceUID != source.SOPInstanceUID
    assert copy.SeriesInstanceUID != source.SeriesInstanceUID
    assert copy.PhotometricInterpretation == source.PhotometricInterpretation
    assert np.array_equal(copy.pixel_array, source.pixel_array)


def test_big_endian_pixel_words_are_swapped(root: Path) -> None:
    source = read(root / "CT/CT_0001.dcm")
    copy = read(root / "encodings/CT_big_endian.dcm")
    assert copy["PixelPaddingValue"].VR == "SS"
    assert copy.PixelPaddingValue == source.PixelPaddingValue
    assert copy.PixelData == np.frombuffer(source.PixelData, "<i2").astype(">i2").tobytes()


def test_dicomdir_references_existing_files(root: Path) -> None:
    fs = FileSet(root / "cd" / "DICOMDIR")
    assert fs.ID == "DCMEXPORT"
    assert len(fs) == CT_SLICES + 2
    originals = {
        read(p).SOPInstanceUID: p
        for p in [*sorted((root / "CT").glob("*.dcm")), root / "CR/CR_0001.dcm"]
    }
    originals[read(root / "XA/XA_0001.dcm").SOPInstanceUID] = root / "XA/XA_0001.dcm"
    for instance in fs:
        path = Path(instance.path)
        assert path.is_file()
        ds = instance.load()
        source = read(originals[ds.SOPInstanceUID])
        assert np.array_equal(ds.pixel_array, source.pixel_array)
    assert {ds.Modality for ds in (i.load() for i in fs)} == {"CT", "CR", "XA"}


def test_dcmdump_parses_every_file(written: tuple[Path, list[Path]]) -> None:
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        pytest.skip("DCMTK's dcmdump is not installed")
    for path in written[1]:
        result = subprocess.run([dcmdump, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, (path, result.stderr)
        problems = [line for line in result.stderr.splitlines() if line[:2] in ("E:", "W:")]
        assert problems == [], (path, problems)


@pytest.mark.slow
def test_rerun_is_identical_and_removes_stale_slices(
    tmp_path: Path, written: tuple[Path, list[Path]]
) -> None:
    root, paths = written
    again = write_samples(tmp_path, ct_slices=CT_SLICES, size=CT_SIZE)
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(root) for p in paths]
    for a, b in zip(paths, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    fewer = write_samples(tmp_path, ct_slices=CT_SLICES - 2, size=CT_SIZE)
    on_disk = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == {*fewer, tmp_path / SAMPLE_MARKER}
    assert len(FileSet(tmp_path / "cd" / "DICOMDIR")) == CT_SLICES


def test_sample_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    """`dcmexport sample` replaces files by name: never in a folder of someone's own data."""
    from dcmexport.errors import UsageError

    target = tmp_path / "dicom_data"
    (target / "CT").mkdir(parents=True)
    precious = target / "CT" / "CT_0030.dcm"
    precious.write_bytes(b"real data")
    with pytest.raises(UsageError, match="did not write"):
        write_samples(target, ct_slices=2, size=64)
    assert precious.read_bytes() == b"real data"
    assert not (target / "MR").exists()


def test_sample_may_rewrite_its_own_folder(tmp_path: Path) -> None:
    write_samples(tmp_path / "s", ct_slices=2, size=64)
    assert write_samples(tmp_path / "s", ct_slices=2, size=64)  # no error the second time
