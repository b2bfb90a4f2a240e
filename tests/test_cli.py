"""The command line, called in-process: exit codes, outputs, manifest, errors, help."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcmexport.cli import build_parser, main
from dcmexport.manifest import COLUMNS

from .conftest import pydicom_file

CONTRACT_COLUMNS = [
    "source",
    "frame",
    "output",
    "status",
    "error",
    "window_center",
    "window_width",
    "raw_offset",
    "rescale_slope",
    "rescale_intercept",
]


def read_manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder mixing single-frame, multi-frame, colour, non-image and non-DICOM files."""
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), root / "a" / "b" / "ct.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), root / "a" / "mr.DICOM")
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), root / "cine.dcm")
    shutil.copy(pydicom_file("rtplan.dcm"), root / "plan.dcm")
    shutil.copy(pydicom_file("CT_small.dcm"), root / "1.2.840.113.5")
    (root / "notes.txt").write_text("not dicom")
    return root


def test_convert_mirrors_inputs_and_writes_manifest(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(inputs), "-o", str(out), "-q"]) == 0
    assert (out / "a" / "b" / "ct.png").is_file()
    assert (out / "a" / "mr.png").is_file()
    assert (out / "1.2.840.113.5.png").is_file()  # unknown extensions are kept whole
    rows = read_manifest(out)
    by_source = {Path(r["source"]).name: r for r in rows}
    assert by_source["ct.dcm"]["status"] == "ok"
    assert by_source["ct.dcm"]["output"] == "a/b/ct.png"
    assert by_source["plan.dcm"]["status"] == "skipped"
    assert "RT Plan" in by_source["plan.dcm"]["error"]
    assert by_source["notes.txt"]["status"] == "skipped"
    assert by_source["notes.txt"]["error"] == "not a DICOM file"
    cine = [r["output"] for r in rows if r["source"].endswith("cine.dcm")]
    assert cine == ["cine.mp4", "cine.gif"]  # multi-frame: video by default
    assert len(rows) == 7  # every file found has a row, the cine one per video
    assert main(["convert", str(inputs), "-o", str(tmp_path / "o2"), "-q", "--video", "none"]) == 0
    by_source = {Path(r["source"]).name: r for r in read_manifest(tmp_path / "o2")}
    assert by_source["cine.dcm"]["status"] == "skipped"
    assert "--frames" in by_source["cine.dcm"]["error"]
    image = np.asarray(Image.open(out / "a" / "b" / "ct.png"))
    assert image.dtype == np.uint8 and image.shape == (128, 128)


def test_manifest_schema(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(["convert", str(inputs), "-o", str(out), "-q", "--frames", "all"])
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert tuple(header) == COLUMNS
    for row in read_manifest(out):
        assert row["status"] in {"ok", "error", "skipped"}
        assert (row["output"] == "") == (row["status"] != "ok")
        assert (row["error"] == "") == (row["status"] == "ok")
        if row["frame"]:
            assert int(row["frame"]) >= 1
        for column in ("window_center", "window_width", "rescale_slope", "rescale_intercept"):
            if row[column]:
                float(row[column])
        if row["status"] == "ok":
            assert (tmp_path / "out" / row["output"]).is_file()


def test_frames_write_numbered_stills(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(inputs / "cine.dcm"), "-o", str(out), "--frames", "all", "-q"]) == 0
    assert sorted(p.name for p in (out / "cine").iterdir()) == ["0001.png", "0002.png"]
    rows = read_manifest(out)
    assert [(r["frame"], r["output"]) for r in rows] == [
        ("", "cine.mp4"),  # the video by default, the stills alongside
        ("", "cine.gif"),
        ("1", "cine/0001.png"),
        ("2", "cine/0002.png"),
    ]
    assert (
        main(
            ["convert", str(inputs / "cine.dcm"), "-o", str(tmp_path / "o2"), "--frames", "2", "-q"]
        )
        == 0
    )
    assert [p.name for p in (tmp_path / "o2" / "cine").iterdir()] == ["0002.png"]


