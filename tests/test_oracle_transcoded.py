"""The same pixels in the encodings hospitals send, made by DCMTK's own encoders.

Third-party files are mostly written by DCMTK-, GDCM- or vendor-based software, not by
pydicom. Each source (signed CT, MR, RGB, palette, 12-bit RGB) is re-encoded with
``dcmcjpeg`` (lossless SV1, baseline, extended), ``dcmcjpls`` (lossless, near-lossless),
``dcmcrle`` and ``dcmconv`` (big endian, deflated), and our rendering of every copy must agree
with DCMTK's rendering of that copy (±1, ±3 for lossy codecs). This caught palette LUTs read
in the wrong byte order from big-endian files, pylibjpeg's chroma upsampling on 8-bit JPEG
Extended, and 12-bit colour JPEG that pydicom's colour conversion refused.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from .conftest import pydicom_file
from .test_oracle_dcmtk import _disagreement, _image

ENCODERS = {
    "jpeg-lossless": ["dcmcjpeg", "+e1"],
    "jpeg-baseline": ["dcmcjpeg", "+eb"],
    "jpeg-extended": ["dcmcjpeg", "+ee"],
    "jpegls-lossless": ["dcmcjpls", "+el"],
    "jpegls-near": ["dcmcjpls", "+en"],
    "rle": ["dcmcrle"],
    "big-endian": ["dcmconv", "+tb"],
    "deflated": ["dcmconv", "+td"],
}


def _rgb12(folder: Path) -> Path:
    """12-bit RGB in 16-bit words: what a 12-bit colour JPEG Extended file decodes to."""
    y, x = np.mgrid[0:40, 0:48]
    pixels = np.stack(  # smooth, as photographs are: lossy chroma of noise is decoder-specific
        [x * 4095 // 47, (47 - x) * 4095 // 47, 2048 + 2000 * np.sin(x / 5.0) * np.cos(y / 7.0)],
        axis=-1,
    ).astype(np.uint16)
    path = folder / "rgb12.dcm"
    _image(np.ascontiguousarray(pixels), "RGB", 12, 11).save_as(path, enforce_file_format=True)
    return path


SOURCES = {
    "ct-signed": lambda folder: pydicom_file("CT_small.dcm"),
    "mr": lambda folder: pydicom_file("MR_small.dcm"),
    "rgb": lambda folder: pydicom_file("examples_rgb_color.dcm"),
    "palette": lambda folder: pydicom_file("examples_palette.dcm"),
    "rgb-12-bit": _rgb12,
}


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path | str]:
    """(source, encoder) → the DCMTK-encoded copy, or why DCMTK refused to make it."""
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("DCMTK is not installed")
    folder = tmp_path_factory.mktemp("transcoded")
    copies: dict[tuple[str, str], Path | str] = {}
    for source_name, make in SOURCES.items():
        source = Path(make(folder))
        for encoder_name, command in ENCODERS.items():
            target = folder / f"{source_name}-{encoder_name}.dcm"
            result = subprocess.run(
                [*command, str(source), str(target)], capture_output=True, text=True
            )
            copies[source_name, encoder_name] = (
                target if result.returncode == 0 else result.stderr.strip()[-200:]
            )
    return copies


@pytest.mark.dcmtk
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_dcmtk_encoded_copies_match_dcmtk(
    source: str,
    encoder: str,
    bits: int,
    transcoded: dict[tuple[str, str], Path | str],
    tmp_path: Path,
    dcm2pnm: str,
) -> None:
    copy = transcoded[source, encoder]
    if isinstance(copy, str):
        pytest.skip(f"DCMTK does not encode it: {copy}")
    problem = _disagreement(copy, "auto", bits, tmp_path)
    assert problem is None, problem


@pytest.mark.dcmtk
def test_big_endian_palette_equals_little_endian(
    transcoded: dict[tuple[str, str], Path | str],
) -> None:
    """pydicom 3.0's apply_color_lut reads 16-bit LUT Data in the machine's byte order."""
    from dcmexport.render.frame import render_frame

    copy = transcoded["palette", "big-endian"]
    assert isinstance(copy, Path)
    assert not pydicom.dcmread(copy).is_little_endian
    original = render_frame(pydicom_file("examples_palette.dcm"))
    assert np.array_equal(render_frame(copy), original)
