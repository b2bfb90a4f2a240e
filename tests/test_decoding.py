"""Reading, DICOM recognition by content, decoder choice and decoding errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless, RLELossless

from dcmexport.dicom import decoding
from dcmexport.errors import NotDicomError, UnsupportedTransferSyntaxError
from dcmexport.render.frame import render_frame

from .conftest import pydicom_data_files, pydicom_file, pydicom_test_files_dir


def test_preferred_plugins_come_first() -> None:
    """The order measured by benchmarks/decoders.py (pydicom would prefer GDCM if present)."""
    assert decoding.plugin_order(JPEGBaseline8Bit)[0] == "pillow"
    assert decoding.plugin_order(RLELossless)[0] == "pylibjpeg"
    assert decoding.plugin_order(JPEGLSLossless)[0] == "pyjpegls"
    assert decoding.plugin_order(pydicom.uid.ExplicitVRLittleEndian) == [""]


def test_jpeg_extended_decoder_follows_the_sample_depth() -> None:
    """8-bit: Pillow (libjpeg-turbo upsamples chroma as DCMTK does); 12-bit: imagecodecs
    when installed (equals dcmdjpeg, reads what libjpeg rejects), else pylibjpeg."""
    extended = pydicom.uid.JPEGExtended12Bit
    twelve = "imagecodecs" if decoding.codecs.imagecodecs_available() else "pylibjpeg"
    assert decoding.plugin_order(extended, 8)[0] == "pillow"
    assert decoding.plugin_order(extended, 16)[0] == twelve
    assert decoding.plugin_order(extended)[0] == twelve


def test_unsupported_transfer_syntax_names_it_once_and_says_what_would_decode(
    tmp_path: Path,
) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    uid = "1.2.826.0.1.3680043.9.9999.1"  # a private transfer syntax nobody decodes
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "private.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        render_frame(path)
    message = str(caught.value)
    assert message.count(uid) == 1
    assert "DCMTK" in message and "GDCM" in message


def test_missing_plugin_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels import get_decoder

    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(type(decoder), "available_plugins", property(lambda self: []))
    monkeypatch.setattr(decoding.codecs, "imagecodecs_available", lambda: False)  # an extra
    with pytest.raises(UnsupportedTransferSyntaxError, match="pyjpegls"):
        decoding.plugin_order(JPEGLSLossless)


@pytest.mark.parametrize("name", ["README.txt", "crayons.icc", "zipMR.gz"])
def test_non_dicom_is_recognised_by_content(name: str) -> None:
    with pytest.raises(NotDicomError):
        decoding.read_dataset(pydicom_file(name))


def test_dicom_without_preamble_is_recognised(tmp_path: Path) -> None:
    ds = decoding.read_dataset(pydicom_file("ExplVR_LitEndNoMeta.dcm"))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8"  # RT Ion Plan
    copy = tmp_path / "no_extension_no_preamble"
    shutil.copy(pydicom_file("ExplVR_BigEndNoMeta.dcm"), copy)
    assert decoding.read_dataset(copy).SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8"


def test_empty_and_tiny_files_are_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "tiny").write_bytes(b"\x08\x00")
    for name in ("empty", "tiny"):
        with pytest.raises(NotDicomError):
            decoding.read_dataset(tmp_path / name)


def test_frames_decoded_from_the_path_equal_frames_from_the_dataset(tmp_path: Path) -> None:
    """Large multi-frame files are decoded frame by frame from disk (pixel data deferred)."""
    path = pydicom_file("SC_rgb_rle_2frame.dcm")
    full = pydicom.dcmread(path)
    deferred = pydicom.dcmread(path, defer_size=64)
    assert decoding._pixels_deferred(deferred, decoding.transfer_syntax(deferred))
    for index in range(2):
        from_path = decoding.decode_frame(deferred, index, path)
        assert np.array_equal(from_path, decoding.decode_frame(full, index))


def test_deflated_multiframe_is_decoded_from_the_dataset(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("SC_rgb_rle_2frame.dcm"))
    ds.decompress()
    path = tmp_path / "deflated.dcm"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    second = render_frame(path, frame=2)
    assert second.shape == (100, 100, 3)


def test_malformed_number_of_frames_decodes_as_dcmtk_reads_it() -> None:
    """pydicom's decoders give up on Number of Frames '1A' (badVR.dcm, an RT Dose); DCMTK
    renders frame 1, and so do we, without changing the dataset we were given."""
    ds = decoding.read_dataset(pydicom_file("badVR.dcm"))
    assert ds["NumberOfFrames"].value == "1A"
    frame = decoding.decode_frame(ds, 0)
    assert frame.shape == (10, 10)
    assert ds["NumberOfFrames"].value == "1A"
    assert render_frame(pydicom_file("badVR.dcm")).max() == 255


def _jpeg_baseline_files() -> list[Path]:
    found = sorted(pydicom_test_files_dir().rglob("*.dcm")) + pydicom_data_files()
    return [p for p in found if _syntax(p) == JPEGBaseline8Bit]


def _syntax(path: Path) -> str | None:
    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    except Exception:
        return None


def _pillow_jpeg_dicom(
    path: Path, mode: str, photometric: str, frames: int, size: tuple[int, int] = (48, 64)
) -> Path:
    """A JPEG Baseline DICOM file with frames Pillow encoded (grey; RGB stored without a
    colour transform and without an Adobe marker, which libjpeg would take for YCbCr; or
    ``YCbCr``: RGB encoded the usual way, as YBR_FULL_422)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    from dcmexport.sample import write_ct_series

    ds = pydicom.dcmread(write_ct_series(path.parent / "base", 1, size=64)[0])
    rng = np.random.default_rng(3)
    streams = []
    for _ in range(frames):
        shape = size if mode == "L" else (*size, 3)
        pixels = rng.integers(0, 255, shape, dtype=np.uint8)
        image = Image.fromarray(pixels, "L" if mode == "L" else "RGB")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90, keep_rgb=mode == "RGB")
        streams.append(out.getvalue())
    ds.PixelData = encapsulate(streams)
    ds["PixelData"].VR = "OB"
    ds.Rows, ds.Columns, ds.NumberOfFrames = *size, frames
    ds.SamplesPerPixel = 1 if mode == "L" else 3
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if mode != "L":
        ds.PlanarConfiguration = 0
    for name in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if name in ds:
            delattr(ds, name)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


