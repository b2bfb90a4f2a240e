"""Volumes (issue 19): geometry from headers, NIfTI/npz writing, checked against dcm2niix.

dcm2niix flips rows and splits series its own way, so the oracle comparison is in world
coordinates: every voxel centre of our volume, through our affine, must land within 1e-3 mm
of a voxel centre of one dcm2niix output (through its affine), holding the same value.
Slices hold seeded noise, so a wrong order, flip or offset cannot match by chance.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import subprocess
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dcmexport import errors
from dcmexport.dicom import geometry
from dcmexport.dicom.geometry import FourthAxis, plan_volumes
from dcmexport.exporters.volume import (
    LPS_TO_RAS,
    plan_files,
    read_headers,
    value_kind,
    volume_nbytes,
    write_volume,
)
from dcmexport.options import VolumeFormat

from .conftest import pydicom_test_files_dir
from .volume_cases import (
    ORIENTATIONS,
    SeriesSpec,
    oblique_orientation,
    slice_positions,
    write_enhanced_ct,
    write_series,
)

nib = pytest.importorskip("nibabel")
WORLD_TOLERANCE_MM = 1e-3


def dcm2niix_binary() -> str:
    """The dcm2niix binary (the `dcm2niix` PyPI wheel ships it); skip when absent."""
    found = shutil.which("dcm2niix")
    if found is None:
        try:
            import dcm2niix as wheel

            found = wheel.bin if Path(wheel.bin).exists() else None
        except ImportError:
            found = None
    if found is None:
        pytest.skip("dcm2niix is not installed: pip install dcm2niix")
    return found


@pytest.fixture(scope="session")
def dcm2niix() -> str:
    return dcm2niix_binary()


def run_dcm2niix(tool: str, source: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [tool, "-z", "y", "-b", "n", "-o", str(out), "-f", "%s_%p", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(out.glob("*.nii.gz"))


def world_mismatch(ours: np.ndarray, our_affine: np.ndarray, image) -> str | None:
    """None if every voxel of `ours` sits on a voxel centre of `image` with the same value."""
    theirs = np.asarray(image.dataobj)
    slope, inter = image.header.get_slope_inter()
    theirs = theirs * (1.0 if slope is None else slope) + (0.0 if inter is None else inter)
    if theirs.ndim == 4 and theirs.shape[3] == 1:
        theirs = theirs[..., 0]
    ijk = np.indices(ours.shape).reshape(3, -1).astype(np.float64)
    world = our_affine[:3, :3] @ ijk + our_affine[:3, 3:]
    affine = image.affine
    index = np.rint(np.linalg.solve(affine[:3, :3], world - affine[:3, 3:])).astype(int)
    inside = np.all((index >= 0) & (index < np.array(theirs.shape[:3])[:, None]), axis=0)
    if not inside.all():
        return f"{int((~inside).sum())} voxels outside"
    error = float(np.max(np.linalg.norm(affine[:3, :3] @ index + affine[:3, 3:] - world, axis=0)))
    if error > WORLD_TOLERANCE_MM:
        return f"voxel centres {error:.2e} mm apart"
    values = theirs[index[0], index[1], index[2]]
    differ = int(np.sum(values != ours.reshape(-1)))
    return f"{differ} values differ" if differ else None


def assert_matches_oracle(ours: Path, oracle_files: list[Path]) -> None:
    """Every 3-D volume in `ours` (each t of a 4-D one) equals one oracle file in world space."""
    image = nib.load(ours)
    data = np.asarray(image.get_fdata())
    volumes = [data] if data.ndim == 3 else [data[..., t] for t in range(data.shape[3])]
    for t, volume in enumerate(volumes):
        reasons = {f.name: world_mismatch(volume, image.affine, nib.load(f)) for f in oracle_files}
        assert None in reasons.values(), f"{ours.name}[t={t}]: {reasons}"


def convert(paths: list[Path], out: Path, fmt: VolumeFormat = VolumeFormat.NIFTI) -> list[Path]:
    planned = plan_files([str(p) for p in paths])
    assert not planned.refused, planned.refused
    written = []
    for plan in planned.volumes:
        stem = geometry.volume_stem(plan.identity.series_number, plan.part, plan.parts)
        written += write_volume(plan, out / stem, fmt)
    return written


def niftis(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.name.endswith(".nii.gz")]


TILT = math.degrees(math.atan(0.8 / 2.5))  # one row (0.8 mm) sideways per 2.5 mm slice

CASES = {
    "axial": SeriesSpec(),
    "sagittal": SeriesSpec(orientation=ORIENTATIONS["sagittal"]),
    "coronal": SeriesSpec(orientation=ORIENTATIONS["coronal"], step=-3.0),
    "oblique": SeriesSpec(orientation=oblique_orientation()),
    "gantry-tilt": SeriesSpec(tilt_degrees=TILT),
    "missing-slice": SeriesSpec(missing=(5,)),
    "multi-echo-mr": SeriesSpec(modality="MR", echoes=3, slices=8),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_generated_series_match_dcm2niix(name: str, tmp_path: Path, dcm2niix: str) -> None:
    spec = CASES[name]
    paths = write_series(tmp_path / "dicom", spec)
    ours = niftis(convert(paths, tmp_path / "ours"))
    # dcm2niix's resampled outputs (_Tilt_1 for tilt, _Eq_1 for the gap) lie on grids that
    # include the original voxel centres, where its values are the originals
    oracle = run_dcm2niix(dcm2niix, tmp_path / "dicom", tmp_path / "d2n")
    if name == "gantry-tilt":
        oracle = [f for f in oracle if "_Tilt_" in f.name]
    if name == "missing-slice":
        oracle = [f for f in oracle if "_Eq_" in f.name]
    assert oracle
    for path in ours:
        assert_matches_oracle(path, oracle)
        image = nib.load(path)
        assert int(image.header["sform_code"]) == int(image.header["qform_code"]) == 1
        if name != "gantry-tilt":  # the qform is the sform unless the grid is sheared
            assert np.allclose(image.get_qform(), image.get_sform(), atol=1e-4)
    expected_files = 2 if name == "missing-slice" else 1
    assert len(ours) == expected_files


def test_shuffled_file_names_and_instance_numbers(tmp_path: Path, dcm2niix: str) -> None:
    """Neither file names nor Instance Numbers follow the anatomy: position decides."""
    spec = SeriesSpec(orientation=oblique_orientation(), slices=10)
    order = np.random.default_rng(7).permutation(spec.slices)
    names = [f"{n:08x}" for n in order]  # no extension, not in slice order
    paths = write_series(tmp_path / "dicom", spec, names=names)
    instances = np.random.default_rng(8).permutation(len(paths)) + 1
    for path, instance in zip(paths, instances, strict=True):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(instance)
        ds.save_as(path)
    (ours,) = niftis(convert(paths, tmp_path / "ours"))
    assert_matches_oracle(ours, run_dcm2niix(dcm2niix, tmp_path / "dicom", tmp_path / "d2n"))
    sidecar = json.loads(ours.with_name("series_3.json").read_text())
    expected = [[round(float(v), 4) for v in p] for p in slice_positions(spec)]
    assert sidecar["slice_positions_lps"] == expected


def test_two_orientations_in_one_series(tmp_path: Path, dcm2niix: str) -> None:
    axial = SeriesSpec(slices=6)
    sagittal = dataclasses.replace(axial, orientation=ORIENTATIONS["sagittal"], seed=1)
    paths = write_series(tmp_path / "dicom", axial)
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    for n, path in enumerate(write_series(tmp_path / "other", sagittal)):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = 100 + n
        ds.save_as(tmp_path / "dicom" / f"SAG_{n}.dcm")
        paths.append(tmp_path / "dicom" / f"SAG_{n}.dcm")
    planned = plan_files([str(p) for p in paths])
    assert [p.shape for p in planned.volumes] == [(28, 32, 6), (28, 32, 6)]
    assert all("orientation" in p.notes[0] for p in planned.volumes)
    ours = niftis(convert(paths, tmp_path / "ours"))
    oracle = run_dcm2niix(dcm2niix, tmp_path / "dicom", tmp_path / "d2n")
    for path in ours:
        assert_matches_oracle(path, oracle)


def test_multi_echo_is_4d_with_the_axis_recorded(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", CASES["multi-echo-mr"])
    (plan,) = plan_files([str(p) for p in paths]).volumes
    assert plan.shape == (28, 32, 8, 3)
    assert plan.fourth_axis is FourthAxis.ECHO
    assert plan.fourth_axis_values == ("1", "2", "3")
    write_volume(plan, tmp_path / "mr", VolumeFormat.NIFTI)
    sidecar = json.loads((tmp_path / "mr.json").read_text())
    assert sidecar["fourth_axis"] == {"attribute": "EchoNumbers", "values": ["1", "2", "3"]}


def test_enhanced_multiframe_ct_matches_dcm2niix(tmp_path: Path, dcm2niix: str) -> None:
    """Frames stored out of spatial order; geometry only in the functional groups."""
    spec = SeriesSpec(orientation=oblique_orientation())
    path = write_enhanced_ct(tmp_path / "dicom" / "enhanced.dcm", spec)
    (plan,) = plan_files([str(path)]).volumes
    assert [ref.frame_index for ref in plan.slices[0]] != list(range(spec.slices))
    (ours,) = niftis(convert([path], tmp_path / "ours"))
    assert_matches_oracle(ours, run_dcm2niix(dcm2niix, tmp_path / "dicom", tmp_path / "d2n"))


def _pydicom_series() -> dict[str, list[Path]]:
    """pydicom's bundled multi-slice series (by Series Instance UID), if present locally."""
    root = pydicom_test_files_dir() / "dicomdirtests"
    series: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "ImagePositionPatient" in ds and "PixelData" in pydicom.dcmread(path):
            series[str(ds.SeriesInstanceUID)].append(path)
    return {
        f"{paths[0].parent.name}-{len(paths)}": paths for paths in series.values() if len(paths) > 1
    }


