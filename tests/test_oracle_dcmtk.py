"""Differential tests: our rendering against DCMTK's dcm2pnm/dcmj2pnm/dcml2pnm (RENDERING.md).

Every renderable file bundled with pydicom is rendered by us and by DCMTK in the default
window (8 and 16 bit), with ``--window 40,400`` and min-max, and must agree within ±1 grey
level (±3 where a lossy codec's decoder differences explain more). Where DCMTK is not a
valid oracle the case says why and is checked against the formula instead.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dcmexport.dicom import decoding
from dcmexport.render.frame import render_frame

from .conftest import pydicom_test_files_dir

imagecodecs = pytest.importorskip("imagecodecs")

# Files DCMTK cannot read correctly: (reason, the twin file it reads right).
DCMTK_WRONG = {
    "rtdose_expb.dcm": ("DCMTK 3.6.7 misreads 32-bit big-endian pixels", "rtdose.dcm"),
    "rtdose_expb_1frame.dcm": ("DCMTK misreads 32-bit big-endian", "rtdose_1frame.dcm"),
}
LOSSY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
}
NOT_DECODABLE = {  # malformed streams every decoder rejects (they must be an `error`)
    "JPEG2000-embedded-sequence-delimiter.dcm",
}
#: Files we render (with a manifest note) that DCMTK refuses: no oracle, see test_realworld.py.
DCMTK_REFUSES = {
    "MR_truncated.dcm": "truncated pixel data: dcm2pnm stops; we pad the missing pixels",
}


def _is_colour(ds: pydicom.Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return int(ds.get("SamplesPerPixel") or 1) > 1 or photometric == "PALETTE COLOR"


def voi_function(ds: pydicom.Dataset, frame: int) -> str:
    """The VOI LUT Function that applies to 1-based `frame` (functional groups first)."""
    from dcmexport.render.pipeline import _functional_group

    source = _functional_group(ds, frame - 1, "FrameVOILUTSequence") or ds
    return str(source.get("VOILUTFunction", "") or "LINEAR").strip().upper()


def _cases() -> list:
    """(file, window, bits) for every renderable file; colour is never windowed: auto only."""
    cases = []
    root = pydicom_test_files_dir()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in NOT_DECODABLE or path.name in DCMTK_REFUSES:
            continue
        try:
            ds = decoding.read_dataset(path, stop_before_pixels=True)
        except Exception:
            continue
        if "BitsAllocated" not in ds or "Rows" not in ds:
            continue
        modes = ["auto"] if _is_colour(ds) else ["auto", "40,400", "minmax"]
        for mode in modes:
            for bits in (8, 16):
                name = f"{path.relative_to(root)}-{mode}-{bits}"
                cases.append(pytest.param(path, mode, bits, id=name))
    return cases


def _dcmtk_render(path: Path, args: list[str], bits: int, out: Path, frame: int) -> np.ndarray:
    """Render with the first DCMTK tool that reads the file's transfer syntax.

    Overlays are drawn by both (DCMTK's default and ours), so files with overlay planes are
    compared as viewers show them.
    """
    errors = []
    for tool in ("dcm2pnm", "dcmj2pnm", "dcml2pnm"):
        cmd = [tool, "-il", *args, "+F", str(frame), "+on" if bits == 8 else "+on2"]
        result = subprocess.run([*cmd, str(path), str(out)], capture_output=True, text=True)
        if result.returncode == 0 and out.exists():
            return imagecodecs.png_decode(out.read_bytes())
        errors.append(f"{tool}: {result.stderr.strip()[-200:]}")
    pytest.fail(f"no DCMTK tool rendered {path.name}: {errors}")


def _dcmtk_readable(path: Path, ds: pydicom.Dataset, tmp_path: Path) -> Path:
    """A file DCMTK reads right with the same pixels.

    DCMTK cannot decode JPEG 2000/HTJ2K (we give it the pydicom-decompressed copy) nor parse
    some malformed headers (SC_rgb_jpeg.dcm is implicit VR in an explicit VR transfer
    syntax: we give it pydicom's conformant re-encoding of the same dataset).
    """
    if path.name in DCMTK_WRONG:
        return path.parent / DCMTK_WRONG[path.name][1]
    ts = decoding.transfer_syntax(ds)
    probe = subprocess.run(["dcmdump", "-q", str(path)], capture_output=True)
    if "2000" not in ts.name and probe.returncode == 0:
        return path
    full = pydicom.dcmread(path, force=True)
    copy = tmp_path / "for_dcmtk.dcm"
    if "2000" in ts.name:
        full.decompress(decoding_plugin="pylibjpeg")
        full.save_as(copy, enforce_file_format=True)
        return copy
    _image_only_copy(full, ts).save_as(copy, enforce_file_format=True)
    return copy


def _image_only_copy(ds: pydicom.Dataset, ts: pydicom.uid.UID) -> pydicom.Dataset:
    """A conformant dataset holding just the Image Pixel module, overlays and pixel data of `ds`."""
    fresh = pydicom.Dataset()
    fresh.file_meta = pydicom.dataset.FileMetaDataset()
    fresh.file_meta.TransferSyntaxUID = ts
    fresh.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    fresh.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    fresh.SOPClassUID = fresh.file_meta.MediaStorageSOPClassUID
    fresh.SOPInstanceUID = fresh.file_meta.MediaStorageSOPInstanceUID
    for keyword in (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        if keyword in ds:
            setattr(fresh, keyword, ds[keyword].value)
    for element in ds:
        if element.tag.group in range(0x6000, 0x6020, 2):  # overlays: both draw them
            fresh.add(element)
    fresh.PixelData = ds.PixelData
    fresh["PixelData"].VR = "OB" if ts.is_encapsulated else ds["PixelData"].VR
    return fresh


def _dcmtk_args(ds: pydicom.Dataset, mode: str, ours_window: tuple, frame: int = 1) -> list[str]:
    """The DCMTK options that ask for what we rendered (RENDERING.md's oracle table).

    A VOI LUT or a SIGMOID window that only the functional groups hold (enhanced multi-frame)
    becomes ``+Wl 1`` or ``+Ww c w +Wfs``.
    """
    from dcmexport.render.windowing import Window, file_windows

    if _is_colour(ds):
        return []
    if mode == "40,400":
        return ["+Ww", "40", "400", "+Wfl"]
    if mode == "auto" and "VOILUTSequence" in ds:
        return ["+Wl", "1"]
    usable = [i for i, w in enumerate(file_windows(ds), 1) if isinstance(w, Window)]
    if mode == "auto" and usable:
        return ["+Wi", str(usable[0])]
    # min-max: DCMTK ignores Pixel Padding Value, so give it the window we computed (exact)
    center, width = ours_window
    if center is None or width is None:  # a VOI LUT from the functional groups
        return ["+Wl", "1"]
    sigmoid = mode == "auto" and voi_function(ds, frame) == "SIGMOID"
    return ["+Ww", repr(center), repr(width), "+Wfs" if sigmoid else "+Wfl"]


def _tolerance(ds: pydicom.Dataset, bits: int, colour: bool) -> int:
    """±1 level, ±3 for lossy codecs; at 16 bits one 8-bit source level is 257 levels."""
    lossy = str(decoding.transfer_syntax(ds)) in LOSSY
    levels = 3 if lossy else 1
    if bits == 16 and (colour or lossy or int(ds.get("BitsStored") or 16) <= 8):
        return levels * 257
    return levels


def _fractional_rescale(ds: pydicom.Dataset) -> bool:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return not (slope.is_integer() and intercept.is_integer())


def _disagreement(path: Path, mode: str, bits: int, tmp_path: Path) -> str | None:
    """Render `path` (first and last frame) with us and DCMTK; a message if they disagree."""
    from dcmexport.render.frame import render_dataset_frame

    ds = decoding.read_dataset(path)
    is_colour = _is_colour(ds)
    if bits == 16 and _fractional_rescale(ds):
        return None  # DCMTK truncates fractional modality values; test_pixels.py covers these
    source = _dcmtk_readable(path, ds, tmp_path)
    for frame in sorted({1, decoding.number_of_frames(ds)}):
        rendered = render_dataset_frame(ds, frame, window=mode, bits=bits, source=path)
        ours = rendered.image
        args = _dcmtk_args(ds, mode, (rendered.window_center, rendered.window_width), frame)
        ref = _dcmtk_render(source, args, bits, tmp_path / f"ref{frame}.png", frame)
        if ref.shape != ours.shape:
            return f"{path.name} frame {frame}: shape {ours.shape} vs DCMTK {ref.shape}"
        diff = np.abs(ref.astype(np.int64) - ours.astype(np.int64))
        tolerance = _tolerance(ds, bits, is_colour)
        if diff.max() > tolerance:
            return (
                f"{path.name} frame {frame}: {np.mean(diff > tolerance):.2%} of pixels differ by "
                f"more than {tolerance} (max {diff.max()}) with DCMTK args {args}"
            )
    return None


@pytest.mark.dcmtk
@pytest.mark.parametrize(("path", "mode", "bits"), _cases())
def test_matches_dcmtk(path: Path, mode: str, bits: int, tmp_path: Path, dcm2pnm: str) -> None:
    if bits == 16 and _fractional_rescale(decoding.read_dataset(path, stop_before_pixels=True)):
        pytest.skip("DCMTK truncates fractional modality values; test_pixels.py checks the formula")
    problem = _disagreement(path, mode, bits, tmp_path)
    assert problem is None, problem


@pytest.fixture(scope="module")
def sample_files(sample_set: tuple[Path, list[Path]]) -> list[Path]:
    """Our own sample set: CT with padding, 12-bit MR, MONOCHROME1 CR with a VOI LUT, cines,
    palette and YBR_FULL_422 images, and JPEG-LS/J2K/RLE/deflated/big-endian copies (two CT
    slices are enough: the others differ only in anatomy)."""
    two_ct = {"CT_0001.dcm", "CT_0002.dcm"}
    return sorted(
        p
        for p in sample_set[1]
        if p.name != "DICOMDIR" and (p.parent.name != "CT" or p.name in two_ct)
    )


# DCMTK 3.6.7 has no segmented palette support ("segmented palettes not yet supported");
# tests/test_sample.py checks that file against its palette definition instead.
DCMTK_UNSUPPORTED_SAMPLES = {"palette_segmented.dcm"}


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("mode", "bits"), [("auto", 8), ("auto", 16), ("40,400", 8), ("minmax", 8)]
)
def test_sample_set_matches_dcmtk(
    sample_files: list[Path], mode: str, bits: int, tmp_path: Path, dcm2pnm: str
) -> None:
    problems = []
    for i, path in enumerate(sample_files):
        if path.name in DCMTK_UNSUPPORTED_SAMPLES:
            continue
        ds = decoding.read_dataset(path, stop_before_pixels=True)
        if mode != "auto" and _is_colour(ds):
            continue
        work = tmp_path / str(i)
        work.mkdir()
        problem = _disagreement(path, mode, bits, work)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(NOT_DECODABLE))
def test_undecodable_files_raise_a_clear_error(name: str) -> None:
    path = pydicom_test_files_dir() / name
    if not path.exists():
        pytest.skip("not bundled")
    from dcmexport.errors import DcmExportError

    with pytest.raises(DcmExportError):
        render_frame(path)


# --- Real-world oddities, built by hand and rendered by both -----------------------------------


def _image(
    pixels: np.ndarray, photometric: str, bits_stored: int, high_bit: int, **attributes: object
) -> pydicom.Dataset:
    """A Secondary Capture dataset (explicit VR LE) holding `pixels` as they are."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = pixels.ndim == 3 and photometric != "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, high_bit, 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _oddities() -> dict[str, tuple[pydicom.Dataset, str, str | None]]:
    """name → (dataset, window, compression transfer syntax or None)."""
    rng = np.random.default_rng(7)
    ybr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    grey12 = rng.integers(0, 4096, (64, 64), dtype=np.uint16)
    junk = rng.integers(0, 16, (64, 64), dtype=np.uint16)
    high15 = (grey12 << 4) | junk  # 12 bits stored at High Bit 15, junk below
    rgb12 = rng.integers(0, 4096, (32, 32, 3), dtype=np.uint16) | (0xA << 12)  # junk on top
    window = {"WindowCenter": 2048, "WindowWidth": 3000}
    rle, jpegls = pydicom.uid.RLELossless, pydicom.uid.JPEGLSLossless
    return {
        "ybr-full-native": (_image(ybr, "YBR_FULL", 8, 7), "auto", None),
        "ybr-full-rle": (_image(ybr, "YBR_FULL", 8, 7), "auto", rle),
        "ybr-full-jpegls": (_image(ybr, "YBR_FULL", 8, 7), "auto", jpegls),
        "high-bit-15-native": (_image(high15, "MONOCHROME2", 12, 15, **window), "auto", None),
        "high-bit-15-rle": (_image(high15, "MONOCHROME2", 12, 15, **window), "auto", rle),
        "rgb-12-bits-junk-above": (_image(rgb12, "RGB", 12, 11), "auto", None),
        "window-width-0-then-valid": (
            _image(grey12, "MONOCHROME2", 12, 11, WindowCenter=[100, 2000], WindowWidth=[0, 900]),
            "auto",
            None,
        ),
    }


ODDITIES = _oddities()


@pytest.mark.dcmtk
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name", sorted(ODDITIES))
def test_oddities_match_dcmtk(name: str, bits: int, tmp_path: Path, dcm2pnm: str) -> None:
    original, window, compression = ODDITIES[name]
    ds = copy.deepcopy(original)
    if compression == pydicom.uid.JPEGLSLossless:
        ds.compress(compression, encoding_plugin="pyjpegls")
    elif compression is not None:
        ds.compress(compression)
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    problem = _disagreement(path, window, bits, tmp_path)
    assert problem is None, problem


@pytest.mark.dcmtk
def test_large_file_without_file_meta_decodes_per_frame(tmp_path: Path, dcm2pnm: str) -> None:
    """Over 8 MB the pixel data stays on disk; without File Meta the syntax must be passed."""
    frames = (np.arange(2 * 1100 * 2048, dtype=np.uint32) % 4096).astype(np.uint16)
    ds = _image(frames.reshape(2, 1100, 2048)[0], "MONOCHROME2", 12, 11)
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    path = tmp_path / "no-meta.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)  # no preamble or meta
    assert not decoding.has_dicm_prefix(path)
    second = render_frame(path, frame=2, window="minmax")
    stored = frames.reshape(2, 1100, 2048)[1].astype(np.int64)
    assert np.array_equal(second, stored * 255 // 4095)  # min-max of frame 2: 0..4095


def test_broken_voi_lut_does_not_stop_an_explicit_window() -> None:
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 8]  # but no LUT Data
    ds = _image(np.arange(64, dtype=np.uint16).reshape(8, 8), "MONOCHROME2", 12, 11)
    plain = copy.deepcopy(ds)
    ds.VOILUTSequence = pydicom.Sequence([item])
    explicit = render_frame(ds, window="32,64")
    assert np.array_equal(explicit, render_frame(plain, window="32,64"))
    assert render_frame(ds).max() == 255  # auto passes over the broken LUT: min-max
    from dcmexport.errors import WindowError

    with pytest.raises(WindowError, match="VOI LUT 1"):
        render_frame(ds, window="file:1")


@pytest.mark.dcmtk
@pytest.mark.parametrize(("mode", "bits"), [("auto", 8), ("auto", 16), ("40,400", 8)])
def test_replayed_series_match_dcmtk(
    sample_set: tuple[Path, list[Path]],
    mode: str,
    bits: int,
    tmp_path: Path,
    dcm2pnm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Series converted by `convert`, whose slices after the second are replayed
    (`engine.replay`), against DCMTK slice by slice."""
    import csv

    from dcmexport.engine import replay
    from dcmexport.engine.batch import convert

    replay.forget()
    replays = []
    play = replay.replay

    def counted(*args: object, **kwargs: object) -> object:
        replays.append(1)
        return play(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(replay, "replay", counted)
    root = sample_set[0]
    out = tmp_path / "out"
    summary = convert([root / "CT", root / "MR"], out, jobs=1, window=mode, bits=bits)
    assert summary.failed == 0 and len(replays) >= 20 - 2 + 5 - 2
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    problems = []
    for i, row in enumerate(rows):
        path = Path(row["source"])
        ds = decoding.read_dataset(path)
        window = (float(row["window_center"]), float(row["window_width"]))
        args = _dcmtk_args(ds, mode, window)
        ref = _dcmtk_render(path, args, bits, tmp_path / f"ref{i}.png", 1)
        ours = imagecodecs.png_decode((out / row["output"]).read_bytes())
        diff = np.abs(ref.astype(np.int64) - ours.astype(np.int64))
        if ref.shape != ours.shape or diff.max() > _tolerance(ds, bits, False):
            problems.append(f"{path.name}: max difference {diff.max()} with {args}")
    assert not problems, "\n".join(problems)
    replay.forget()
