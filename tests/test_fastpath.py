"""The lean paths for the common case agree with the general ones they shortcut.

Oracles: pydicom's own File Meta reader and `pixel_array` decoder, and our general
`frame_transforms` / `PixelDescription.from_dataset`, on every sample file and on pydicom's
bundled test files (native, big-endian, truncated, compressed, multi-frame).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dcmexport.dicom import decoding, native
from dcmexport.dicom.rawkey import raw_key
from dcmexport.render import fastpath
from dcmexport.render.pipeline import (
    FrameTransforms,
    PixelDescription,
    frame_transforms,
    modality_rescale,
)

from .conftest import pydicom_test_files_dir


def _dicom_files(sample_set: tuple[Path, list[Path]]) -> list[Path]:
    pydicom_files = sorted(pydicom_test_files_dir().glob("*.dcm"))
    return [p for p in sample_set[1] if p.suffix == ".dcm"] + pydicom_files


def test_meta_transfer_syntax_agrees_with_pydicom(sample_set: tuple[Path, list[Path]]) -> None:
    checked = 0
    for path in _dicom_files(sample_set):
        data = path.read_bytes()
        if data[128:132] != b"DICM":
            continue
        ours = native.meta_transfer_syntax(data)
        if ours is None:
            continue
        meta = pydicom.dcmread(path, force=True, stop_before_pixels=True).file_meta
        assert ours == str(meta.TransferSyntaxUID), path.name
        checked += 1
    assert checked > 20


def test_native_frames_equal_pydicom(sample_set: tuple[Path, list[Path]]) -> None:
    """Where the lean decode applies it gives pydicom's array exactly (dtype included);
    elsewhere it declines (compressed, big-endian, colour, truncated)."""
    from pydicom.pixels import pixel_array

    lean = 0
    for path in _dicom_files(sample_set):
        try:
            ds = decoding.read_dataset(path)
        except Exception:
            continue
        if "PixelData" not in ds:
            continue
        ts = decoding.transfer_syntax(ds)
        frame = native.native_frame(ds, ts, 0)
        if frame is None:
            assert not native.whole_native(ds, ts) or ts not in native._NATIVE_LITTLE
            continue
        expected = pixel_array(path, index=0, correct_unused_bits=False, as_rgb=False)
        assert frame.dtype == expected.dtype, path.name
        np.testing.assert_array_equal(frame, expected, err_msg=path.name)
        lean += 1
    assert lean > 10


def test_lean_paths_decline_what_they_do_not_cover() -> None:
    for name in ("MR_truncated.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "SC_rgb.dcm"):
        path = pydicom_test_files_dir() / name
        if not path.exists():
            continue
        ds = decoding.read_dataset(path)
        assert native.native_frame(ds, decoding.transfer_syntax(ds), 0) is None, name


def test_cached_transforms_equal_the_general_ones(sample_set: tuple[Path, list[Path]]) -> None:
    for path in _dicom_files(sample_set):
        try:
            ds = decoding.read_dataset(path)
            desc = PixelDescription.from_dataset(ds)
            expected = frame_transforms(ds, 0, desc)
        except Exception:
            continue
        for _ in range(2):  # computed, then from the cache
            fresh = decoding.read_dataset(path)
            assert fastpath.pixel_description(fresh) == desc, path.name
            _assert_same(fastpath.transforms(fresh, 0, desc), expected, path.name)
            assert fastpath.modality_rescale(fresh, 0, desc) == modality_rescale(ds, 0)


def test_transform_cache_keys_on_the_values(tmp_path: Path) -> None:
    """Two slices that differ only in their window get their own transforms."""
    from dcmexport.sample import write_ct_series

    first, second = write_ct_series(tmp_path, 2, size=16)
    ds = pydicom.dcmread(second)
    ds.WindowCenter, ds.WindowWidth = 123, 456
    ds.save_as(second)
    a, b = decoding.read_dataset(first), decoding.read_dataset(second)
    desc = fastpath.pixel_description(a)
    ta, tb = fastpath.transforms(a, 0, desc), fastpath.transforms(b, 0, desc)
    assert ta.windows != tb.windows
    _assert_same(tb, frame_transforms(decoding.read_dataset(second), 0, desc), "second")


def _assert_same(a: FrameTransforms, b: FrameTransforms, name: str) -> None:
    """Equal field by field, LUT arrays by value."""
    assert _plain(a) == _plain(b), name


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_plain(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


@pytest.mark.parametrize("deflated", ["image_dfl.dcm"])
def test_deflated_files_still_take_the_guarded_reader(deflated: str) -> None:
    path = pydicom_test_files_dir() / deflated
    if not path.exists():
        pytest.skip(f"{deflated} not bundled")
    assert decoding._maybe_deflated(path.read_bytes())
    assert decoding.read_dataset(path).file_meta.TransferSyntaxUID == (
        pydicom.uid.DeflatedExplicitVRLittleEndian
    )


def test_a_slice_as_the_worker_reads_it_is_cacheable(sample_set: tuple[Path, list[Path]]) -> None:
    """pydicom converts Specific Character Set on reading and the limit checks convert the
    Image Pixel counts: the caches must still key such a slice (or they never hit)."""
    ct = next(p for p in sample_set[1] if p.parent.name == "CT" and p.suffix == ".dcm")
    ds = decoding.read_dataset(ct)
    decoding.check_limits(ds)
    assert raw_key(ds, fastpath._PIXEL_TAGS) is not None
    assert raw_key(ds, fastpath._TRANSFORM_TAGS) is not None