def test_pydicom_real_series_match_dcm2niix(tmp_path: Path, dcm2niix: str) -> None:
    """Real CT/MR series: uniform, gapped (CT2: one slice 200 mm away) and radial (MR700).

    Each of our volumes is compared with dcm2niix run on exactly that volume's files.
    """
    series = _pydicom_series()
    if not series:
        pytest.skip("pydicom's dicomdirtests series are not bundled")
    compared = 0
    for name, paths in series.items():
        planned = plan_files([str(p) for p in paths])
        assert not planned.refused, (name, planned.refused)
        for plan in planned.volumes:
            folder = tmp_path / name / f"part{plan.part}"
            (folder / "dicom").mkdir(parents=True)
            for t_stack in plan.slices:
                for ref in t_stack:
                    shutil.copy(ref.source, folder / "dicom" / Path(ref.source).name)
            (ours, _) = write_volume(plan, folder / "ours", VolumeFormat.NIFTI)
            assert_matches_oracle(ours, run_dcm2niix(dcm2niix, folder / "dicom", folder / "d2n"))
            compared += 1
    assert compared >= 3


def test_pydicom_gapped_ct_is_split(tmp_path: Path) -> None:
    series = {k: v for k, v in _pydicom_series().items() if k == "CT2-4"}
    if not series:
        pytest.skip("pydicom's 77654033/CT2 series is not bundled")
    (paths,) = series.values()
    planned = plan_files([str(p) for p in paths])
    assert [p.shape[2] for p in planned.volumes] == [1, 3]
    assert all("not uniform" in " ".join(p.notes) for p in planned.volumes)
    assert planned.volumes[1].slice_spacing == pytest.approx(1.25, abs=1e-4)


