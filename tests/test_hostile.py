"""Hostile inputs and faults: bombs refused before they allocate, nothing escapes the guard,
faults lose nothing (issue 13). Every CLI run checks its exit code and its manifest."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import pytest
from benchmarks.hostile_inputs import BOMBS, write_broken

from dcmexport.cli import main
from dcmexport.dicom import limits
from dcmexport.dicom.faults import plain_reason
from dcmexport.options import Limits

DATA = Path(__file__).parent / "data" / "hostile"


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        return {row["source"]: row for row in csv.DictReader(f)}


def _ct(sample_set: tuple[Path, list[Path]]) -> list[Path]:
    root, _ = sample_set
    return sorted((root / "CT").rglob("*.dcm"))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bombs")
    for name, build in BOMBS.items():
        build(folder / name)
    return folder


def test_good_slices_plus_every_bomb_and_broken_file(
    sample_set: tuple[Path, list[Path]], bombs: Path, tmp_path: Path, capsys
) -> None:
    """20 good slices + every bomb + every broken kind: exit 1, the 20 converted, one row with
    a reason per bad file, no traceback."""
    inputs = tmp_path / "in"
    shutil.copytree(bombs, inputs / "bombs")
    good = _ct(sample_set)
    for path in good:
        shutil.copy(path, inputs / path.name)
    write_broken(inputs / "broken", good[0])
    for name in os.listdir(DATA):  # the minimised crashers the fuzzer found
        shutil.copy(DATA / name, inputs / "broken" / name)
    out = tmp_path / "out"
    started = time.monotonic()
    code = main(["convert", str(inputs), "-o", str(out), "-j", "2", "-q"])
    assert code == 1
    assert time.monotonic() - started < 60
    rows = _rows(out)
    for path in good:
        assert rows[str(inputs / path.name)]["status"] == "ok"
    for name in BOMBS:
        row = next(r for s, r in rows.items() if f"/bombs/{name}" in s)
        assert row["status"] in ("error", "skipped") and row["error"], row
    for source, row in rows.items():
        assert row["error"] if row["status"] != "ok" else True, source
        assert "unexpected" not in row["error"], row
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jpeg_sof_65535.dcm", "--max-pixels"),
        ("jpeg_ls_sof_65535.dcm", "--max-pixels"),
        ("j2k_siz_65535.dcm", "--max-pixels"),
        ("rle_65535.dcm", "--max-pixels"),
        ("frames_2p32.dcm", "--max-frames"),
        ("cine_2p31_window.dcm", "--max-frames"),
        ("jpeg_ls_height_0.dcm", "64 x 0"),
        ("deflated_bomb.dcm", "decompression bomb"),
    ],
)
def test_each_bomb_is_refused_with_the_limit_it_broke(
    bombs: Path, tmp_path: Path, name: str, expected: str
) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(bombs / name), "-o", str(out), "-j", "1", "-q"]) == 1
    (row,) = _rows(out).values()
    assert row["status"] == "error" and expected in row["error"], row


def test_raising_the_limit_lets_a_large_frame_through(tmp_path: Path) -> None:
    with limits.applied(Limits(max_pixels=100)), pytest.raises(Exception, match="--max-pixels"):
        limits.check_frame_pixels(20, 20, 1)
    limits.check_frame_pixels(20, 20, 1)  # the default allows it


def test_zip_bomb_member_is_refused_by_its_declared_size(bombs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(bombs / "zip_bomb.zip"), "-o", str(out), "-q"]) == 1
    (row,) = _rows(out).values()
    assert "decompression bomb" in row["error"]


def test_frame_time_zero_and_huge_fall_back_to_the_next_timing_source(tmp_path: Path) -> None:
    from benchmarks.hostile_inputs import frame_time

    for value in ("0", "1e300"):
        path = frame_time(tmp_path / f"ft_{value}.dcm", value)
        out = tmp_path / f"out_{value}"
        assert main(["convert", str(path), "-o", str(out), "--video", "gif", "-q"]) == 0
        (row,) = _rows(out).values()
        assert "Cine Rate" in row["note"], row


class PanicException(BaseException):  # what pyo3 raises: not an Exception
    pass


def test_plain_reasons_for_the_known_faults() -> None:
    assert "decoder crashed" in plain_reason(PanicException("index out of bounds"))
    assert "out of memory" in plain_reason(MemoryError())
    assert "nested too deeply" in plain_reason(RecursionError())
    assert "truncated" in plain_reason(OSError("No tag to read at 0x100"))
    assert "palette" in plain_reason(KeyError("RedPaletteColorLookupTableDescriptor"))
    assert "unknown value representation" in plain_reason(NotImplementedError("Unknown VR 'Ui'"))


def test_a_panic_in_the_work_is_one_error_row() -> None:
    from dcmexport.engine.work import guarded

    def work() -> list:
        raise PanicException("called `Option::unwrap()` on a `None` value")

    result = guarded("x.dcm", 0, "", work)
    assert result.status == "error" and "decoder crashed" in result.reason


def test_symlinked_state_folder_is_refused_and_nothing_outside_is_touched(
    sample_set: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tmp").mkdir(parents=True)
    (elsewhere / "tmp" / "precious").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".dcmexport").symlink_to(elsewhere, target_is_directory=True)
    assert main(["convert", str(_ct(sample_set)[0]), "-o", str(out), "-q"]) == 2
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["precious", "tmp"]


def test_only_own_temporary_files_are_cleared(
    sample_set: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / ".dcmexport" / "tmp" / "sub").mkdir(parents=True)
    (out / ".dcmexport" / "tmp" / "notes.txt").write_text("mine")
    (out / ".dcmexport" / "tmp" / ".tmp-left.png").write_text("half")
    assert main(["convert", str(_ct(sample_set)[0]), "-o", str(out), "-q"]) == 0
    left = sorted(p.name for p in (out / ".dcmexport" / "tmp").iterdir())
    assert left == ["notes.txt", "sub"]


def test_stale_index_tables_of_a_killed_run_are_removed(
    sample_set: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    stale = tmp_path / ".tmp-table.csv-abc123.csv"
    stale.write_text("half a table")
    other = tmp_path / ".tmp-other.csv-abc123.csv"
    other.write_text("another table's")
    table = tmp_path / "table.csv"
    assert main(["index", str(_ct(sample_set)[0]), "-o", str(table), "-q"]) == 0
    assert table.exists() and not stale.exists() and other.exists()


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return done.returncode == 0


@pytest.mark.slow
def test_disk_full_stops_with_one_line_and_the_rerun_resumes(
    sample_set: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    root, _ = sample_set
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "2m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        out = disk / "out"
        run = [sys.executable, "-m", "dcmexport", "convert", str(root), "-o", str(out), "-j", "2"]
        full = subprocess.run([*run, "-q"], capture_output=True, text=True)
        assert full.returncode == 3
        assert full.stderr.strip().count("\n") == 0 and "disk is full" in full.stderr
        assert "Traceback" not in full.stderr
        outputs = [p for p in out.rglob("*") if p.is_file() and ".dcmexport" not in p.parts]
        assert not [p for p in outputs if p.name.startswith(".tmp-")]  # no partial output
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        again = subprocess.run(run, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert "already up to date" in again.stderr or "converted" in again.stderr
    finally:
        subprocess.run(["umount", str(disk)])


def test_read_only_output_is_exit_2_before_any_work(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, capsys
) -> None:
    disk = tmp_path / "ro"
    if not _tmpfs(disk, "1m"):
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert main(["convert", str(_ct(sample_set)[0]), "-o", str(disk / "out"), "-q"]) == 2
        assert main(["index", str(_ct(sample_set)[0]), "-o", str(disk / "t.csv"), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("Read-only file system") == 2 and "Traceback" not in err
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.slow
def test_sigterm_stops_cleanly_without_orphans_and_the_rerun_completes(
    sample_set: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    psutil = pytest.importorskip("psutil")
    root, _ = sample_set
    out = tmp_path / "out"
    run = [sys.executable, "-m", "dcmexport", "convert", str(root), "-o", str(out), "-j", "2"]
    proc = subprocess.Popen([*run, "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    children: list = []
    while time.monotonic() < deadline and len(children) < 2:
        children = psutil.Process(proc.pid).children()
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert (out / "manifest.csv").exists()
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_info_on_a_hostile_file_is_one_line(tmp_path: Path, capsys) -> None:
    for name in sorted(os.listdir(DATA)):
        code = main(["info", str(DATA / name)])
        assert code in (0, 1), name
        assert "Traceback" not in capsys.readouterr().err
        code = main(["info", "--json", str(DATA / name)])
        assert code in (0, 1), name
        assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("transfer_syntax_not_a_ts.dcm", "cannot be decoded"),
        ("unknown_vr_zz.dcm", "unknown value representation"),
        ("bits_allocated_32768.dcm", "pixel description is invalid"),
        ("truncated_bits_allocated_32768.dcm", "Bits Allocated (0028,0100) is 32768"),
        ("bits_stored_as_empty_ui.dcm", "BitsStored (0028,0101) is not one number (VR UI)"),
        ("lying_rows_ybr.dcm", "frame 1 is mostly missing"),
    ],
)
def test_fuzz_crash_classes_have_plain_reasons(tmp_path: Path, name: str, expected: str) -> None:
    """Crash classes benchmarks/fuzz.py found (minimised files under tests/data/hostile)."""
    out = tmp_path / "out"
    tracemalloc.start()
    try:  # refused from the header: a truncated frame was padded to 4 GB before
        assert main(["convert", str(DATA / name), "-o", str(out), "-j", "1", "-q"]) == 1
        assert tracemalloc.get_traced_memory()[1] < 64 * 2**20
    finally:
        tracemalloc.stop()
    (row,) = _rows(out).values()
    assert row["status"] == "error" and expected in row["error"], row


def test_the_dicom_room_defaults_agree_with_the_options() -> None:
    assert limits.DefaultLimits() == limits.DefaultLimits(**vars(Limits()))


def test_a_cine_too_wide_for_h264_still_gets_its_gif_and_stills(tmp_path: Path) -> None:
    """Fuzz class: libx264 refused a 65535-wide clip with FFmpeg's "Generic error"; now the
    MP4 is one error row saying why, and the GIF and stills are written."""
    out = tmp_path / "out"
    args = ["convert", str(DATA / "cine_wider_than_h264.dcm"), "-o", str(out), "-q"]
    assert main([*args, "--frames", "first"]) == 1
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [(r["status"], Path(r["output"]).suffix) for r in rows] == [
        ("error", ""),
        ("ok", ".gif"),
        ("ok", ".png"),
    ]
    assert "larger than H.264 video allows" in rows[0]["error"]
    assert (out / rows[1]["output"]).stat().st_size > 0


def test_the_mp4_writer_refuses_a_frame_that_is_not_an_image(tmp_path: Path) -> None:
    """Fuzz class: a JPEG-LS frame decoded to 240 x 0 x 3 reached PyAV as an IndexError."""
    import numpy as np

    from dcmexport.errors import PixelDataError
    from dcmexport.exporters.video import ClipTiming, Mp4Writer

    writer = Mp4Writer(tmp_path / "x.mp4", ClipTiming(Fraction(10), "test"), 240, 2)
    try:
        with pytest.raises(PixelDataError, match="not an image"):
            writer.write(np.zeros((240, 0, 3), np.uint8))
    finally:
        writer.abort()


def test_a_reason_never_quotes_a_header_value() -> None:
    """An exception message may quote the value it choked on (a name, an ID): the reason
    keeps element names, VRs and numbers, and leaves the value out."""
    reason = plain_reason(ValueError("invalid literal for int() with base 10: 'DOE^JOHN'"))
    assert "DOE" not in reason and reason.endswith("'…'")
    kept = plain_reason(ValueError("A (0028,0100) 'Bits Allocated' value of '32768' is invalid"))
    assert "'Bits Allocated'" in kept and "'32768'" in kept
    assert "'ZZ'" in plain_reason(NotImplementedError("Unknown Value Representation 'ZZ'"))


def test_a_carriage_return_in_a_value_keeps_manifest_and_table_rows_whole(
    tmp_path: Path,
) -> None:
    """Fuzz class: a window explanation with a bare \\r was written unquoted (csv quotes only
    its line terminator's characters), so every reader split the manifest row in two."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.11"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.WindowCenterWidthExplanation = "SOFT\rTISSUE"
    ds.SeriesDescription = "AXIAL\rHEAD"
    ds.PixelData = bytes(range(16))
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "cr.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "in"), "-o", str(out), "-q"]) == 0
    (row,) = _rows(out).values()
    assert (row["status"], row["voi"]) == ("ok", "SOFT\rTISSUE")
    table = tmp_path / "t.csv"
    assert main(["index", str(tmp_path / "in"), "-o", str(table), "-q"]) == 0
    with open(table, newline="", encoding="utf-8") as f:
        (indexed,) = list(csv.DictReader(f))
    assert indexed["SeriesDescription"] == "AXIAL\rHEAD"
