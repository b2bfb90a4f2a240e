"""Overlay planes (60xx) drawn into stills and video, checked against DCMTK's dcm2pnm.

Every case is a file made here with pydicom (or bundled with pydicom) and rendered, every
frame, at 8 and 16 bits, by us and by ``dcm2pnm``: with overlays (both defaults) and without
(``--no-overlays`` / ``dcm2pnm -O``). The two must agree within ±1 grey level, and the cases
that carry a drawable plane must actually change the picture.
"""

from __future__ import annotations

import copy
import csv
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dcmexport.dicom import decoding
from dcmexport.render.frame import render_dataset_frame, render_frame
from dcmexport.render.overlays import (
    OverlayTypeValues,
    apply_overlays,
    describe_overlays,
    overlay_planes,
)

from .conftest import dcmtk_tool, pydicom_file, pydicom_test_files_dir
from .test_oracle_dcmtk import _dcmtk_args, _dcmtk_render, _image

WINDOW = {"WindowCenter": 2048, "WindowWidth": 4096}


def _grey(frames: int = 1) -> np.ndarray:
    """12-bit ramps, a different picture per frame."""
    base = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    pictures = [base, base[::-1], base[:, ::-1], base.T]
    return np.stack([pictures[i % 4] for i in range(frames)]) if frames > 1 else base


def _box(rows: int = 20, columns: int = 30) -> np.ndarray:
    """A rectangle outline with a few inner strokes: every bit position of a byte used."""
    bits = np.zeros((rows, columns), np.uint8)
    bits[0, :] = bits[-1, :] = bits[:, 0] = bits[:, -1] = 1
    bits[5:15, 5:25:2] = 1
    return bits


def _pack(bits: np.ndarray) -> bytes:
    """Overlay Data: one bit per pixel, little-endian bit order, padded to an even length."""
    data = np.packbits(bits.astype(np.uint8).ravel(), bitorder="little").tobytes()
    return data + b"\0" * (len(data) % 2)


def _add_plane(
    ds: pydicom.Dataset,
    group: int,
    bits: np.ndarray,
    origin: tuple[int, int] = (5, 7),
    overlay_type: str = "G",
    frames: int | None = None,
    frame_origin: int | None = None,
) -> None:
    """An overlay plane in its own Overlay Data element (`bits` may be frames × rows × cols)."""
    rows, columns = bits.shape[-2:]
    ds.add_new((group, 0x0010), "US", rows)
    ds.add_new((group, 0x0011), "US", columns)
    ds.add_new((group, 0x0040), "CS", overlay_type)
    ds.add_new((group, 0x0050), "SS", list(origin))
    ds.add_new((group, 0x0100), "US", 1)
    ds.add_new((group, 0x0102), "US", 0)
    if frames is not None:
        ds.add_new((group, 0x0015), "IS", frames)
    if frame_origin is not None:
        ds.add_new((group, 0x0051), "US", frame_origin)
    ds.add_new((group, 0x3000), "OW", _pack(bits))


def _add_embedded(ds: pydicom.Dataset, group: int, bit: int) -> None:
    """A retired overlay whose bits are bit `bit` of the pixel data's container values."""
    ds.add_new((group, 0x0010), "US", int(ds.Rows))
    ds.add_new((group, 0x0011), "US", int(ds.Columns))
    ds.add_new((group, 0x0040), "CS", "G")
    ds.add_new((group, 0x0050), "SS", [1, 1])
    ds.add_new((group, 0x0100), "US", int(ds.BitsAllocated))
    ds.add_new((group, 0x0102), "US", bit)


def _grey_image(frames: int = 1, photometric: str = "MONOCHROME2") -> pydicom.Dataset:
    pixels = _grey(frames)
    ds = _image(pixels[0] if frames > 1 else pixels, photometric, 12, 11, **WINDOW)
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.PixelData = pixels.tobytes()
    return ds


def _stripes() -> tuple[np.ndarray, np.ndarray]:
    """Two regions (masks) for embedded planes."""
    a = np.zeros((64, 64), bool)
    a[10:20, 10:40] = True
    b = np.zeros((64, 64), bool)
    b[30:50, 20:25] = True
    return a, b


def case_one_plane() -> pydicom.Dataset:
    ds = _grey_image()
    _add_plane(ds, 0x6000, _box())
    return ds


def case_two_planes() -> pydicom.Dataset:
    ds = _grey_image()
    _add_plane(ds, 0x6000, _box())
    _add_plane(ds, 0x601E, _box(9, 13), origin=(40, 45))
    return ds


