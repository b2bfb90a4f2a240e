"""Real-world files DCMTK or GDCM open (issue 12): made here or shipped with pydicom, each
converted by the CLI (exit code checked) and, where DCMTK renders it, compared with DCMTK."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from dcmexport.cli import main
from dcmexport.dicom import decoding
from dcmexport.errors import DcmExportError, PixelDataError
from dcmexport.render.frame import render_dataset_frame, render_frame

from .conftest import dcmtk_tool, pydicom_file
from .realworld_files import (
    VIDEO_CODECS,
    base_image,
    gradient,
    pack_12bit,
    part10_bytes,
    save,
    video_dataset,
    without_meta,
)
from .test_oracle_dcmtk import _dcmtk_render, _disagreement

pytestmark = pytest.mark.filterwarnings("ignore")


def convert(path: Path, out: Path, *args: str, code: int = 0) -> list[dict[str, str]]:
    """Run `dcmexport convert` in-process; check its exit code; the manifest's rows."""
    assert main(["convert", str(path), "-o", str(out), "-j", "1", "-q", *args]) == code
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def agree_with_dcmtk(path: Path, tmp_path: Path, modes=(("auto", 8), ("40,400", 8))) -> None:
    for mode, bits in modes:
        work = tmp_path / f"{mode}-{bits}"
        work.mkdir()
        problem = _disagreement(path, mode, bits, work)
        assert problem is None, problem


# --- 1. files without File Meta, packed 12-bit, no Pixel Representation -----------------------


@pytest.mark.parametrize(("implicit", "little"), [(True, True), (False, True), (False, False)])
def test_acr_nema_file_without_meta_converts_as_dcmtk_renders_it(
    implicit: bool, little: bool, tmp_path: Path, dcm2pnm: str
) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    path = tmp_path / "acr.dcm"
    path.write_bytes(without_meta(ds, implicit=implicit, little=little))
    rows = convert(path, tmp_path / "out")
    assert [r["status"] for r in rows] == ["ok"]
    agree_with_dcmtk(path, tmp_path)


def test_packed_12bit_without_pixel_representation_matches_dcmtk(
    tmp_path: Path, dcm2pnm: str
) -> None:
    values = gradient(31, 37, 4095)  # odd sizes: frames do not end on a byte
    ds = base_image(31, 37, BitsAllocated=12, BitsStored=12, HighBit=11, PixelRepresentation=0)
    ds.PixelData = pack_12bit(values)
    ds["PixelData"].VR = "OW"
    path = tmp_path / "packed.dcm"
    path.write_bytes(without_meta(ds))
    assert np.array_equal(decoding.decode_frame(decoding.read_dataset(path), 0), values)
    agree_with_dcmtk(path, tmp_path)
    # without Pixel Representation DCMTK refuses the file; GDCM reads it unsigned, as we do
    del ds.PixelRepresentation
    path.write_bytes(without_meta(ds))
    rows = convert(path, tmp_path / "out")
    assert rows[0]["status"] == "ok"
    assert "no Pixel Representation" in rows[0]["note"] and "packed 12-bit" in rows[0]["note"]


# --- 2. damaged but readable ------------------------------------------------------------------


def test_truncated_single_frame_renders_with_a_note_and_info_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pydicom_file("MR_truncated.dcm")
    rows = convert(path, tmp_path / "out")
    assert rows[0]["status"] == "ok"
    assert "file truncated: pixel data has 8130 of 8192 bytes" in rows[0]["note"]
    assert main(["info", str(path), "--tag", "Rows"]) == 0
    captured = capsys.readouterr()
    assert "the file is truncated" in captured.err and "Rows" in captured.out