def test_collisions_get_a_suffix_and_a_note(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "x.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), src / "x.ima")
    shutil.copy(pydicom_file("MR_small.dcm"), src / "X.dicom")
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-q"]) == 0
    outputs = sorted(r["output"] for r in read_manifest(out))
    assert outputs == ["X.png", "x_2.png", "x_3.png"]
    notes = [r["note"] for r in read_manifest(out) if r["output"] != "X.png"]
    assert all("name collision" in n for n in notes)


def test_bad_file_is_reported_and_the_rest_converted(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "good.dcm")
    shutil.copy(pydicom_file("JPEG2000-embedded-sequence-delimiter.dcm"), src / "broken.dcm")
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.dcm" in err and "Traceback" not in err
    # one line for the failure, the failures by reason (3 lines) and one summary
    assert err.count("\n") <= 6
    assert "1 input(s) failed; by reason:" in err and f"{out / 'manifest.csv'}" in err
    rows = {Path(r["source"]).name: r for r in read_manifest(out)}
    assert rows["good.dcm"]["status"] == "ok"
    assert rows["broken.dcm"]["status"] == "error"
    # its J2K header is corrupt: a size check or the decoders refuse it, with a plain reason
    reason = rows["broken.dcm"]["error"]
    assert "cannot decode" in reason or "pixel limit" in reason, reason


def test_inputs_are_never_modified_and_no_temp_files_remain(inputs: Path, tmp_path: Path) -> None:
    def digest() -> dict[str, str]:
        return {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in inputs.rglob("*")
            if p.is_file()
        }

    before = digest()
    out = tmp_path / "out"
    main(["convert", str(inputs), "-o", str(out), "-q", "--frames", "all"])
    assert digest() == before
    assert not [p for p in out.rglob(".tmp-*")]


@pytest.mark.parametrize(
    ("args", "dtype", "suffix"),
    [
        (["--bits", "16"], np.uint16, ".png"),
        (["--format", "tiff", "--bits", "16"], np.uint16, ".tiff"),
        (["--format", "jpeg", "--quality", "80"], np.uint8, ".jpg"),
        (["--8bit"], np.uint8, ".png"),
    ],
)
def test_formats_and_depths(args: list[str], dtype: type, suffix: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(pydicom_file("CT_small.dcm")), "-o", str(out), "-q", *args]) == 0
    written = out / f"CT_small{suffix}"
    image = np.asarray(Image.open(written))
    assert image.dtype == dtype or (dtype == np.uint16 and image.dtype in (np.int32, np.uint16))


def test_raw_records_offset_and_rescale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct = pydicom_file("CT_small.dcm")
    assert main(["convert", str(ct), "-o", str(out), "--raw", "-q"]) == 0
    row = read_manifest(out)[0]
    assert row["raw_offset"] == "32768"  # CT_small is signed
    assert float(row["rescale_slope"]) == 1.0 and float(row["rescale_intercept"]) == -1024.0
    assert row["window_center"] == "" and row["window_width"] == ""
    import pydicom

    stored = pydicom.dcmread(ct).pixel_array.astype(np.int32)
    written = np.asarray(Image.open(out / "CT_small.png")).astype(np.int32)
    assert np.array_equal(written - 32768, stored)


