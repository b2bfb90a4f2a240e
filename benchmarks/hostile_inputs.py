"""Hostile and broken DICOM inputs, made on the spot (tests and `benchmarks/fuzz.py`).

Every builder writes one small file (a few KB; the archive and deflate bombs a few hundred
KB) whose header or codestream claims far more than it holds: each must be one `error` row,
refused before it allocates.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian

_SOP = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def _dataset(rows: int, columns: int, ts: UID = ExplicitVRLittleEndian, frames: int = 0) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = _SOP
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(rows)])
    ds.SOPClassUID = _SOP
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames:
        ds.NumberOfFrames = frames
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _encapsulated(ds: Dataset, frame: bytes, path: Path) -> Path:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _save(ds, path)


def jpeg_sof(path: Path, side: int = 65535) -> Path:
    """A JPEG baseline frame whose SOF claims `side` x `side` (an 8 x 8 header)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, side, side)
    return _encapsulated(_dataset(8, 8, pydicom.uid.JPEGBaseline8Bit), bytes(data), path)


def jpeg_ls_sof(path: Path, rows: int = 65535, columns: int = 65535) -> Path:
    """A JPEG-LS frame whose SOF55 claims rows x columns (0 rows: a DNL stream that hangs)."""
    import jpeg_ls

    data = bytearray(jpeg_ls.encode(np.zeros((8, 8), np.uint8)).tobytes())
    at = data.find(b"\xff\xf7")
    struct.pack_into(">HH", data, at + 5, rows, columns)
    return _encapsulated(_dataset(8, 8, pydicom.uid.JPEGLSLossless), bytes(data), path)


def j2k_siz(path: Path, side: int = 65535) -> Path:
    """A JPEG 2000 frame whose SIZ claims `side` x `side`."""
    from openjpeg import encode

    data = bytearray(encode(np.zeros((64, 64), np.uint8)))
    at = data.find(b"\xff\x4f\xff\x51")
    struct.pack_into(">II", data, at + 8, side, side)
    return _encapsulated(_dataset(8, 8, pydicom.uid.JPEG2000Lossless), bytes(data), path)


def rle_header(path: Path, side: int = 65535) -> Path:
    """An RLE image whose header claims `side` x `side` over a 130-byte frame."""
    frame = struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x81\x00"
    return _encapsulated(_dataset(side, side, pydicom.uid.RLELossless), frame, path)


def many_frames(path: Path, frames: int = 2**32, window: bool = False) -> Path:
    """A 64 x 64 image claiming `frames` frames over one frame of data."""
    ds = _dataset(64, 64, frames=frames)
    if window:
        ds.WindowCenter, ds.WindowWidth = 128, 256
        ds.FrameTime = 33
    ds.PixelData = bytes(64 * 64 * 4)
    return _save(ds, path)


def frame_time(path: Path, value: str = "0") -> Path:
    """A 3-frame cine with a broken Frame Time (0, or huge): the next timing source is used."""
    ds = _dataset(16, 16, frames=3)
    ds.FrameTime = value
    ds.CineRate = 5
    ds.PixelData = np.arange(3 * 16 * 16, dtype=np.uint8).tobytes()
    return _save(ds, path)


def deflate_bomb(path: Path, inflated: int = 80 * 2**20) -> Path:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to `inflated` bytes."""
    ds = _dataset(64, 64)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    head = io.BytesIO()
    pydicom.dcmwrite(head, ds, enforce_file_format=True)
    raw = head.getvalue()
    meta_end = 132 + 12 + struct.unpack_from("<I", raw, 132 + 8)[0]
    plain = struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 2) + b"X "  # Patient ID
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    # a private OB element of `inflated` zero bytes: (0009,0010) would need a creator; use
    # an undefined group-0011 element, explicit VR OB with a 4-byte length
    element = struct.pack("<HH2sHI", 0x0011, 0x0010, b"OB", 0, inflated)
    out = bytearray(raw[:meta_end])
    out += compressor.compress(plain + element)
    zeros = bytes(2**20)
    for _ in range(inflated // len(zeros)):
        out += compressor.compress(zeros)
    out += compressor.flush()
    path.write_bytes(bytes(out))
    return path


def zip_bomb(path: Path, inflated: int = 100 * 2**20) -> Path:
    """A zip whose one member inflates to `inflated` zero bytes."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("big.dcm", "w") as f,
    ):
        zeros = bytes(2**20)
        for _ in range(inflated // len(zeros)):
            f.write(zeros)
    return path


def tar_bomb(path: Path, inflated: int = 100 * 2**20) -> Path:
    """A .tar.gz whose one member is `inflated` zero bytes."""

    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = inflated

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("big.dcm")
        info.size = inflated
        tf.addfile(info, io.BufferedReader(Zeros()))
    return path


#: name -> builder of each bomb (small files; the archive bombs take a second to make).
BOMBS: dict[str, Callable[[Path], Path]] = {
    "jpeg_sof_65535.dcm": jpeg_sof,
    "jpeg_sof_30000.dcm": lambda p: jpeg_sof(p, 30000),
    "jpeg_ls_sof_65535.dcm": jpeg_ls_sof,
    "jpeg_ls_height_0.dcm": lambda p: jpeg_ls_sof(p, 0, 64),
    "j2k_siz_65535.dcm": j2k_siz,
    "rle_65535.dcm": rle_header,
    "frames_2p32.dcm": many_frames,
    "cine_2p31_window.dcm": lambda p: many_frames(p, 2**31 - 1, window=True),
    "deflated_bomb.dcm": deflate_bomb,
    "zip_bomb.zip": zip_bomb,
    "tar_bomb.tar.gz": tar_bomb,
}


def write_bombs(folder: Path) -> list[Path]:
    """Every bomb in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return [build(folder / name) for name, build in BOMBS.items()]


def write_broken(folder: Path, good: Path) -> list[Path]:
    """Broken inputs of every kind beside real ones (the issue's list), made from `good`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    made = []
    for name, content in (
        ("empty.dcm", b""),
        ("random.dcm", np.random.default_rng(7).bytes(4096)),
        ("preamble_only.dcm", bytes(128) + b"DICM"),
        ("truncated_10.dcm", data[: len(data) // 10]),
        ("truncated_50.dcm", data[: len(data) // 2]),
        ("truncated_97.dcm", data[: len(data) * 97 // 100]),
        ("zeros.dcm", bytes(2**20)),
    ):
        path = folder / name
        path.write_bytes(content)
        made.append(path)
    ds = pydicom.dcmread(good)
    ds.Rows = min(int(ds.Rows) * 4, 65535)
    made.append(_save(ds, folder / "lying_rows.dcm"))
    (folder / "x.dcm").mkdir(exist_ok=True)
    loop = folder / "loop"
    if not loop.exists():
        loop.symlink_to(folder, target_is_directory=True)
    odd = folder / "n\udcff\udcfeme.dcm"
    odd.write_bytes(data)
    made.append(odd)
    return made
