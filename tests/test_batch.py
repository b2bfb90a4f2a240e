"""The batch engine: same outputs from every scheduler, resume after kill -9, a complete
manifest, and what makes an earlier output up to date."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcmexport.engine.batch import convert
from dcmexport.sample import write_ct_series

from .conftest import pydicom_file


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def images(out: Path) -> dict[str, bytes]:
    """Every written image, by path relative to OUT (dcmexport's own folder excluded)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.suffix in {".png", ".jpg", ".tiff"} and ".dcmexport" not in p.parts
    }


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 CT slices plus a multi-frame, a non-DICOM and a broken file."""
    folder = tmp_path_factory.mktemp("series")
    write_ct_series(folder / "ct", 40, size=128)
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), folder / "cine.dcm")
    shutil.copy(pydicom_file("JPEG2000-embedded-sequence-delimiter.dcm"), folder / "broken.dcm")
    (folder / "notes.txt").write_text("hello")
    return folder


def test_one_and_two_workers_write_identical_outputs(series: Path, tmp_path: Path) -> None:
    one = convert([series], tmp_path / "j1", jobs=1, frames="all")
    two = convert([series], tmp_path / "j2", jobs=2, frames="all")
    assert (one.converted, one.skipped, one.failed) == (two.converted, two.skipped, two.failed)
    assert (one.converted, one.skipped, one.failed) == (41, 1, 1)
    assert images(tmp_path / "j1") == images(tmp_path / "j2")
    assert manifest(tmp_path / "j1") == manifest(tmp_path / "j2")  # discovery order, not timing


def test_rerun_skips_what_is_up_to_date(series: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = convert([series], out, jobs=2, frames="all")
    assert first.exit_code == 1  # the broken file
    first_manifest = manifest(out)
    again = convert([series], out, jobs=2, frames="all")
    assert again.up_to_date == 41 and again.converted == 0
    assert again.failed == 1  # failures are retried, and fail again
    assert manifest(out) == first_manifest  # the rerun's manifest still lists every input
    changed = convert([series], out, jobs=2, frames="all", bits=16)  # other options: redo all
    assert changed.converted == 41 and changed.up_to_date == 0
    forced = convert([series], out, jobs=1, frames="all", bits=16, overwrite=True)
    assert forced.converted == 41


def test_changed_or_deleted_outputs_are_redone(series: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(series / "ct", src)
    out = tmp_path / "out"
    convert([src], out, jobs=1)
    (out / "CT_0003.png").unlink()
    slice5 = src / "CT_0005.dcm"
    os.utime(slice5, ns=(time.time_ns(), time.time_ns() + 10**9))  # input modified
    rerun = convert([src], out, jobs=1)
    assert (rerun.converted, rerun.up_to_date) == (2, 38)
    assert (out / "CT_0003.png").is_file()


def test_every_input_is_in_the_manifest_once(series: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert([series], out, jobs=2)
    sources = [r["source"] for r in manifest(out)]
    found = [str(p) for p in sorted(series.rglob("*")) if p.is_file()]
    assert sorted(set(sources)) == sorted(found)
    # one row per single-frame file; the cine has two (its MP4 and its GIF)
    assert len(sources) == len(found) + 1
    assert sorted(
        r["output"].rpartition(".")[2] for r in manifest(out) if r["kind"] == "video"
    ) == [
        "gif",
        "mp4",
    ]


def _count_pngs(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.png") if ".dcmexport" not in p.parts)


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path: Path) -> None:
    """Killed at ~40 %, the rerun exits 0 with exactly one decodable PNG per input."""
    src = tmp_path / "in"
    n = 400
    write_ct_series(src, n, size=256)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dcmexport", "convert", str(src), "-o", str(out), "-q"]
    victim = subprocess.Popen([*cmd, "-j", "2"], start_new_session=True)
    deadline = time.monotonic() + 60
    while _count_pngs(out) < 0.4 * n and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    done_before = _count_pngs(out)
    assert 0 < done_before < n

    started = time.monotonic()
    rerun = subprocess.run([*cmd, "-j", "2"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - started < 60

    pngs = sorted(p for p in out.rglob("*") if p.is_file() and ".dcmexport" not in p.parts)
    expected = [*sorted(out / f"CT_{i:04d}.png" for i in range(1, n + 1)), out / "manifest.csv"]
    assert pngs == expected  # no stray or temporary files, one PNG per input
    for png in pngs[:-1:37]:
        assert np.asarray(Image.open(png)).shape == (256, 256)
    rows = manifest(out)
    assert [Path(r["source"]).name for r in rows] == [f"CT_{i:04d}.dcm" for i in range(1, n + 1)]
    assert all(r["status"] == "ok" for r in rows)
    assert not any((out / ".dcmexport" / "tmp").iterdir())


@pytest.mark.slow
def test_dask_cluster_writes_the_same_files(
    series: Path, tmp_path: Path, dask_cluster: str
) -> None:
    convert([series], tmp_path / "local", jobs=2, frames="all")
    local = images(tmp_path / "local")
    cluster = convert([series], tmp_path / "dask", scheduler=dask_cluster, frames="all")
    assert (cluster.converted, cluster.skipped, cluster.failed) == (41, 1, 1)
    assert manifest(tmp_path / "dask") == manifest(tmp_path / "local")
    first = images(tmp_path / "dask")
    assert set(first) == set(local)
    differing = sorted(k for k in local if first[k] != local[k])
    for name in differing:
        # ISA-L's level-1 deflate has, rarely, written another (valid) stream for the same
        # scanlines in a long-lived Dask worker: one PNG in ~15 full-suite runs, the pixels,
        # IHDR and zlib checksum the same, the deflate body and so the chunk CRC not. Its
        # pixels must be the local run's exactly; the mismatch stays visible as a warning.
        ours, theirs = Image.open(tmp_path / "dask" / name), Image.open(tmp_path / "local" / name)
        assert (ours.mode, ours.size) == (theirs.mode, theirs.size), name
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=name)
    if differing:
        warnings.warn(f"Dask and local deflate streams differ in {differing}", stacklevel=1)
    assert len(differing) <= 1, differing  # more than a rare stream difference is a bug


@pytest.mark.slow
def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path, capsys, monkeypatch) -> None:
    pytest.importorskip("distributed")
    from dcmexport.cli import main
    from dcmexport.engine import executor

    monkeypatch.setattr(executor, "DASK_CONNECT_TIMEOUT", "1s")  # not the default 10 s

    code = main(
        [
            "convert",
            str(pydicom_file("CT_small.dcm")),
            "-o",
            str(tmp_path / "o"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler" in err and "Traceback" not in err


def test_resume_never_reuses_another_inputs_output(tmp_path: Path) -> None:
    """Run 1 writes a/x.dcm → x.png; run 2 with b/x.dcm first gives x.png to b: a is redone."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "x.dcm", tmp_path / "b" / "x.dcm"
    shutil.copy(pydicom_file("CT_small.dcm"), a)
    shutil.copy(pydicom_file("MR_small.dcm"), b)
    out = tmp_path / "out"
    convert([a], out, jobs=1)
    second = convert([b, a], out, jobs=1)
    assert (second.converted, second.up_to_date) == (2, 0)
    rows = {Path(r["source"]).parent.name: r["output"] for r in manifest(out)}
    assert rows == {"b": "x.png", "a": "x_2.png"}
    assert Image.open(out / "x.png").size == (64, 64)  # MR_small
    assert Image.open(out / "x_2.png").size == (128, 128)  # CT_small


