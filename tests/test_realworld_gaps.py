"""Real-world files, the remaining gaps of issue 12: sidecars carry the repairs, a file cut
inside an undefined-length element is read up to the cut, a video of frames of different
sizes. Every CLI run checks its exit code; DCMTK is the oracle where it renders the file."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dcmexport.cli import main
from dcmexport.dicom import decoding

from .conftest import pydicom_file
from .realworld_files import base_image, gradient, save, without_meta

pytestmark = pytest.mark.filterwarnings("ignore")


def convert(path: Path, out: Path, *args: str, code: int = 0) -> list[dict[str, str]]:
    """Run `dcmexport convert` in-process; check its exit code; the manifest's rows."""
    assert main(["convert", str(path), "-o", str(out), "-j", "1", "-q", *args]) == code
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- sidecars say what was repaired -----------------------------------------------------------


@pytest.mark.parametrize("metadata_phi", ["keep", "none"])
def test_json_sidecar_carries_the_repairs_of_the_manifest_note(
    metadata_phi: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--metadata", "json", "--metadata-phi", metadata_phi]
    rows = convert(pydicom_file("MR_truncated.dcm"), out, *args)
    still = next(r for r in rows if r["kind"] == "image")
    sidecar = next(r for r in rows if r["kind"] == "metadata")
    repairs = json.loads((out / sidecar["output"]).read_text())["dcmexport"]["repairs"]
    cut = "file truncated: pixel data has 8130 of 8192 bytes (missing pixels shown as 0)"
    assert repairs == [cut]
    assert all(repair in still["note"] for repair in repairs)


def test_txt_sidecar_names_each_repair_on_its_own_line(tmp_path: Path) -> None:
    ds = base_image(8, 8, BitsAllocated=16, BitsStored=12, HighBit=11)  # no Pixel Representation
    ds.PixelData = gradient(8, 8, 4095).astype("<u2").tobytes()
    path = tmp_path / "acr.dcm"
    path.write_bytes(without_meta(ds))
    out = tmp_path / "out"
    rows = convert(path, out, "--metadata", "txt")
    still = next(r for r in rows if r["kind"] == "image")
    sidecar = next(r for r in rows if r["kind"] == "metadata")
    lines = (out / sidecar["output"]).read_text().splitlines()
    repaired = [line.split(None, 1)[1] for line in lines if line.startswith("Repaired:")]
    assert "no Pixel Representation (0028,0103): read as unsigned" in repaired
    assert all(repair in still["note"] for repair in repaired)


def test_a_whole_file_has_no_repairs_in_its_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = convert(pydicom_file("CT_small.dcm"), out, "--metadata", "json")
    sidecar = next(r for r in rows if r["kind"] == "metadata")
    assert "repairs" not in json.loads((out / sidecar["output"]).read_text())["dcmexport"]


# --- a missing Pixel Representation, whatever the Bits Allocated (GDCM reads it unsigned) ----


def gdcm_tool(name: str) -> str:
    """The path of a GDCM command line tool; skip when GDCM's tools are not installed."""
    tool = shutil.which(name)
    if tool is None:
        pytest.skip(f"GDCM ({name}) is not installed: apt-get install libgdcm-tools")
    return tool


@pytest.mark.parametrize("meta", [False, True])
@pytest.mark.parametrize("bits", [8, 16])
def test_no_pixel_representation_decodes_unsigned_as_gdcm_reads_it(
    bits: int, meta: bool, tmp_path: Path
) -> None:
    from PIL import Image

    gdcmimg = gdcm_tool("gdcmimg")
    top = 255 if bits == 8 else 4095
    values = gradient(9, 11, top)
    ds = base_image(9, 11, BitsAllocated=bits, BitsStored=8 if bits == 8 else 12)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelData = values.astype(np.uint8 if bits == 8 else "<u2").tobytes()
    path = tmp_path / "nopr.dcm"
    if meta:
        save(ds, path)
    else:
        path.write_bytes(without_meta(ds))
    rows = convert(path, tmp_path / "out")
    assert rows[0]["status"] == "ok" and "no Pixel Representation" in rows[0]["note"]
    ours = decoding.decode_frame(decoding.read_dataset(path), 0)
    pgm = tmp_path / "gdcm.pgm"
    subprocess.run([gdcmimg, "-i", str(path), "-o", str(pgm)], check=True, capture_output=True)
    assert np.array_equal(ours, np.asarray(Image.open(pgm))) and np.array_equal(ours, values)
