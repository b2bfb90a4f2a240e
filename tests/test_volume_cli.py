"""`dcmexport convert --volume`: the command line end to end, checked against dcm2niix.

The volume goes where docs/cli.md says, its manifest rows have kind `volume`, and its voxel
centres and values equal dcm2niix's in world coordinates (the comparison of test_volume).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dcmexport import convert
from dcmexport.cli import main
from dcmexport.exporters.volume import LPS_TO_RAS

from .test_volume import assert_matches_oracle, dcm2niix_binary, run_dcm2niix, world_mismatch
from .volume_cases import SeriesSpec, write_enhanced_ct, write_series

nib = pytest.importorskip("nibabel")


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run(inputs: Path, out: Path, *extra: str) -> int:
    """`dcmexport convert INPUT -o OUT --video none -q -j 1 ...`: its exit status."""
    return main(
        ["convert", str(inputs), "-o", str(out), "--video", "none", "-q", "-j", "1", *extra]
    )


def volume_rows(out: Path) -> list[dict[str, str]]:
    return [r for r in manifest(out) if r["kind"] == "volume"]


def test_nifti_where_the_contract_says_and_equal_to_dcm2niix(tmp_path: Path) -> None:
    tool = dcm2niix_binary()
    series = tmp_path / "in" / "ct"
    write_series(series, SeriesSpec())
    out = tmp_path / "out"
    assert run(tmp_path / "in", out, "--volume", "nifti") == 0
    volume, sidecar = out / "ct" / "series_3.nii.gz", out / "ct" / "series_3.json"
    assert volume.is_file() and sidecar.is_file()
    (row,) = volume_rows(out)
    assert (row["output"], row["status"], row["source"]) == (
        "ct/series_3.nii.gz",
        "ok",
        str(series),
    )
    assert (row["rescale_slope"], row["rescale_intercept"]) == ("1", "-1024")
    assert "from 12 slice(s) ordered by position along the slice normal" in row["note"]
    meta = [r for r in manifest(out) if r["output"] == "ct/series_3.json"]
    assert [r["kind"] for r in meta] == ["metadata"]
    assert sum(r["kind"] == "image" for r in manifest(out)) == 12  # the stills as usual
    doc = json.loads(sidecar.read_text())
    assert doc["schema"] == "dcmexport.volume/1" and doc["shape"] == [28, 32, 12]
    assert doc["split"] == {"part": 1, "parts": 1}
    assert_matches_oracle(volume, run_dcm2niix(tool, series, tmp_path / "oracle"))


def test_npz_holds_the_same_world_as_dcm2niix(tmp_path: Path) -> None:
    tool = dcm2niix_binary()
    series = tmp_path / "in"
    write_series(series, SeriesSpec(slices=6, seed=4))
    out = tmp_path / "out"
    assert run(series, out, "--volume", "npz") == 0
    (row,) = volume_rows(out)
    assert row["output"] == "series_3.npz" and (out / "series_3.json").is_file()
    with np.load(out / "series_3.npz") as npz:
        ijk = npz["array"].T * float(npz["slope"]) + float(npz["intercept"])  # [k,j,i] → i,j,k
        ras = LPS_TO_RAS @ npz["affine"]
    (oracle,) = run_dcm2niix(tool, series, tmp_path / "oracle")
    assert world_mismatch(ijk, ras, nib.load(oracle)) is None


def test_a_gapped_series_is_split_into_claimed_parts_with_notes(tmp_path: Path) -> None:
    series = tmp_path / "in"
    write_series(series, SeriesSpec(missing=(5,)))
    # another series' slice already named like part 1: the registry gives part 1 another name
    (other,) = write_series(tmp_path / "other", SeriesSpec(slices=1, series_number=9, seed=2))
    shutil.move(other, series / "series_3_part1.dcm")
    out = tmp_path / "out"
    assert run(series, out, "--volume", "nifti") == 0
    rows = volume_rows(out)
    assert [r["output"] for r in rows] == ["series_3_part1_2.nii.gz", "series_3_part2.nii.gz"]
    assert "name collision: series_3_part1 taken" in rows[0]["note"]
    for k, (row, slices) in enumerate(zip(rows, (5, 6), strict=True), 1):
        assert f"uniform run {k} of 2" in row["note"] and row["status"] == "ok"
        doc = json.loads((out / row["output"].replace(".nii.gz", ".json")).read_text())
        assert doc["split"] == {"part": k, "parts": 2} and doc["shape"][2] == slices
        assert doc["slice_spacing_mm"] == pytest.approx(2.5)
    assert (out / "series_3_part1.png").is_file()  # the still keeps its name


def _colour(paths: list[Path]) -> None:
    """Make greyscale slices RGB (geometry kept): a colour series."""
    rng = np.random.default_rng(5)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            delattr(ds, keyword)
        ds.PixelData = rng.integers(0, 255, (ds.Rows, ds.Columns, 3), dtype=np.uint8).tobytes()
        ds.save_as(path)


def test_a_colour_series_is_refused_with_an_error_row(tmp_path: Path) -> None:
    series = tmp_path / "in"
    _colour(write_series(series, SeriesSpec(slices=3)))
    out = tmp_path / "out"
    assert run(series, out, "--volume", "nifti") == 1
    (row,) = volume_rows(out)
    assert row["status"] == "error" and row["output"] == ""
    assert "no volume from 3 slice(s): colour images (RGB)" in row["error"]
    assert sum(r["kind"] == "image" and r["status"] == "ok" for r in manifest(out)) == 3
    assert not list(out.glob("series_*"))


def test_slices_without_geometry_are_skipped_not_failed(tmp_path: Path) -> None:
    series = tmp_path / "in"
    for path in write_series(series, SeriesSpec(slices=2)):
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(path)
    out = tmp_path / "out"
    assert run(series, out, "--volume", "nifti") == 0
    (row,) = volume_rows(out)
    assert row["status"] == "skipped" and "no volume geometry" in row["error"]


def _mtimes(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and ".dcmexport" not in p.parts and p.name != "manifest.csv"
    }


def test_rerun_is_up_to_date_and_a_changed_slice_remakes_the_volume(tmp_path: Path) -> None:
    series = tmp_path / "in" / "ct"
    paths = write_series(series, SeriesSpec(slices=5))
    write_enhanced_ct(tmp_path / "in" / "enh.dcm", SeriesSpec(slices=4, series_number=7))
    out = tmp_path / "out"
    args = ("--volume", "nifti", "--series-video")
    assert main(["convert", str(tmp_path / "in"), "-o", str(out), "-q", "-j", "2", *args]) == 0
    first, rows = _mtimes(out), manifest(out)
    outputs = {r["output"] for r in rows if r["kind"] in ("volume", "series-video", "video")}
    assert outputs == {
        "ct/series_3.nii.gz",
        "ct/series_3.mp4",
        "ct/series_3.gif",
        "enh/series_7.nii.gz",
        "enh.mp4",
        "enh.gif",
    }
    assert run(tmp_path / "in", out, *args, "--video", "both") == 0
    assert _mtimes(out) == first  # nothing written again
    assert manifest(out) == rows
    later = time.time_ns() + 10**9
    os.utime(paths[2], ns=(later, later))  # a slice changed: its series is remade
    assert run(tmp_path / "in", out, *args, "--video", "both") == 0
    again = _mtimes(out)
    changed = {name for name in again if again[name] != first.get(name)}
    assert changed == {
        "ct/IM_0003.png",
        "ct/series_3.nii.gz",
        "ct/series_3.json",
        "ct/series_3.mp4",
        "ct/series_3.gif",
    }


def test_enhanced_multiframe_file_is_one_volume_in_its_folder(tmp_path: Path) -> None:
    tool = dcm2niix_binary()
    source = write_enhanced_ct(tmp_path / "in" / "e.dcm", SeriesSpec(slices=6, series_number=7))
    out = tmp_path / "out"
    assert run(source, out, "--volume", "nifti") == 0
    (row,) = volume_rows(out)
    assert row["output"] == "e/series_7.nii.gz" and row["source"] == str(source)
    assert_matches_oracle(
        out / "e" / "series_7.nii.gz", run_dcm2niix(tool, source.parent, tmp_path / "o")
    )


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_volumes(tmp_path: Path, dask_cluster: str) -> None:
    write_series(tmp_path / "in", SeriesSpec(missing=(3,), slices=8))
    local = convert([tmp_path / "in"], tmp_path / "local", jobs=1, volume="nifti", video="none")
    cluster = convert(
        [tmp_path / "in"], tmp_path / "dask", scheduler=dask_cluster, volume="nifti", video="none"
    )
    assert local.exit_code == cluster.exit_code == 0 and local.volumes == cluster.volumes == 2
    for name in ("series_3_part1", "series_3_part2"):
        ours, theirs = (nib.load(tmp_path / o / f"{name}.nii.gz") for o in ("local", "dask"))
        assert np.array_equal(ours.get_fdata(), theirs.get_fdata())
        assert np.array_equal(ours.affine, theirs.affine)
        assert (tmp_path / "local" / f"{name}.json").read_text() == (
            tmp_path / "dask" / f"{name}.json"
        ).read_text()
