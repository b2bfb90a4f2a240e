"""Real-world files, the remaining gaps of issue 12: sidecars carry the repairs, a file cut
inside an undefined-length element is read up to the cut, a video of frames of different
sizes. Every CLI run checks its exit code; DCMTK is the oracle where it renders the file."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.sequence import Sequence

from dcmexport.cli import main
from dcmexport.dicom import decoding
from dcmexport.errors import PixelDataError
from dcmexport.render.frame import render_dataset_frame, render_frame

from .conftest import pydicom_file
from .realworld_files import base_image, gradient, save, without_meta
from .test_oracle_dcmtk import _dcmtk_render

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


# --- a file cut inside an undefined-length element --------------------------------------------


def _with_last_sequence(path: Path, items: int = 3) -> Path:
    """CT_small with an undefined-length private sequence of `items` items after its pixels."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds[0xFFFCFFFC]  # its trailing padding: the sequence below comes last
    ds.add_new(0x7FE10010, "LO", "TEST")
    entries = []
    for i in range(items):
        item = Dataset()
        item.CodeValue, item.CodeMeaning = f"V{i}", "x" * 200
        item.is_undefined_length_sequence_item = True
        entries.append(item)
    ds.add_new(0x7FE11020, "SQ", Sequence(entries))
    ds[0x7FE11020].is_undefined_length = True
    ds.save_as(path)
    return path


@pytest.mark.parametrize(("cut", "whole_items"), [(8, 3), (100, 2), (500, 0)])
def test_info_on_a_file_cut_inside_its_last_sequence_shows_what_it_read(
    cut: int, whole_items: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], dcm2pnm: str
) -> None:
    whole = _with_last_sequence(tmp_path / "whole.dcm")
    path = tmp_path / "cut.dcm"
    path.write_bytes(whole.read_bytes()[:-cut])
    with pytest.raises(OSError):  # pydicom alone reads nothing of it
        pydicom.dcmread(path)
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    where = f"the file is truncated inside (7FE1,1020): {whole_items} complete item(s) read"
    assert where in captured.err
    assert "Rows" in captured.out and "CompressedSamples^CT1" in captured.out
    assert f"SQ: {whole_items} item" in captured.out
    rows = convert(path, tmp_path / "out")  # the pixels are whole: the image is DCMTK's
    assert rows[0]["status"] == "ok"
    assert f"file truncated inside (7FE1,1020): {whole_items} complete item(s)" in rows[0]["note"]
    ours = render_frame(path, window="40,400")
    ref = _dcmtk_render(whole, ["+Ww", "40", "400", "+Wfl"], 8, tmp_path / "r.png", 1)
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_a_cut_encapsulated_cine_writes_its_complete_frames_and_notes_the_rest(
    tmp_path: Path, dcm2pnm: str
) -> None:
    ds = base_image(24, 32, BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0)
    frames = np.stack([gradient(24, 32, 4095, seed=i) for i in range(5)])
    ds.NumberOfFrames = 5
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.compress(pydicom.uid.RLELossless, encoding_plugin="pydicom")
    whole = save(ds, tmp_path / "whole.dcm")
    fragments = list(generate_fragments(ds.PixelData))  # one per frame
    data = whole.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 8 - len(fragments[-1]) - 8 - len(fragments[-2]) // 2])
    rows = convert(cut, tmp_path / "out", "--frames", "all", "--video", "none")
    assert [r["status"] for r in rows] == ["ok"] * 3
    note = rows[0]["note"]
    assert "file truncated inside Pixel Data: 3 complete fragment(s) read" in note
    assert "3 of 5 frames complete; 2 frame(s) missing" in note
    with pytest.raises(PixelDataError, match="frame 4 is missing: the file is truncated"):
        decoding.decode_frame(decoding.read_dataset(cut), 3)
    for frame in (1, 3):  # a complete frame of the cut file is DCMTK's frame of the whole one
        ours = render_dataset_frame(decoding.read_dataset(cut), frame, window="40,400").image
        ref = _dcmtk_render(whole, ["+Ww", "40", "400", "+Wfl"], 8, tmp_path / "r.png", frame)
        assert np.abs(ours.astype(int) - ref).max() <= 1