def test_window_options_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct = str(pydicom_file("CT_small.dcm"))
    assert main(["convert", ct, "-o", str(out), "--window", "lung", "-q"]) == 0
    row = read_manifest(out)[0]
    assert (float(row["window_center"]), float(row["window_width"])) == (-600, 1500)
    assert main(["convert", ct, "-o", str(out), "--window", "-600,1500", "-q"]) == 0
    assert np.array_equal(
        np.asarray(Image.open(out / "CT_small.png")), np.asarray(Image.open(out / "CT_small.png"))
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--window", "wide"],
        ["--window", "40,0"],
        ["--frames", "0"],
        ["--frames", "3-1"],
        ["--bits", "12"],
        ["--format", "jpeg", "--bits", "16"],
        ["--format", "gif"],
        ["--quality", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path, capsys) -> None:
    ct = str(pydicom_file("CT_small.dcm"))
    with pytest.raises(SystemExit) as info:
        code = main(["convert", ct, "-o", str(tmp_path / "out"), *args])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_missing_input_and_empty_input_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    assert main(["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    monkeypatch.chdir(tmp_path)
    assert main(["convert"]) == 2  # no ./dicom_data
    assert "dcmexport sample" in capsys.readouterr().err


def test_window_file_n_missing_is_a_per_file_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "convert",
                str(pydicom_file("CT_small.dcm")),
                "-o",
                str(out),
                "--window",
                "file:1",
                "-q",
            ]
        )
        == 1
    )
    assert "window" in read_manifest(out)[0]["error"]


def test_input_option_and_output_folder_inside_input(inputs: Path) -> None:
    out = inputs / "out"
    assert main(["convert", "-i", str(inputs / "a"), "-o", str(out), "-q"]) == 0
    assert main(["convert", "-i", str(inputs / "a"), "-o", str(out), "-q"]) == 0  # not re-read
    assert {r["output"] for r in read_manifest(out)} == {"b/ct.png", "mr.png"}


def test_every_command_has_help(capsys) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"convert", "info", "sample"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_python_dash_m_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcmexport",
            "convert",
            str(pydicom_file("CT_small.dcm")),
            "-o",
            str(tmp_path / "out"),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "CT_small.png").is_file()


def test_library_api_as_documented(tmp_path: Path) -> None:
    import dcmexport

    ct = pydicom_file("CT_small.dcm")
    image = dcmexport.render_frame(ct)
    assert image.dtype == np.uint8 and image.shape == (128, 128)
    assert dcmexport.render_frame(ct, window="lung", bits=16).dtype == np.uint16
    summary = dcmexport.convert([ct], tmp_path / "a", window="40,400", bits=16, format="tiff")
    assert (summary.converted, summary.failed, summary.exit_code) == (1, 0, 0)
    opts = dcmexport.ConvertOptions(frames="all")
    summary = dcmexport.convert(
        [pydicom_file("SC_rgb_rle_2frame.dcm")], tmp_path / "b", options=opts
    )
    assert summary.images == 2
    with pytest.raises(dcmexport.UsageError):
        dcmexport.convert([ct], tmp_path / "c", options=opts, bits=8)
    assert issubclass(dcmexport.NotDicomError, dcmexport.DcmExportError)


def test_a_file_and_a_folder_of_the_same_name_both_convert(tmp_path: Path) -> None:
    """`CT.dcm` and `CT/IM1.dcm` (any case) must not hang or overwrite: the folder moves."""
    src = tmp_path / "in"
    (src / "CT").mkdir(parents=True)
    (src / "img").mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), src / "CT" / "IM1.dcm")
    shutil.copy(pydicom_file("CT_small.dcm"), src / "IMG.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), src / "img" / "a.dcm")
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-q", "-j", "1"]) == 0
    outputs = sorted(r["output"] for r in read_manifest(out))
    assert outputs == ["CT/IM1.png", "IMG.png", "ct_2.png", "img_2/a.png"]


@pytest.mark.parametrize("name", ["manifest.csv", ".dcmexport.dcm"])
def test_reserved_names_in_out_are_never_taken(name: str, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), src / name)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-q", "--frames", "all"]) == 0
    assert (out / "manifest.csv").is_file()
    assert [r["status"] for r in read_manifest(out)] == ["ok"] * 4  # MP4, GIF, 2 stills
    assert all(not r["output"].startswith(".dcmexport/") for r in read_manifest(out))


@pytest.mark.parametrize("spelling", ["PatientName", "0010,0010", "(0010,0010)", "0x00100010"])
def test_info_tag_spellings_print_the_same_line(spelling: str, capsys) -> None:
    assert main(["info", str(pydicom_file("CT_small.dcm")), "--tag", spelling]) == 0
    assert capsys.readouterr().out == (
        "(0010,0010) Patient's Name                       PN: 'CompressedSamples^CT1'\n"
    )