# --------------------------------------------------------------------------- geometry decisions


def test_gantry_tilt_keeps_the_exact_sheared_affine(tmp_path: Path) -> None:
    spec = SeriesSpec(tilt_degrees=12.0)
    paths = write_series(tmp_path / "dicom", spec)
    (plan,) = plan_files([str(p) for p in paths]).volumes
    assert plan.sheared and plan.tilt_degrees == pytest.approx(12.0, abs=1e-4)
    for k, position in enumerate(slice_positions(spec)):
        assert np.allclose(plan.affine @ [0, 0, k, 1], [*position, 1], atol=1e-4)
    write_volume(plan, tmp_path / "tilt", VolumeFormat.NIFTI)
    image = nib.load(tmp_path / "tilt.nii.gz")
    assert np.allclose(image.get_sform(), LPS_TO_RAS @ plan.affine, atol=1e-4)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    qform = image.get_qform()
    assert np.allclose(qform[:3, :2], image.get_sform()[:3, :2], atol=1e-4)
    assert abs(float(np.dot(qform[:3, 2], qform[:3, 0]))) < 1e-4  # rigid: no shear
    sidecar = json.loads((tmp_path / "tilt.json").read_text())
    assert sidecar["tilt"]["sheared"] is True
    assert "sheared" in sidecar["tilt"]["handling"]