def case_origin_outside() -> pydicom.Dataset:
    """Origins negative and beyond the image: clipped, never wrapped."""
    ds = _grey_image()
    _add_plane(ds, 0x6000, _box(), origin=(-4, -6))
    _add_plane(ds, 0x6002, _box(), origin=(55, 50))
    _add_plane(ds, 0x6004, _box(), origin=(70, 70))  # wholly outside
    return ds


def case_roi() -> pydicom.Dataset:
    """A ROI plane: DCMTK darkens its rectangle outside the region, drawn after a graphic."""
    ds = _grey_image()
    _add_plane(ds, 0x6000, _box())
    _add_plane(ds, 0x6002, _box(), origin=(8, 10), overlay_type="R")
    return ds


def case_monochrome1() -> pydicom.Dataset:
    """Graphics are white after the MONOCHROME1 inversion too."""
    ds = _grey_image(photometric="MONOCHROME1")
    _add_plane(ds, 0x6000, _box())
    return ds


def case_8_bit() -> pydicom.Dataset:
    ds = _image((_grey() % 256).astype(np.uint8), "MONOCHROME2", 8, 7)
    _add_plane(ds, 0x6000, _box())
    return ds


def case_embedded_high_bits() -> pydicom.Dataset:
    """12 bits stored at High Bit 11, overlays at bits 15 and 12 (Bits Allocated 16)."""
    a, b = _stripes()
    pixels = _grey()
    pixels[a] |= 1 << 15
    pixels[b] |= 1 << 12
    ds = _image(pixels, "MONOCHROME2", 12, 11, **WINDOW)
    _add_embedded(ds, 0x6000, 15)
    _add_embedded(ds, 0x6002, 12)
    return ds


def case_embedded_rle() -> pydicom.Dataset:
    """Embedded bits survive lossless compression (dcm2pnm decompresses, then reads them)."""
    ds = case_embedded_high_bits()
    ds.compress(pydicom.uid.RLELossless)
    return ds


def case_embedded_inside_stored_bits() -> pydicom.Dataset:
    """An Overlay Bit Position inside Bits Stored is not an overlay: nothing drawn."""
    ds = _grey_image()
    _add_embedded(ds, 0x6000, 5)
    return ds


def case_multiframe_overlay() -> pydicom.Dataset:
    """Two overlay frames from Image Frame Origin 2: image frames 2 and 3 only."""
    ds = _grey_image(frames=4)
    bits = np.zeros((2, 20, 30), np.uint8)
    bits[0, 2:5, :] = 1
    bits[1, :, 2:5] = 1
    _add_plane(ds, 0x6000, bits, frames=2, frame_origin=2)
    return ds


def case_single_overlay_multiframe() -> pydicom.Dataset:
    """No Number of Frames in Overlay: the one overlay on every frame (CP-1974)."""
    ds = _grey_image(frames=4)
    _add_plane(ds, 0x6000, _box())
    return ds


def case_embedded_multiframe() -> pydicom.Dataset:
    """Embedded bits in frames 1 and 3 but no Number of Frames in Overlay: DCMTK draws
    frame 1's bits on every frame; with it, each frame's own (group 6002)."""
    a, b = _stripes()
    pixels = _grey(4)
    pixels[0][a] |= 1 << 15
    pixels[2][b] |= 1 << 15
    pixels[1][b] |= 1 << 14
    pixels[3][a] |= 1 << 14
    ds = _image(pixels[0], "MONOCHROME2", 12, 11, **WINDOW)
    ds.NumberOfFrames = 4
    ds.PixelData = pixels.tobytes()
    _add_embedded(ds, 0x6000, 15)
    _add_embedded(ds, 0x6002, 14)
    ds.add_new((0x6002, 0x0015), "IS", 4)
    return ds


def case_colour() -> pydicom.Dataset:
    """DCMTK draws overlays on grey images only; so do we."""
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ds = _image(rgb, "RGB", 8, 7)
    _add_plane(ds, 0x6000, _box())
    return ds


def case_incomplete() -> pydicom.Dataset:
    """Overlay Data too short, and a plane without Overlay Origin: neither is drawn."""
    ds = _grey_image()
    _add_plane(ds, 0x6000, _box())
    ds[0x60003000].value = ds[0x60003000].value[:40]
    _add_plane(ds, 0x6002, _box())
    del ds[0x60020050]
    return ds