def test_pydicom_data_file_without_its_closing_delimiter_converts_every_frame(
    tmp_path: Path,
) -> None:
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    folder = Path(data_store.__file__).parent / "data"
    path, whole = folder / "emri_small_jpeg_2k_lossless_too_short.dcm", folder / "emri_small.dcm"
    if not path.exists() or not whole.exists():
        pytest.skip("this pydicom-data release lacks the emri_small files")
    rows = convert(path, tmp_path / "out", "--frames", "all", "--video", "none")
    assert [r["status"] for r in rows] == ["ok"] * 10  # DCMTK and GDCM refuse the file
    assert "only its closing delimiter is missing" in rows[0]["note"]
    cut_ds, whole_ds = decoding.read_dataset(path), decoding.read_dataset(whole)
    for index in range(10):  # lossless: the very values of the uncompressed original
        ours = decoding.decode_frame(cut_ds, index)
        assert np.array_equal(ours, decoding.decode_frame(whole_ds, index))


# --- a video of encapsulated frames of different sizes -----------------------------------------


def _ffmpeg_fit(image: np.ndarray, rows: int, columns: int, work: Path) -> np.ndarray:
    """ffmpeg's fit-and-pad of an RGB image: the reference for `fit_into`."""
    from PIL import Image

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    Image.fromarray(image).save(work / "in.png")
    scale = f"scale={columns}:{rows}:force_original_aspect_ratio=decrease"
    pad = f"pad={columns}:{rows}:(ow-iw)/2:(oh-ih)/2"  # black
    command = [ffmpeg, "-v", "error", "-y", "-i", str(work / "in.png")]
    command += ["-vf", f"format=rgb24,{scale},{pad}", "-pix_fmt", "rgb24", str(work / "out.png")]
    subprocess.run(command, check=True, capture_output=True)
    return np.asarray(Image.open(work / "out.png"))


@pytest.mark.parametrize("shape", [(40, 40), (30, 40), (24, 60), (33, 47), (12, 16)])
def test_fit_into_is_ffmpegs_scale_and_pad(shape: tuple[int, int], tmp_path: Path) -> None:
    from dcmexport.exporters.video import fit_into

    grey = (gradient(*shape, 215) + 40).astype(np.uint8)  # never black: the bars are
    rgb = np.repeat(grey[..., None], 3, axis=2)
    ref = _ffmpeg_fit(rgb, 24, 32, tmp_path)
    for image, expected in ((rgb, ref), (grey, ref[..., 0])):
        ours = fit_into(image, 24, 32)
        assert ours.shape == expected.shape
        assert np.array_equal(ours > 0, expected > 0)  # the same picture in the same place
        # bicubic in Pillow and swscale: the same to ±1 scaling down, ±2 scaling up
        assert np.abs(ours.astype(int) - expected).max() <= 2


def test_video_of_frames_of_different_sizes_fits_each_into_frame_1s_size(tmp_path: Path) -> None:
    import av
    from PIL import Image

    from dcmexport.exporters.video import fit_into

    streams = []
    sizes = ((32, 24), (32, 32), (32, 24))  # (columns, rows); frame 2 is square
    for seed, (columns, rows) in enumerate(sizes):
        buffer = io.BytesIO()
        image = gradient(rows, columns, 255, seed=seed).astype(np.uint8)
        Image.fromarray(image).save(buffer, "JPEG", quality=95)
        streams.append(buffer.getvalue())
    ds = base_image(24, 32, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    ds.NumberOfFrames = 3
    ds.PixelData = encapsulate(streams)
    path = save(ds, tmp_path / "sizes.dcm")
    out = tmp_path / "out"
    rows = convert(path, out, "--frames", "all", "--video", "both", "--window", "0,256")
    assert [r["status"] for r in rows] == ["ok"] * 5
    stills = [np.asarray(Image.open(out / r["output"])) for r in rows if r["kind"] == "image"]
    assert [s.shape for s in stills] == [(24, 32), (32, 32), (24, 32)]  # each at its own size
    for video in (r for r in rows if r["kind"] == "video"):
        note = "frame(s) 2 (32x32) fitted into the video's 32x24 (aspect kept, black borders)"
        assert note in video["note"]
        with av.open(str(out / video["output"])) as container:
            frames = [f.to_ndarray(format="rgb24")[..., 0] for f in container.decode(video=0)]
        assert len(frames) == 3 and all(f.shape == (24, 32) for f in frames)
        expected = fit_into(stills[1], 24, 32)
        assert np.abs(frames[1].astype(int) - expected).mean() < 3  # lossy H.264 / GIF palette
        assert frames[1][:, :3].max() <= 8 and frames[1][:, -3:].max() <= 8  # black bars
