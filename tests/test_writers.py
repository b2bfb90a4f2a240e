"""Still-image writers: lossless round trips, no metadata, and atomic writes."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from dcmexport.exporters.encoders import encode_jpeg, encode_still, encode_tiff
from dcmexport.exporters.png import encode_png
from dcmexport.options import StillFormat
from dcmexport.store import local as writers
from dcmexport.store import write_atomic

SIZES = [(1, 1), (3, 7), (513, 257)]


def random_image(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def smooth_image(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Gradients and a gentle wave, covering most of the range; odd sizes welcome."""
    top = np.iinfo(dtype).max
    rows, cols = shape[:2]
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    base = 0.5 + 0.25 * np.sin(x / 23.0) + 0.25 * np.cos(y / 31.0)
    if len(shape) == 3:
        base = np.stack([base, (base + x / max(cols, 1)) / 2, 1 - base], axis=-1)
    return np.clip(np.round(base * top), 0, top).astype(dtype)


def images(kind: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return random_image(shape, dtype) if kind == "random" else smooth_image(shape, dtype)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


# --- PNG ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    ("dtype", "channels"), [(np.uint8, 0), (np.uint16, 0), (np.uint8, 3)], ids=["u8", "u16", "rgb8"]
)
def test_png_round_trip_pillow(
    dtype: type, channels: int, size: tuple[int, int], kind: str
) -> None:
    shape = (*size, channels) if channels else size
    image = images(kind, shape, dtype)
    data = encode_png(image)
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.load()
        assert decoded.size == (size[1], size[0])
        grey = ("L",) if dtype == np.uint8 else ("I;16", "I;16B", "I")
        assert decoded.mode in (("RGB",) if channels else grey)
        back = np.asarray(decoded)
    assert back.shape == image.shape
    assert np.array_equal(back.astype(np.int64), image.astype(np.int64))


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_png_16bit_rgb_round_trip_imagecodecs(size: tuple[int, int], kind: str) -> None:
    image = images(kind, (*size, 3), np.uint16)
    back = imagecodecs.png_decode(encode_png(image))
    assert back.dtype == np.uint16
    assert back.shape == image.shape
    assert np.array_equal(back, image)


@pytest.mark.parametrize(
    ("dtype", "channels", "depth", "colour_type"),
    [(np.uint8, 0, 8, 0), (np.uint16, 0, 16, 0), (np.uint8, 3, 8, 2), (np.uint16, 3, 16, 2)],
)
def test_png_has_only_ihdr_idat_iend(
    dtype: type, channels: int, depth: int, colour_type: int
) -> None:
    shape = (5, 9, channels) if channels else (5, 9)
    chunks = png_chunks(encode_png(random_image(shape, dtype, seed=3)))
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, bit_depth, ctype, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (width, height, bit_depth, ctype) == (9, 5, depth, colour_type)
    assert (compression, filtering, interlace) == (0, 0, 0)
    assert chunks[2][1] == b""


def test_png_non_contiguous_input() -> None:
    base = random_image((40, 30, 3), np.uint8, seed=5)
    view = base[::2, ::-3]  # strided, reversed
    assert not view.flags.c_contiguous
    with Image.open(io.BytesIO(encode_png(view))) as decoded:
        assert np.array_equal(np.asarray(decoded), view)
    grey16 = random_image((30, 40), np.uint16, seed=6).T
    assert np.array_equal(imagecodecs.png_decode(encode_png(grey16)), grey16)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_png_compression_levels_lossless(level: int) -> None:
    image = smooth_image((31, 17), np.uint16)
    assert np.array_equal(imagecodecs.png_decode(encode_png(image, level=level)), image)


@pytest.mark.parametrize("dtype", [np.int16, np.int8, np.uint32, np.float32, np.float64, bool])
def test_png_wrong_dtype_raises(dtype: type) -> None:
    with pytest.raises(TypeError):
        encode_png(np.zeros((4, 4), dtype=dtype))