#: name → (builder, the groups drawn on some frame)
CASES: dict[str, tuple[Callable[[], pydicom.Dataset], set[int]]] = {
    "one-plane": (case_one_plane, {0x6000}),
    "two-planes": (case_two_planes, {0x6000, 0x601E}),
    "origin-outside": (case_origin_outside, {0x6000, 0x6002}),
    "roi": (case_roi, {0x6000, 0x6002}),
    "monochrome1": (case_monochrome1, {0x6000}),
    "8-bit": (case_8_bit, {0x6000}),
    "embedded-high-bits": (case_embedded_high_bits, {0x6000, 0x6002}),
    "embedded-rle": (case_embedded_rle, {0x6000, 0x6002}),
    "embedded-inside-stored-bits": (case_embedded_inside_stored_bits, set()),
    "multiframe-overlay": (case_multiframe_overlay, {0x6000}),
    "single-overlay-multiframe": (case_single_overlay_multiframe, {0x6000}),
    "embedded-multiframe": (case_embedded_multiframe, {0x6000, 0x6002}),
    "colour": (case_colour, set()),
    "incomplete": (case_incomplete, set()),
}

BUNDLED = ["examples_overlay.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"]


def _agreement(path: Path, bits: int, tmp_path: Path) -> set[int]:
    """Render every frame of `path` with and without overlays, by us and by dcm2pnm; assert
    agreement within ±1 and return the groups we drew."""
    ds = decoding.read_dataset(path)
    drawn: set[int] = set()
    for frame in range(1, decoding.number_of_frames(ds) + 1):
        ours = {
            on: render_dataset_frame(ds, frame, bits=bits, source=path, overlays=on)
            for on in (True, False)
        }
        args = _dcmtk_args(ds, "auto", (ours[True].window_center, ours[True].window_width))
        theirs = {
            True: _dcmtk_render(path, args, bits, tmp_path / "on.png", frame),
            False: _dcmtk_render(path, ["-O", *args], bits, tmp_path / "off.png", frame),
        }
        for on in (True, False):
            diff = np.abs(ours[on].image.astype(np.int64) - theirs[on].astype(np.int64))
            label = f"frame {frame}, {bits} bits, overlays {'on' if on else 'off'}"
            assert diff.max() <= 1, f"{label}: {np.count_nonzero(diff > 1)} pixels differ"
        changed = not np.array_equal(theirs[True], theirs[False])
        assert changed == bool(ours[True].overlay_groups), f"frame {frame}: drawn where DCMTK not"
        assert ours[False].overlay_groups == ()
        drawn.update(ours[True].overlay_groups)
    return drawn


@pytest.mark.dcmtk
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name", sorted(CASES))
def test_overlays_match_dcmtk(name: str, bits: int, tmp_path: Path, dcm2pnm: str) -> None:
    build, expected = CASES[name]
    path = tmp_path / f"{name}.dcm"
    build().save_as(path, enforce_file_format=True)
    assert _agreement(path, bits, tmp_path) == expected


@pytest.mark.dcmtk
@pytest.mark.parametrize("bits", [8, 16])
def test_big_endian_overlay_data_matches_dcmtk(bits: int, tmp_path: Path, dcm2pnm: str) -> None:
    """Overlay Data (OW) of a big-endian file is in 16-bit words of that byte order."""
    little = tmp_path / "little.dcm"
    case_two_planes().save_as(little, enforce_file_format=True)
    big = tmp_path / "big.dcm"
    subprocess.run([dcmtk_tool("dcmconv"), "+tb", str(little), str(big)], check=True)
    assert not pydicom.dcmread(big).is_little_endian
    assert _agreement(big, bits, tmp_path) == {0x6000, 0x601E}
    assert np.array_equal(render_frame(big, bits=bits), render_frame(little, bits=bits))


@pytest.mark.dcmtk
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_overlay_files_match_dcmtk(
    name: str, bits: int, tmp_path: Path, dcm2pnm: str
) -> None:
    assert _agreement(pydicom_file(name), bits, tmp_path)


# --- The planes themselves, against pydicom's own overlay reader --------------------------------


@pytest.mark.parametrize("name", ["one-plane", "two-planes", "roi", "multiframe-overlay"])
def test_bitmaps_equal_pydicom_overlay_array(name: str) -> None:
    ds = CASES[name][0]()
    for frame_index in range(decoding.number_of_frames(ds)):
        for plane in overlay_planes(ds, frame_index):
            reference = np.asarray(ds.overlay_array(plane.group))
            if reference.ndim == 3:  # pydicom gives every overlay frame
                origin = int(ds[plane.group << 16 | 0x0051].value)
                reference = reference[frame_index - (origin - 1)]
            assert np.array_equal(plane.bitmap, reference.astype(bool))


