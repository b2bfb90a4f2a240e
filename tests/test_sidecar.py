"""`convert --metadata txt|json`: a sidecar beside each converted input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom

from dcmexport.cli import main

from .conftest import pydicom_file


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_txt_sidecar_has_a_summary_then_the_full_header(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct = pydicom_file("CT_small.dcm")
    assert main(["convert", str(ct), "-o", str(out), "--metadata", "txt", "-q"]) == 0
    text = (out / "CT_small.txt").read_text(encoding="utf-8")
    summary, _, dump = text.partition("\n\n")
    ds = pydicom.dcmread(ct)
    assert summary.startswith("Patient:")
    assert str(ds.PatientName) in summary and ds.PatientID in summary
    assert "Image:" in summary and "128 × 128" in summary and "16/16 bits signed" in summary
    assert "Window:" in summary and "minmax" in summary  # CT_small has no window: min-max
    assert "Written:" in summary and "CT_small.png" in summary
    assert "(0010,0010)" in dump and "(7FE0,0010)" in dump
    rows = _rows(out)
    assert [(r["output"], r["kind"]) for r in rows] == [
        ("CT_small.png", "image"),
        ("CT_small.txt", "metadata"),
    ]


def test_json_sidecar_is_dicom_json_plus_what_was_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mr = pydicom_file("MR_small.dcm")
    assert main(["convert", str(mr), "-o", str(out), "--metadata", "json", "-q"]) == 0
    document = json.loads((out / "MR_small.json").read_text(encoding="utf-8"))
    ds = pydicom.dcmread(mr)
    assert document["00100020"] == {"vr": "LO", "Value": [ds.PatientID]}
    assert document["00280010"]["Value"] == [64]
    assert "7FE00010" not in document or "Value" not in document["7FE00010"]  # no bulk data
    (image,) = document["dcmexport"]["outputs"]
    assert image["output"] == "MR_small.png"
    assert image["window_center"] == float(ds.WindowCenter)
    assert image["window_width"] == float(ds.WindowWidth)


def test_rerun_with_sidecars_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["convert", str(pydicom_file("CT_small.dcm")), "-o", str(out), "--metadata", "txt"]
    assert main([*args, "-q"]) == 0
    (out / "CT_small.txt").unlink()  # a missing sidecar makes the input out of date
    assert main([*args, "-q"]) == 0
    assert (out / "CT_small.txt").is_file()