def test_missing_slice_splits_into_uniform_runs(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", SeriesSpec(missing=(4,)))
    planned = plan_files([str(p) for p in paths])
    assert [p.shape[2] for p in planned.volumes] == [4, 7]
    assert [(p.part, p.parts) for p in planned.volumes] == [(1, 2), (2, 2)]
    for plan in planned.volumes:
        assert plan.slice_spacing == pytest.approx(2.5)
        assert plan.max_position_error_mm < 1e-6
    assert geometry.volume_stem("3", 2, 2) == "series_3_part2"
    assert geometry.volume_stem("3", 1, 1) == "series_3"


def test_slices_at_one_position_without_an_axis_are_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "a", SeriesSpec(slices=3))
    headers = read_headers([str(p) for p in paths])
    for _, ds in headers:
        del ds.AcquisitionTime
    twin = copy.deepcopy(headers[0][1])
    twin.InstanceNumber = 99
    planned = plan_volumes([*headers, ("twin", twin)])
    assert not planned.volumes
    (refusal,) = planned.refused
    assert "share a position" in refusal.reason
    assert isinstance(refusal.error(), errors.VolumeError)


def test_colour_series_is_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", SeriesSpec(slices=3))
    headers = read_headers([str(p) for p in paths])
    for _, ds in headers:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
    planned = plan_volumes(headers)
    assert not planned.volumes
    (refusal,) = planned.refused
    assert refusal.colour and isinstance(refusal.error(), errors.ColourVolumeError)
    assert "colour" in str(refusal.error())
    # a plan that reaches the writer with colour pixels is refused there too
    (plan,) = plan_files([str(p) for p in paths]).volumes
    rgb = dataclasses.replace(plan, photometric_interpretation="RGB")
    with pytest.raises(errors.ColourVolumeError):
        write_volume(rgb, tmp_path / "rgb", VolumeFormat.NIFTI)
    assert not list(tmp_path.glob("rgb*"))


# --------------------------------------------------------------------------- values and files