def test_an_output_replaced_by_another_input_is_redone(tmp_path: Path) -> None:
    """ra/1.dcm → 1.png; then rb/1.dcm alone overwrites 1.png; ra again must not trust it."""
    (tmp_path / "ra").mkdir()
    (tmp_path / "rb").mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ra" / "1.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), tmp_path / "rb" / "1.dcm")
    out = tmp_path / "out"
    convert([tmp_path / "ra"], out, jobs=1)
    convert([tmp_path / "rb"], out, jobs=1)
    again = convert([tmp_path / "ra"], out, jobs=1)
    assert (again.converted, again.up_to_date) == (1, 0)
    assert Image.open(out / "1.png").size == (128, 128)  # CT_small again


def test_an_unreadable_input_is_an_error_and_retried(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "a.dcm")
    out = tmp_path / "out"
    import dcmexport.dicom.decoding as decoding
    import dcmexport.dicom.plainread as plainread
    import dcmexport.engine.replay as replay

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # as root, chmod does not stop reads: every `open` in the reading modules fails instead
    for module in (decoding, plainread, replay):
        monkeypatch.setattr(module, "open", denied, raising=False)
    first = convert([src], out, jobs=1)
    assert (first.failed, first.exit_code) == (1, 1)
    assert "Permission denied" in manifest(out)[0]["error"]
    for module in (decoding, plainread, replay):
        monkeypatch.delattr(module, "open")
    assert convert([src], out, jobs=1).converted == 1  # not cached as "not DICOM"


def test_the_same_file_given_twice_is_converted_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "a.dcm")
    out = tmp_path / "out"
    summary = convert([src, src / "a.dcm"], out, jobs=1)
    assert summary.converted == 1
    assert [r["output"] for r in manifest(out)] == ["a.png"]
    assert sorted(images(out)) == ["a.png"]


def test_changed_options_remove_outputs_the_new_run_does_not_make(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "a.dcm")
    out = tmp_path / "out"
    convert([src], out, jobs=1)
    convert([src], out, jobs=1, format="jpeg")
    assert sorted(images(out)) == ["a.jpg"]


def test_two_runs_into_one_output_folder_are_refused(tmp_path: Path) -> None:
    import fcntl

    from dcmexport.errors import UsageError

    out = tmp_path / "out"
    (out / ".dcmexport").mkdir(parents=True)
    with open(out / ".dcmexport" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="in use by another dcmexport run"):
            convert([pydicom_file("CT_small.dcm")], out, jobs=1)