@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 4, 4), (4, 4, 3, 1), (2, 4, 4, 3)])
def test_png_wrong_shape_raises_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        encode_png(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize("shape", [(), (16,)])
def test_png_too_few_dimensions_raises(shape: tuple[int, ...]) -> None:
    # Currently an IndexError from image.shape[2] (reported): ValueError would be consistent.
    with pytest.raises((ValueError, IndexError)):
        encode_png(np.zeros(shape, dtype=np.uint8))


# --- TIFF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (65, 33)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    ("dtype", "channels"),
    [(np.uint8, 0), (np.uint16, 0), (np.uint8, 3), (np.uint16, 3)],
    ids=["u8", "u16", "rgb8", "rgb16"],
)
def test_tiff_round_trip(dtype: type, channels: int, size: tuple[int, int]) -> None:
    shape = (*size, channels) if channels else size
    image = random_image(shape, dtype, seed=11)
    data = encode_tiff(image)
    back = tifffile.imread(io.BytesIO(data))
    assert back.dtype == image.dtype
    assert back.shape == image.shape
    assert np.array_equal(back, image)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert page.photometric == (
            tifffile.PHOTOMETRIC.RGB if channels else tifffile.PHOTOMETRIC.MINISBLACK
        )
        assert page.compression == tifffile.COMPRESSION.NONE


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_has_no_metadata_tags(shape: tuple[int, ...], dtype: type) -> None:
    data = encode_tiff(random_image(shape, dtype, seed=2))
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert len(tif.pages) == 1
        tags = tif.pages[0].tags
        names = {tag.name for tag in tags.values()}
        codes = {tag.code for tag in tags.values()}
    assert "ImageDescription" not in names and 270 not in codes
    assert "Software" not in names and 305 not in codes
    assert "DateTime" not in names and 306 not in codes
    assert b"tifffile" not in data


# --- JPEG -----------------------------------------------------------------------------------


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes of the segments before the entropy-coded data (SOI … SOS)."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [0xD8], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    assert data[-2:] == b"\xff\xd9"
    return markers


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (129, 67)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("channels", [0, 3], ids=["grey", "rgb"])
def test_jpeg_decodes_to_right_size_and_mode(channels: int, size: tuple[int, int]) -> None:
    shape = (*size, channels) if channels else size
    data = encode_jpeg(smooth_image(shape, np.uint8))
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "JPEG"
        assert decoded.size == (size[1], size[0])
        assert decoded.mode == ("RGB" if channels else "L")


@pytest.mark.parametrize("channels", [0, 3], ids=["grey", "rgb"])
def test_jpeg_close_to_input_at_quality_90(channels: int) -> None:
    shape = (201, 157, channels) if channels else (201, 157)
    image = smooth_image(shape, np.uint8)
    with Image.open(io.BytesIO(encode_jpeg(image, quality=90))) as decoded:
        back = np.asarray(decoded).astype(np.int64)
    assert np.abs(back - image.astype(np.int64)).mean() < 3


def test_jpeg_quality_changes_size() -> None:
    image = random_image((64, 64), np.uint8, seed=9)
    assert len(encode_jpeg(image, quality=30)) < len(encode_jpeg(image, quality=95))


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 3)])
def test_jpeg_16bit_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros(shape, dtype=np.uint16))


@pytest.mark.parametrize("channels", [0, 3], ids=["grey", "rgb"])
def test_jpeg_has_no_exif_or_comment(channels: int) -> None:
    shape = (16, 24, channels) if channels else (16, 24)
    data = encode_jpeg(random_image(shape, np.uint8, seed=4))
    markers = jpeg_markers(data)
    assert 0xE1 not in markers  # APP1: EXIF / XMP
    assert 0xFE not in markers  # COM
    assert not [m for m in markers if 0xE2 <= m <= 0xEF]  # no other application segments
    assert b"Exif" not in data


# --- encode_still ---------------------------------------------------------------------------


def test_encode_still_dispatch() -> None:
    image = smooth_image((10, 12), np.uint8)
    png = encode_still(image, StillFormat.PNG)
    assert png == encode_png(image)
    jpeg = encode_still(image, StillFormat.JPEG, quality=80)
    assert jpeg == encode_jpeg(image, quality=80)
    assert jpeg[:3] == b"\xff\xd8\xff"
    tiff = encode_still(image, StillFormat.TIFF)
    assert tiff[:4] in (b"II*\x00", b"MM\x00*")
    assert np.array_equal(tifffile.imread(io.BytesIO(tiff)), image)


# --- write_atomic ---------------------------------------------------------------------------


def test_write_atomic_writes_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out" / "deeper" / "image.png"
    payload = os.urandom(100_000)
    write_atomic(target, payload)
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["image.png"]


def test_write_atomic_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "image.png"
    target.write_bytes(b"old contents")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]


@pytest.mark.parametrize("existing", [True, False])
def test_write_atomic_failed_rename_leaves_destination_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    target = tmp_path / "image.png"
    if existing:
        target.write_bytes(b"old contents")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writers.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new contents" * 1000)
    monkeypatch.undo()
    if existing:
        assert target.read_bytes() == b"old contents"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_write_atomic_failed_write_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "image.png"
    target.write_bytes(b"old contents")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]


def test_write_atomic_interrupt_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "image.png"

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the store