def test_truncated_cine_writes_its_complete_frames_and_says_which_are_missing(
    tmp_path: Path, dcm2pnm: str
) -> None:
    ds = base_image(32, 40, BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0)
    frames = np.stack([gradient(32, 40, 4095, seed=i) for i in range(10)])
    ds.NumberOfFrames = 10
    ds.FrameTime = 100
    ds.PixelData = frames.astype("<u2").tobytes()
    whole = save(ds, tmp_path / "whole.dcm")
    data = whole.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 32 * 40 * 2 * 3 - 100])  # 6 whole frames + part of 7th
    rows = convert(cut, tmp_path / "out", "--frames", "1,6,9", "--video", "mp4")
    by_output = {r["output"]: r for r in rows}
    assert all(r["status"] == "ok" for r in rows), rows
    assert set(by_output) == {"cut.mp4", "cut/0001.png", "cut/0006.png"}
    note = rows[0]["note"]
    assert "6 of 10 frames complete, frame 7 incomplete" in note
    assert "3 frame(s) missing" in note and "frame 9 does not exist" in note
    # a complete frame of the cut file is what DCMTK shows for the whole one
    ours = render_dataset_frame(decoding.read_dataset(cut), 6, window="40,400").image
    ref = _dcmtk_render(whole, ["+Ww", "40", "400", "+Wfl"], 8, tmp_path / "r.png", 6)
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_truncated_in_the_last_element_info_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds[0xFFFCFFFC]  # its trailing padding: the private element below comes last
    ds.add_new(0x7FE10010, "LO", "TEST")
    ds.add_new(0x7FE11010, "OB", b"\1" * 400)  # a private element after the pixels
    path = save(ds, tmp_path / "tail.dcm")
    path.write_bytes(path.read_bytes()[:-100])
    assert main(["info", str(path), "--tag", "Rows"]) == 0
    assert "the file is truncated inside (7FE1,1010): 300 of 400 bytes" in capsys.readouterr().err
    rows = convert(path, tmp_path / "out")  # the pixels are whole: the image converts
    assert rows[0]["status"] == "ok"


def _jpeg_copy(tmp_path: Path, option: str, source: Path) -> Path:
    dcmcjpeg = dcmtk_tool("dcmcjpeg")
    out = tmp_path / f"jpeg{option}.dcm"
    subprocess.run([dcmcjpeg, option, str(source), str(out)], check=True, capture_output=True)
    return out


def test_native_label_over_a_jpeg_codestream_is_decoded_with_a_note(
    tmp_path: Path, dcm2pnm: str
) -> None:
    jpeg = _jpeg_copy(tmp_path, "+eb", pydicom_file("MR_small.dcm"))
    ds = pydicom.dcmread(jpeg)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # the wrong label
    mislabelled = save(ds, tmp_path / "mislabelled.dcm")
    rows = convert(mislabelled, tmp_path / "out")
    assert rows[0]["status"] == "ok"
    assert "the pixel data is a JPEG Baseline (Process 1) codestream" in rows[0]["note"]
    ours = render_frame(mislabelled, window="40,400")
    ref = _dcmtk_render(jpeg, ["+Ww", "40", "400", "+Wfl"], 8, tmp_path / "r.png", 1)
    assert np.abs(ours.astype(int) - ref).max() <= 3  # lossy: decoders may differ by rounding