def test_stored_values_with_exact_scaling_else_float32(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", SeriesSpec(slices=4))
    (plan,) = plan_files([str(p) for p in paths]).volumes
    kind, dtype, scaling = value_kind(plan)
    assert (kind.name, dtype, scaling) == ("STORED", np.dtype(np.int16), (1.0, -1024.0))
    # a slope float32 cannot hold, or slopes that differ per slice: float32 modality values
    ds = pydicom.dcmread(paths[1])
    ds.RescaleSlope = "0.1"
    ds.save_as(paths[1])
    (plan,) = plan_files([str(p) for p in paths]).volumes
    assert value_kind(plan)[0].name == "MODALITY"
    write_volume(plan, tmp_path / "mixed", VolumeFormat.NIFTI)
    image = nib.load(tmp_path / "mixed.nii.gz")
    assert image.get_data_dtype() == np.float32
    stored = pydicom.dcmread(paths[1]).pixel_array
    assert np.allclose(np.asarray(image.dataobj)[:, :, 1], (stored * 0.1 - 1024).T, atol=1e-3)


def test_npz_geometry_is_lps_and_matches_the_nifti(tmp_path: Path) -> None:
    spec = SeriesSpec(orientation=oblique_orientation(), slices=5)
    paths = write_series(tmp_path / "dicom", spec)
    (plan,) = plan_files([str(p) for p in paths]).volumes
    write_volume(plan, tmp_path / "v", VolumeFormat.NIFTI)
    (npz_path, _) = write_volume(plan, tmp_path / "v", VolumeFormat.NPZ)
    data = np.load(npz_path)
    image = nib.load(tmp_path / "v.nii.gz")
    assert data["array"].shape == (5, 32, 28)  # k, j, i
    modality = data["array"] * data["slope"] + data["intercept"]
    assert np.array_equal(modality.T, image.get_fdata())
    assert np.allclose(LPS_TO_RAS @ data["affine"], image.affine, atol=1e-4)
    assert np.allclose(data["origin"], spec.origin)
    assert np.allclose(data["spacing"], [0.7, 0.8, 2.5])
    direction = data["direction"]
    assert np.allclose(direction @ np.diag(data["spacing"]), data["affine"][:3, :3])
    # voxel (i, j, k) = array[k, j, i] lies at the slice's own DICOM position formula
    first = pydicom.dcmread(paths[0])
    assert np.allclose(data["affine"] @ [0, 0, 0, 1], [*first.ImagePositionPatient, 1])


def test_sidecar_contents_and_deidentified_form(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", SeriesSpec(slices=3))
    (plan,) = plan_files([str(p) for p in paths]).volumes
    write_volume(plan, tmp_path / "full", VolumeFormat.NIFTI)
    write_volume(plan, tmp_path / "anon", VolumeFormat.NIFTI, deidentify=True)
    full = json.loads((tmp_path / "full.json").read_text())
    anon = json.loads((tmp_path / "anon.json").read_text())
    first = pydicom.dcmread(paths[0])
    assert full["schema"] == "dcmexport.volume/1"
    assert full["series_instance_uid"] == first.SeriesInstanceUID
    assert full["modality"] == "CT" and full["shape"] == [28, 32, 3]
    assert full["voxel_size_mm"] == [0.7, 0.8, 2.5]
    assert full["acquisition_times"] == [["101600.010000", "101601.010000", "101602.010000"]]
    assert full["values"]["scl_inter"] == -1024.0
    assert full["tilt"]["sheared"] is False and full["split"] == {"part": 1, "parts": 1}
    text = (tmp_path / "full.json").read_text() + (tmp_path / "anon.json").read_text()
    for phi in ("Volume^Test", "VOL001", "19700101", "20240102"):
        assert phi not in text
    for key in ("series_instance_uid", "study_instance_uid", "acquisition_times"):
        assert key not in anon


@pytest.mark.parametrize("fmt", [VolumeFormat.NIFTI, VolumeFormat.NPZ], ids=["nifti", "npz"])
def test_volume_is_assembled_in_one_preallocated_array(tmp_path: Path, fmt: VolumeFormat) -> None:
    """Python-level peak ≈ one volume + a few slices: no list of slices, no stacked copy, and
    the writers stream the array (the compressors' own buffers are a constant < 1 MiB)."""
    spec = SeriesSpec(rows=96, columns=96, slices=40)
    paths = write_series(tmp_path / "dicom", spec)
    (plan,) = plan_files([str(p) for p in paths]).volumes
    volume = volume_nbytes(plan)
    slice_bytes = spec.rows * spec.columns * 2
    write_volume(plan, tmp_path / "warm", fmt)  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        write_volume(plan, tmp_path / "v", fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume == 96 * 96 * 40 * 2
    assert peak < volume + 12 * slice_bytes + (1 << 20), (peak, volume)


def test_none_format_writes_nothing(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "dicom", SeriesSpec(slices=2))
    (plan,) = plan_files([str(p) for p in paths]).volumes
    assert write_volume(plan, tmp_path / "x", VolumeFormat.NONE) == []
    assert not list(tmp_path.glob("x*"))


@pytest.mark.parametrize(
    ("positions", "runs"),
    [
        ([0, 1, 2, 3, 4], [(0, 5)]),
        ([0, 1, 2, 4, 5, 6], [(0, 3), (3, 6)]),  # one missing slice
        ([0, 1, 2, 3, 5, 7, 9], [(0, 4), (4, 7)]),  # change of step
        ([-99.48, 103.02, 104.27, 105.52], [(0, 1), (1, 4)]),  # pydicom's CT2
        ([0, 1.004, 2.0, 2.997], [(0, 4)]),  # DS rounding jitter stays one run
        ([7.5], [(0, 1)]),
    ],
)
def test_uniform_runs(positions: list[float], runs: list[tuple[int, int]]) -> None:
    stack = [np.array([0.0, 0.0, z]) for z in positions]
    assert geometry._uniform_runs(stack) == runs