def test_jpeg_baseline_frames_read_lean_equal_pydicoms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 8-bit JPEG Baseline frame the lean Pillow path decodes equals what the general
    path (pydicom's Pillow plugin with ``as_rgb``) returns, dtype and shape included; the
    cases it leaves to pydicom (an Adobe marker on YBR data) are left."""
    made = [
        _pillow_jpeg_dicom(tmp_path / "grey.dcm", "L", "MONOCHROME2", 3),
        _pillow_jpeg_dicom(tmp_path / "rgb.dcm", "RGB", "RGB", 2),
    ]
    lean_frame = decoding._pillow_baseline_frame
    lean = 0
    for path in _jpeg_baseline_files() + made:
        ds = decoding.read_dataset(path)
        for index in range(decoding.number_of_frames(ds)):
            ours = lean_frame(ds, index)
            if ours is None:
                continue
            assert decoding.plugin_order(decoding.transfer_syntax(ds), 8)[0] == "pillow"
            with monkeypatch.context() as patch:
                patch.setattr(decoding, "_pillow_baseline_frame", lambda ds, index: None)
                expected = decoding.decode_frame(decoding.read_dataset(path), index, str(path))
            assert ours.dtype == expected.dtype and ours.shape == expected.shape, path.name
            np.testing.assert_array_equal(ours, expected, err_msg=f"{path.name} frame {index}")
            lean += 1
    assert lean >= (150 if pydicom_data_files() else 15), lean  # pydicom-data: a 120-frame cine


def test_a_large_jpeg_cine_streams_through_pillow_as_dcmtk_decodes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A YBR cine over the 8 MB read limit stays on disk; its frames, read one at a time from
    the file and decoded by Pillow (libjpeg's YCbCr → RGB), equal DCMTK's `dcmj2pnm` exactly.
    pydicom's own stream converts YCbCr in floating point: within 1 of it on these noise
    frames (47 of 921,600 values on the first), and equal on the real files above."""
    import subprocess

    from PIL import Image

    from .conftest import dcmtk_tool

    dcmj2pnm = dcmtk_tool("dcmj2pnm")
    path = _pillow_jpeg_dicom(tmp_path / "cine.dcm", "YCbCr", "YBR_FULL_422", 32, (480, 640))
    assert path.stat().st_size > 8 * 2**20
    ds = decoding.read_dataset(path)
    assert decoding._pixels_deferred(ds, decoding.transfer_syntax(ds))
    streamed = list(decoding._pillow_baseline_stream(ds, str(path)))
    assert len(streamed) == 32 and all(frame is not None for frame in streamed)
    ours = list(decoding.iter_frames(ds, str(path)))
    with monkeypatch.context() as patch:
        patch.setattr(decoding, "_lean_baseline", lambda ts, plugins, as_rgb: False)
        theirs = list(decoding.iter_frames(decoding.read_dataset(path), str(path)))
    assert len(ours) == len(theirs) == 32
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape == (480, 640, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, index
        np.testing.assert_array_equal(a, streamed[index])
    for index in (0, 17, 31):
        ppm = tmp_path / f"{index}.ppm"
        cmd = [dcmj2pnm, "--write-raw-pnm", "--frame", str(index + 1), str(path), str(ppm)]
        subprocess.run(cmd, check=True, capture_output=True)
        np.testing.assert_array_equal(ours[index], np.asarray(Image.open(ppm)), str(index))