def test_frames_of_different_sizes_render_at_their_own_size_with_a_note(tmp_path: Path) -> None:
    from PIL import Image

    streams = []
    for size in ((32, 24), (40, 30)):
        buffer = io.BytesIO()
        Image.fromarray(gradient(size[1], size[0], 255).astype(np.uint8)).save(buffer, "JPEG")
        streams.append(buffer.getvalue())
    ds = base_image(24, 32, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    ds.NumberOfFrames = 2
    ds.PixelData = encapsulate(streams)
    path = save(ds, tmp_path / "sizes.dcm")
    rows = convert(path, tmp_path / "out", "--frames", "all", "--video", "none")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "frame 2 is 40x30, not 32x24: rendered at its own size" in rows[1]["note"]
    assert Image.open(tmp_path / "out" / rows[1]["output"]).size == (40, 30)


# --- 3. JPEG processes DCMTK decodes: 12-bit extended, retired 6/8 and 10/12 -----------------


def _twelve_bit(tmp_path: Path) -> Path:
    ds = base_image(48, 64, BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = gradient(48, 64, 4095).astype("<u2").tobytes()
    return save(ds, tmp_path / "twelve.dcm")


@pytest.mark.parametrize(
    ("option", "uid"),
    [
        ("+ee", "1.2.840.10008.1.2.4.51"),  # 12-bit JPEG Extended
        ("+es", "1.2.840.10008.1.2.4.53"),  # spectral selection, processes 6/8 (retired)
        ("+ep", "1.2.840.10008.1.2.4.55"),  # full progression, processes 10/12 (retired)
    ],
)
@pytest.mark.parametrize("bits", [8, 12])
def test_jpeg_processes_match_dcmj2pnm(
    option: str, uid: str, bits: int, tmp_path: Path, dcm2pnm: str
) -> None:
    pytest.importorskip("imagecodecs")
    source = pydicom_file("MR_small.dcm") if bits == 8 else _twelve_bit(tmp_path)
    if bits == 8:  # an 8-bit source: MR_small's 16 bits scaled to 8 by a window
        ds = pydicom.dcmread(source)
        image = render_frame(ds, window="minmax")
        ds8 = base_image(*image.shape, BitsAllocated=8, BitsStored=8, HighBit=7)
        ds8.PixelRepresentation = 0
        ds8.PixelData = image.tobytes()
        source = save(ds8, tmp_path / "eight.dcm")
    jpeg = _jpeg_copy(tmp_path, option, source)
    assert str(pydicom.dcmread(jpeg, stop_before_pixels=True).file_meta.TransferSyntaxUID) == uid
    assert convert(jpeg, tmp_path / "out")[0]["status"] == "ok"
    for mode in ("auto", "40,400"):
        ours = render_frame(jpeg, window=mode)
        args = ["+Ww", "40", "400", "+Wfl"] if mode == "40,400" else ["+Wm"]
        if mode == "auto" and bits == 12:
            args = ["+Wi", "1"]
        ref = _dcmtk_render(jpeg, args, 8, tmp_path / f"{mode}.png", 1)
        assert np.abs(ours.astype(int) - ref).max() <= 1, (option, bits, mode)


# --- 4. encapsulated video --------------------------------------------------------------------


def _frames(path_or_stream: Path | bytes, fmt: str | None = None) -> list[np.ndarray]:
    import av

    source = (
        io.BytesIO(path_or_stream) if isinstance(path_or_stream, bytes) else str(path_or_stream)
    )
    with av.open(source, format=fmt) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("ts", sorted(VIDEO_CODECS))
def test_encapsulated_video_is_copied_into_mp4_and_stills_are_its_frames(
    ts: str, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    encoder, _fmt = VIDEO_CODECS[ts]
    if encoder not in av.codecs_available:  # PyAV wheels without libx265, say
        pytest.skip(f"PyAV here has no {encoder} encoder to make the stream")
    ds = video_dataset(ts, frames=30)
    path = save(ds, tmp_path / "scope.dcm")
    rows = convert(path, tmp_path / "out", "--frames", "1,15,99", "--video", "mp4")
    assert [r["status"] for r in rows] == ["ok"] * 3
    video = next(r for r in rows if r["kind"] == "video")
    assert "stream copied into MP4 without re-encoding (30 frames)" in video["note"]
    assert "frame 99 does not exist (the file has 30)" in video["note"]
    stream = decoding.video_elementary_stream(ds)
    _codec, fmt = VIDEO_CODECS[ts]
    demuxer = "mpegvideo" if fmt == "mpeg2video" else fmt
    expected = _frames(stream, demuxer)
    written = _frames(tmp_path / "out" / video["output"])
    assert len(written) == 30 and all(
        np.array_equal(a, b) for a, b in zip(expected, written, strict=True)
    )
    with av.open(str(tmp_path / "out" / video["output"])) as mp4:  # copied, not re-encoded
        written_format = mp4.streams.video[0].codec_context.pix_fmt
    with av.open(io.BytesIO(stream), format=demuxer) as raw:
        assert written_format == raw.streams.video[0].codec_context.pix_fmt
    from PIL import Image

    still = np.asarray(Image.open(tmp_path / "out" / "scope" / "0015.png"))
    assert np.array_equal(still, expected[14])


def test_frames_beyond_a_cine_write_the_video_and_note_them(tmp_path: Path) -> None:
    ds = video_dataset("1.2.840.10008.1.2.4.102", frames=30)
    path = save(ds, tmp_path / "scope.dcm")
    rows = convert(path, tmp_path / "out", "--frames", "99", "--video", "gif")
    assert [r["kind"] for r in rows] == ["video"]
    assert "frame 99 does not exist" in rows[0]["note"]


# --- 5. other pixel kinds ---------------------------------------------------------------------


def _float_map(tmp_path: Path, double: bool = False) -> tuple[Path, np.ndarray]:
    values = np.linspace(-1.5, 3.0, 24 * 20).reshape(24, 20)
    ds = base_image(24, 20, BitsAllocated=64 if double else 32)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map
    if double:
        ds.DoubleFloatPixelData = values.astype("<f8").tobytes()
    else:
        ds.FloatPixelData = values.astype("<f4").tobytes()
    return save(ds, tmp_path / "map.dcm"), values


@pytest.mark.parametrize("double", [False, True])
def test_float_pixels_window_by_minmax_or_the_file_window(double: bool, tmp_path: Path) -> None:
    path, values = _float_map(tmp_path, double)
    assert convert(path, tmp_path / "out")[0]["status"] == "ok"
    image = render_frame(path)
    expected = np.round((values - values.min()) / (values.max() - values.min()) * 255)
    assert np.abs(image.astype(int) - expected).max() <= 1
    windowed = render_frame(path, window="0,2")  # linear window: 0 ± 1
    assert windowed[0, 0] == 0 and windowed[-1, -1] == 255


def test_raw_float_pixels_write_a_float32_tiff(tmp_path: Path) -> None:
    import tifffile

    path, values = _float_map(tmp_path)
    rows = convert(path, tmp_path / "out", "--raw", "--format", "tiff")
    written = tifffile.imread(tmp_path / "out" / rows[0]["output"])
    assert written.dtype == np.float32 and np.array_equal(written, values.astype(np.float32))
    rows = convert(path, tmp_path / "png", "--raw", code=1)
    assert "needs --format tiff" in rows[0]["error"]


@pytest.mark.parametrize("frames", [1, 3])
def test_one_bit_segmentation_is_0_and_255_as_dcmtk_shows_it(
    frames: int, tmp_path: Path, dcm2pnm: str
) -> None:
    rows_, cols = 13, 21  # 273 bits a frame: frames do not start on a byte
    ds = base_image(rows_, cols, BitsAllocated=1, BitsStored=1, HighBit=0, PixelRepresentation=0)
    rng = np.random.default_rng(frames)
    bits = rng.integers(0, 2, (frames, rows_, cols), dtype=np.uint8)
    if frames > 1:
        ds.NumberOfFrames = frames
        bits[1] = 0  # an empty frame is black, not grey
    ds.PixelData = np.packbits(bits.ravel(), bitorder="little").tobytes()
    path = save(ds, tmp_path / "seg.dcm")
    args = ("--frames", "all", "--video", "none") if frames > 1 else ()
    rows = convert(path, tmp_path / "out", *args)
    assert [r["status"] for r in rows] == ["ok"] * frames
    for n in range(1, frames + 1):
        image = render_frame(path, frame=n)
        assert np.array_equal(image, bits[n - 1] * 255)
        if bits[n - 1].any():  # DCMTK's min-max (its default shows 1 as 128, not 255)
            ref = _dcmtk_render(path, ["+Wm"], 8, tmp_path / f"r{n}.png", n)
            assert np.array_equal(image, ref)


def test_deflated_image_frame_compression_decodes_to_the_native_pixels(tmp_path: Path) -> None:
    native = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds = native.copy()
    ds.file_meta = native.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.8.1"
    packer = zlib.compressobj(wbits=-15)
    ds.PixelData = encapsulate([packer.compress(native.PixelData) + packer.flush()])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "deflated.dcm"
    path.write_bytes(part10_bytes(ds))  # pydicom 3.0 refuses to save a syntax it does not know
    assert convert(path, tmp_path / "out")[0]["status"] == "ok"
    assert np.array_equal(render_frame(path), render_frame(native))


# --- 7. saying plainly what happened ----------------------------------------------------------


def test_unparseable_dicom_is_an_error_not_skipped(tmp_path: Path) -> None:
    good = pydicom_file("CT_small.dcm").read_bytes()
    path = tmp_path / "garbage.dcm"
    path.write_bytes(good[:132] + b"\x08\x00\x05\x00CS\xff\xff" + bytes(range(256)) * 4)
    rows = convert(path, tmp_path / "out", code=1)
    assert rows[0]["status"] == "error" and "unreadable DICOM header" in rows[0]["error"]


def test_elscint_private_pixels_are_an_error_that_says_so(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    ds.add_new(0x7FE10010, "LO", "ELSCINT1")
    ds.add_new(0x7FE11010, "OB", b"\0" * 64)
    path = save(ds, tmp_path / "elscint.dcm")
    rows = convert(path, tmp_path / "out", code=1)
    assert rows[0]["status"] == "error"
    assert "private element of ELSCINT1" in rows[0]["error"]


def test_incomplete_cd_is_said_in_one_line_and_counted_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dcmexport.sources.dicomdir import references

    from .conftest import pydicom_test_files_dir

    source = pydicom_test_files_dir() / "dicomdirtests"
    if not (source / "DICOMDIR").exists():
        pytest.skip("pydicom's DICOMDIR test set is not bundled")
    cd = tmp_path / "cd"
    shutil.copytree(source, cd)
    refs = [r for r in references(cd / "DICOMDIR") if r.path is not None]
    for ref in refs[:3]:
        Path(ref.path).unlink()
    code = main(["convert", str(cd / "DICOMDIR"), "-o", str(tmp_path / "out"), "-j", "1"])
    assert code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "the CD is incomplete" in line]
    assert len(lines) == 1, err
    assert f"3 of {len(refs)} referenced files are missing (first: " in lines[0]
    assert "3 referenced by a DICOMDIR but missing" in err


def test_progress_never_passes_100_percent() -> None:
    from types import SimpleNamespace

    from dcmexport.progress import ConsoleReporter

    stream = io.StringIO()
    reporter = ConsoleReporter(stream, bar=False)
    reporter.start(2)
    for _ in range(3):
        reporter.result(SimpleNamespace(status="ok", source="x", reason="", detail=""))
    assert reporter._line().startswith("dcmexport: 3/3 files (100%)")


@pytest.mark.parametrize(
    "args", [["info", "{f}"], ["info", "{f}", "--json"], ["info", "{f}", "--find", "e"]]
)
def test_stdout_commands_end_quietly_on_a_closed_pipe(args: list[str]) -> None:
    path = str(pydicom_file("CT_small.dcm"))
    command = [sys.executable, "-m", "dcmexport", *(a.format(f=path) for a in args)]
    result = subprocess.run(
        " ".join(f"'{c}'" for c in command) + " | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).parent.parent / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0 and result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_rescale_is_in_the_manifest_for_every_grey_image(tmp_path: Path) -> None:
    rows = convert(pydicom_file("CT_small.dcm"), tmp_path / "out")
    assert (rows[0]["rescale_slope"], rows[0]["rescale_intercept"]) == ("1", "-1024")


def test_info_value_prints_only_values_and_find_shows_keywords(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(pydicom_file("CT_small.dcm"))
    assert main(["info", path, "--tag", "ImagePositionPatient", "--tag", "Rows", "--value"]) == 0
    assert capsys.readouterr().out.split() == ["-158.135803", "-179.035797", "-75.699997", "128"]
    assert main(["info", path, "--find", "patientname"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("# PatientName")


def test_a_frame_past_a_truncated_end_is_a_clear_error(tmp_path: Path) -> None:
    ds = base_image(8, 8, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    ds.NumberOfFrames = 3
    ds.PixelData = bytes(64 * 3)
    loaded = decoding.read_dataset(save(ds, tmp_path / "x.dcm"))
    loaded.PixelData = bytes(64)
    with pytest.raises(PixelDataError, match="frame 3 is missing"):
        decoding.decode_frame(loaded, 2)
    assert decoding.frames_present(loaded) == 1
    with pytest.raises(DcmExportError):
        render_dataset_frame(loaded, 2)


def test_generate_frames_of_the_video_maker_is_one_stream() -> None:
    ds = video_dataset("1.2.840.10008.1.2.4.100", frames=4)
    assert len(list(generate_frames(ds.PixelData, number_of_frames=1))) == 1
