"""`--series-video`: single-frame slices of a series become one clip, stacked along the normal."""

from __future__ import annotations

import csv
import itertools
import os
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dcmexport import convert, sample
from dcmexport.dicom.series import SliceInfo, order_slices

pytest.importorskip("av")


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def gif_means(path: Path) -> list[float]:
    with Image.open(path) as im:
        means = []
        for i in range(im.n_frames):
            im.seek(i)
            means.append(float(np.asarray(im.convert("L")).mean()))
        return means


def _info(name: str, position, orientation=(1, 0, 0, 0, 1, 0), instance=None) -> SliceInfo:
    return SliceInfo(
        source=name,
        path=name,
        series_uid="1.2.3",
        instance_uid=name,
        series_number="1",
        instance=instance,
        position=position,
        orientation=orientation,
        rows=8,
        columns=8,
        size=0,
        mtime_ns=0,
    )


def test_slices_are_ordered_along_the_normal() -> None:
    axial = [
        _info(n, (0, 0, z), instance=i) for n, z, i in [("a", 10, 1), ("b", -5, 2), ("c", 0, 3)]
    ]
    ordered, how = order_slices(axial)
    assert [s.source for s in ordered] == ["b", "c", "a"]
    assert how == "slice position along the normal"
    # sagittal: rows along y, columns along -z; the normal (row × column) is -x
    sagittal_iop = (0, 1, 0, 0, 0, -1)
    sagittal = [_info(n, (x, 0, 0), sagittal_iop) for n, x in [("p", 3), ("q", -7), ("r", 1)]]
    ordered, _ = order_slices(sagittal)
    normal = np.cross([0, 1, 0], [0, 0, -1])
    projections = [float(np.dot(normal, s.position)) for s in ordered]
    assert projections == sorted(projections) and [s.source for s in ordered] == ["p", "r", "q"]


def test_without_geometry_slices_go_by_instance_number() -> None:
    slices = [_info("x", None, instance=3), _info("y", (0, 0, 1), instance=1), _info("z", None)]
    ordered, how = order_slices(slices)
    assert [s.source for s in ordered] == ["y", "x", "z"] and how == "Instance Number"
    tilted = [_info("u", (0, 0, 0), instance=2), _info("v", (0, 0, 5), (1, 0, 0, 0, 0, 1), 1)]
    assert order_slices(tilted)[1] == "Instance Number"  # orientations differ


def _stack(folder: Path, n: int = 6, *, geometry: bool = True) -> list[Path]:
    """CT slices whose brightness grows with z, written so that neither the file names nor
    the Instance Numbers follow z."""
    paths = sample.write_ct_series(folder, n, size=32)
    order = list(range(n))
    np.random.default_rng(3).shuffle(order)
    for path, k in zip(paths, order, strict=True):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0, 0, -50 + 10 * k]
        ds.InstanceNumber = n - k if geometry else k + 1
        if not geometry:
            del ds.ImagePositionPatient
        hu = -900 + 300 * k  # HU
        stored = int((hu - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
        ds.PixelData = np.full((32, 32), stored, dtype=ds.pixel_array.dtype).tobytes()
        ds.WindowCenter, ds.WindowWidth = 0, 2000
        ds.save_as(path)
    return paths


@pytest.mark.parametrize("geometry", [True, False], ids=["by-position", "by-instance"])
def test_series_video_follows_the_anatomy(tmp_path: Path, geometry: bool) -> None:
    _stack(tmp_path / "in" / "ct", geometry=geometry)
    out = tmp_path / "out"
    summary = convert([tmp_path / "in"], out, jobs=1, series_video=True)
    assert summary.exit_code == 0 and summary.series_videos == 2
    rows = [r for r in manifest(out) if r["kind"] == "series-video"]
    assert [r["output"] for r in rows] == ["ct/series_1.mp4", "ct/series_1.gif"]
    assert rows[0]["source"] == str(tmp_path / "in" / "ct")
    how = "slice position along the normal" if geometry else "Instance Number"
    assert f"series video of 6 slices ordered by {how}" in rows[0]["note"]
    assert (rows[0]["window_center"], rows[0]["window_width"]) == ("0", "2000")  # one window
    means = gif_means(out / "ct" / "series_1.gif")
    assert len(means) == 6
    assert all(b > a + 10 for a, b in itertools.pairwise(means)), means
    assert len(list((out / "ct").glob("CT_*.png"))) == 6  # the stills as usual


def test_series_video_rerun_and_change(tmp_path: Path) -> None:
    paths = _stack(tmp_path / "in")
    out = tmp_path / "out"
    convert([tmp_path / "in"], out, jobs=2, series_video=True)
    video = out / "series_1.mp4"
    before = video.stat().st_mtime_ns
    again = convert([tmp_path / "in"], out, jobs=1, series_video=True)
    assert again.series_videos == 2 and again.up_to_date == 6
    assert video.stat().st_mtime_ns == before
    assert sum(r["kind"] == "series-video" for r in manifest(out)) == 2
    os.utime(paths[2], ns=(time.time_ns(), time.time_ns() + 10**9))  # a slice changed
    convert([tmp_path / "in"], out, jobs=1, series_video=True)
    assert video.stat().st_mtime_ns != before


def test_copies_of_one_series_make_one_video(tmp_path: Path) -> None:
    _stack(tmp_path / "in" / "a", n=3)
    _stack(tmp_path / "in" / "b", n=3)  # the same instances again (same UIDs)
    out = tmp_path / "out"
    convert([tmp_path / "in"], out, jobs=1, series_video=True, video="mp4")
    rows = [r for r in manifest(out) if r["kind"] == "series-video"]
    assert [r["output"] for r in rows] == ["a/series_1.mp4"]
    assert "3 copies of the same instances left out" in rows[0]["note"]


def test_series_video_needs_a_video_format(tmp_path: Path) -> None:
    from dcmexport.cli import main

    assert main(["convert", str(tmp_path), "--series-video", "--video", "none", "-q"]) == 2