def test_info_dump_json_and_errors(tmp_path: Path, capsys) -> None:
    import json

    ct = str(pydicom_file("CT_small.dcm"))
    assert main(["info", ct]) == 0
    out = capsys.readouterr().out
    assert out.startswith("File Meta Information") and "(7FE0,0010) Pixel Data" in out
    assert main(["info", ct, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["00100020"]["Value"] == ["1CT1"]
    assert main(["info", ct, "--find", "pat"]) == 0
    assert "Patient ID" in capsys.readouterr().out
    assert main(["info", ct, "--tag", "0x00181030"]) == 1  # Protocol Name: not in this file
    (tmp_path / "x.txt").write_text("hello")
    assert main(["info", str(tmp_path / "x.txt")]) == 1
    assert main(["info", ct, "--tag", "NotAKeyword"]) == 2
    err = capsys.readouterr().err
    assert "x.txt: not a DICOM file" in err and "Traceback" not in err


def test_index_command_writes_csv_and_parquet(inputs: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    csv_table, parquet_table = tmp_path / "t.csv", tmp_path / "t.parquet"
    assert main(["index", str(inputs), "-o", str(csv_table), "-j", "1"]) == 0
    assert (
        main(
            [
                "index",
                str(inputs),
                "-o",
                str(parquet_table),
                "--columns",
                "PatientID",
                "--columns",
                "0x00080060",
                "-q",
            ]
        )
        == 0
    )
    assert "indexed 6 file(s)" in capsys.readouterr().err
    frame = pd.read_csv(csv_table)
    assert len(frame) == 6 and {"SOPInstanceUID", "Modality", "status"} <= set(frame.columns)
    selected = pd.read_parquet(parquet_table)
    assert list(selected.columns) == ["path", "PatientID", "Modality", "status", "error"]
    assert main(["index", str(inputs), "-o", str(tmp_path / "t.xlsx")]) == 2


def test_info_on_a_missing_file_or_a_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "nope.dcm")]) == 2
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "is a folder" in err


def test_info_json_with_tags_keeps_only_those(capsys) -> None:
    import json

    assert main(["info", str(pydicom_file("CT_small.dcm")), "--json", "--tag", "Rows"]) == 0
    assert json.loads(capsys.readouterr().out) == {"00280010": {"vr": "US", "Value": [128]}}


def test_frame_template_names_are_claimed_like_every_other_name(tmp_path: Path) -> None:
    """`{stem}_{frame}` on x.dcm (2 frames) and x_1.dcm: the still of frame 1 and the
    single-frame file both want `x_1.png`; the one naming authority gives three files."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), src / "x.dcm")
    shutil.copy(pydicom_file("CT_small.dcm"), src / "x_1.dcm")
    out = tmp_path / "out"
    args = ["convert", str(src), "-o", str(out), "--layout", "{stem}_{frame}"]
    assert main([*args, "--frames", "all", "--video", "none", "-q"]) == 0
    rows = read_manifest(out)
    outputs = [r["output"] for r in rows]
    assert len(rows) == 3 and len(set(outputs)) == 3
    assert sorted(p.name for p in out.glob("*.png")) == sorted(outputs)
    by_source = {(Path(r["source"]).name, r["frame"]): r for r in rows}
    assert by_source[("x.dcm", "1")]["output"] == "x_1.png"
    assert by_source[("x.dcm", "2")]["output"] == "x_2.png"
    assert by_source[("x_1.dcm", "")]["output"] == "x_1_2.png"
    assert "name collision" in by_source[("x_1.dcm", "")]["note"]
    # the pixels prove which file is which: the CT is grey, the frame is colour
    with Image.open(out / "x_1_2.png") as ct, Image.open(out / "x_1.png") as frame:
        assert ct.mode == "L" and frame.mode == "RGB"