def test_bundled_file_bitmap_equals_pydicom() -> None:
    path = pydicom_test_files_dir() / "examples_overlay.dcm"
    if not path.exists():
        pytest.skip("not bundled")
    ds = pydicom.dcmread(path)
    (plane,) = overlay_planes(ds, 0)
    assert plane.group == 0x6000 and plane.overlay_type is OverlayTypeValues.GRAPHICS
    assert np.array_equal(plane.bitmap, ds.overlay_array(0x6000).astype(bool))


def test_embedded_planes_need_the_container() -> None:
    ds = case_embedded_high_bits()
    assert overlay_planes(ds, 0) == []  # without container values nothing can be read
    planes = overlay_planes(ds, 0, decoding.decode_frame(ds, 0))
    a, b = _stripes()
    assert [p.group for p in planes] == [0x6000, 0x6002]
    assert all(p.embedded for p in planes)
    assert np.array_equal(planes[0].bitmap, a) and np.array_equal(planes[1].bitmap, b)


def test_apply_overlays_returns_a_new_array() -> None:
    ds = case_one_plane()
    image = render_frame(ds, overlays=False)
    before = image.copy()
    drawn = apply_overlays(image, overlay_planes(ds, 0))
    assert np.array_equal(image, before)
    assert drawn is not image and int(drawn.max()) == 255
    assert np.array_equal(drawn, render_frame(ds))


def test_raw_output_has_no_overlays() -> None:
    ds = case_one_plane()
    rendered = render_dataset_frame(ds, raw=True, bits=16)
    assert rendered.overlay_groups == ()
    assert np.array_equal(rendered.image, _grey())


def test_the_dataset_is_not_changed() -> None:
    ds = case_embedded_multiframe()
    before = copy.deepcopy(ds)
    render_dataset_frame(ds, 3)
    assert ds == before


def test_describe_overlays() -> None:
    assert describe_overlays({0x6002, 0x6000, 0x601E}) == "overlays drawn: 6000, 6002, 601E"
    assert describe_overlays(()) == ""


# --- The command line ---------------------------------------------------------------------------


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_draws_overlays_by_default_and_no_overlays_leaves_them_out(tmp_path: Path) -> None:
    from PIL import Image

    from dcmexport.cli import main

    source = tmp_path / "in" / "overlay.dcm"
    source.parent.mkdir()
    case_two_planes().save_as(source, enforce_file_format=True)
    images, notes = {}, {}
    for flag in ("", "--overlays", "--no-overlays"):
        out = tmp_path / (flag or "default")
        args = ["convert", str(source), "-o", str(out), "-q", *([flag] if flag else [])]
        assert main(args) == 0
        images[flag] = np.asarray(Image.open(out / "overlay.png"))
        (row,) = _manifest(out)
        notes[flag] = row["note"]
    assert np.array_equal(images[""], images["--overlays"])
    assert not np.array_equal(images[""], images["--no-overlays"])
    assert np.array_equal(images["--no-overlays"], render_frame(source, overlays=False))
    assert notes[""] == notes["--overlays"] == "overlays drawn: 6000, 601E"
    assert notes["--no-overlays"] == ""


def test_cli_video_notes_the_overlays_drawn(tmp_path: Path) -> None:
    from dcmexport.cli import main

    source = tmp_path / "cine.dcm"
    case_multiframe_overlay().save_as(source, enforce_file_format=True)
    out = tmp_path / "out"
    assert main(["convert", str(source), "-o", str(out), "-q", "--video", "gif"]) == 0
    (row,) = _manifest(out)
    assert row["output"] == "cine.gif"
    assert row["note"].endswith("; overlays drawn: 6000")
    out = tmp_path / "off"
    args = ["convert", str(source), "-o", str(out), "-q", "--video", "gif", "--no-overlays"]
    assert main(args) == 0
    (row,) = _manifest(out)
    assert "overlays" not in row["note"]


def test_overlays_option_is_part_of_the_resume_key() -> None:
    from dcmexport.engine.batch import options_key
    from dcmexport.options import ConvertOptions

    assert ConvertOptions().overlays is True
    assert options_key(ConvertOptions()) != options_key(ConvertOptions(overlays=False))