def test_store_put_writes_with_default_permissions_and_no_temp_left(tmp_path: Path) -> None:
    from dcmexport.store import LocalStore

    store = LocalStore(tmp_path / "out")
    store.clear_temp()
    assert store.put("a/b/x.png", b"one") == "a/b/x.png"
    assert store.put("a/b/x.png", b"two") == "a/b/x.png"  # replaced atomically
    target = tmp_path / "out" / "a" / "b" / "x.png"
    assert target.read_bytes() == b"two"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert list(store.temp_dir.iterdir()) == []


def test_store_put_finishes_short_writes_and_cleans_up_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`put` writes with `os.write`, which may write less than asked (a signal, a pipe-like
    file system): it carries on until every byte is out; a failing write leaves no file."""
    from dcmexport.store import LocalStore

    real_write = os.write
    monkeypatch.setattr(writers.os, "write", lambda fd, data: real_write(fd, bytes(data)[:1000]))
    store = LocalStore(tmp_path / "out")
    store.clear_temp()
    data = random_image((100, 101), np.uint8).tobytes()
    assert store.put("x.png", data) == "x.png"
    assert (tmp_path / "out" / "x.png").read_bytes() == data

    def failing(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.os, "write", failing)
    with pytest.raises(OSError, match="No space"):
        store.put("y.png", data)
    assert not (tmp_path / "out" / "y.png").exists()
    assert list(store.temp_dir.iterdir()) == []


@pytest.mark.parametrize("rel", ["../x.png", "/etc/x.png", "a/..", "."])
def test_store_put_refuses_names_that_leave_out(rel: str, tmp_path: Path) -> None:
    from dcmexport.errors import OutsideOutputError
    from dcmexport.store import LocalStore

    store = LocalStore(tmp_path / "out")
    with pytest.raises(OutsideOutputError):
        store.put(rel, b"x")
    assert not (tmp_path / "x.png").exists()


def test_store_put_never_follows_links_out_of_out(tmp_path: Path) -> None:
    """A folder inside OUT that links outside is refused; a link at the file name is replaced
    by the file, never written through."""
    from dcmexport.errors import OutsideOutputError
    from dcmexport.store import LocalStore

    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "escape").symlink_to(outside, target_is_directory=True)
    (out / "victim.png").symlink_to(outside / "victim.png")
    store = LocalStore(out)
    with pytest.raises(OutsideOutputError):
        store.put("escape/x.png", b"x")
    store.put("victim.png", b"mine")
    assert list(outside.iterdir()) == []
    assert not (out / "victim.png").is_symlink() and (out / "victim.png").read_bytes() == b"mine"


def test_store_survives_pickling_and_a_stale_temp_name(tmp_path: Path) -> None:
    import pickle

    from dcmexport.store import LocalStore
    from dcmexport.store import local as store_local

    store = LocalStore(tmp_path / "out")
    store.clear_temp()
    store.put("a.png", b"1")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.root == store.root and copy.put("b.png", b"2") == "b.png"
    # a killed run with the same pid left the next temporary name behind: skipped, not failed
    peek = next(store_local._TEMP_COUNTER)
    (store.temp_dir / f".tmp-{os.getpid()}-{peek + 1}.png").write_bytes(b"stale")
    assert store.put("c.png", b"3") == "c.png"
    assert (tmp_path / "out" / "c.png").read_bytes() == b"3"


@pytest.mark.parametrize("level", [0, 1, 3])
def test_png_idat_is_a_zlib_stream_with_the_reference_adler32(level: int) -> None:
    """zlib itself checks the trailer: a wrong Adler-32 (seen once under load from ISA-L's
    own framing) would fail here, as it fails in libpng-based viewers."""
    import struct
    import zlib

    image = random_image((37, 53), np.uint8, seed=level)
    data = encode_png(image, level=level)
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + length])  # raises on a bad Adler-32
    assert len(raw) == 37 * (53 + 1)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 5551, 5552, 5553, 65536, 512 * 513, 3 << 20])
@pytest.mark.parametrize("offset", [0, 3])
def test_png_checksums_are_zlibs(size: int, offset: int) -> None:
    """The PNG writer's Adler-32 and CRC-32 (libdeflate's when `deflate` is installed) give
    stdlib zlib's values: at zlib's block boundary (5552), unaligned, chained from a value."""
    from dcmexport.exporters import png

    data = memoryview(np.random.default_rng(size).bytes(size + offset))[offset:]
    assert png._adler32(data) == zlib.adler32(data)
    assert png._crc32(data) == zlib.crc32(data)
    assert png._crc32(data, 0x1234ABCD) == zlib.crc32(data, 0x1234ABCD)
    assert png._adler32(data, 0x00050007) == zlib.adler32(data, 0x00050007)
