"""Real-world oddities made on the spot for tests/test_realworld.py: ACR-NEMA files without
File Meta, packed 12-bit pixels, truncations, mislabelled codestreams, encapsulated video,
float and 1-bit pixels. Each maker returns a pydicom Dataset or writes a file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def base_image(rows: int, columns: int, **attributes: object) -> Dataset:
    """A minimal Secondary Capture dataset without pixel data (file meta included)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def gradient(rows: int, columns: int, top: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture: differences show, lossy codecs stay close."""
    y, x = np.mgrid[0:rows, 0:columns]
    rng = np.random.default_rng(seed)
    image = (x + y) * top / (rows + columns - 2) + rng.normal(0, top / 50, (rows, columns))
    return np.clip(image, 0, top).astype(np.uint16)


def without_meta(ds: Dataset, *, implicit: bool = True, little: bool = True) -> bytes:
    """`ds` as an ACR-NEMA style file: no preamble, no File Meta, just the dataset."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    copy = ds.copy()
    copy.file_meta = FileMetaDataset()
    write_dataset(fp, copy)
    return bytes(fp.getvalue())


def pack_12bit(values: np.ndarray) -> bytes:
    """Pixels as ACR-NEMA Bits Allocated 12: a bit stream of little-endian 16-bit words."""
    v = values.ravel().astype(np.uint16)
    if v.size % 2:
        v = np.append(v, 0)
    a, b = v[0::2], v[1::2]
    out = np.empty((a.size, 3), np.uint8)
    out[:, 0] = a & 0xFF
    out[:, 1] = (a >> 8) | ((b & 0x0F) << 4)
    out[:, 2] = b >> 4
    data = out.tobytes()[: (values.size * 3 + 1) // 2]
    return data + b"\0" * (len(data) % 2)


def encode_video(
    codec: str, fmt: str, frames: int, rows: int, columns: int, pix_fmt: str = "yuv420p"
) -> bytes:
    """An elementary stream (MPEG-2, H.264 or HEVC) of a moving bar, encoded by PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        options = {"x265-params": "log-level=error"} if codec == "libx265" else {}
        stream = out.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = columns, rows, pix_fmt
        for i in range(frames):
            rgb = np.full((rows, columns, 3), 40, np.uint8)
            rgb[:, (i * 4) % columns : (i * 4) % columns + 8] = (220, 120, 30)
            rgb[..., 2] = np.uint8(i * 7 % 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


VIDEO_CODECS = {  # transfer syntax -> (PyAV encoder, raw muxer)
    "1.2.840.10008.1.2.4.100": ("mpeg2video", "mpeg2video"),
    "1.2.840.10008.1.2.4.102": ("libx264", "h264"),
    "1.2.840.10008.1.2.4.107": ("libx265", "hevc"),  # HEVC Main
    "1.2.840.10008.1.2.4.108": ("libx265", "hevc"),  # HEVC Main 10 (10-bit samples)
}
#: the encoder's pixel format where it is not 8-bit 4:2:0
VIDEO_PIXEL_FORMATS = {"1.2.840.10008.1.2.4.108": "yuv420p10le"}


def video_dataset(ts: str, frames: int = 30, rows: int = 48, columns: int = 64) -> Dataset:
    """A Video Endoscopic Image with its stream encapsulated as PS3.5 8.2.5 says."""
    codec, fmt = VIDEO_CODECS[ts]
    pix_fmt = VIDEO_PIXEL_FORMATS.get(ts, "yuv420p")
    stream = encode_video(codec, fmt, frames, rows, columns, pix_fmt)
    ds = base_image(rows, columns)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ts
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    ds.FrameTime = 40
    ds.CineRate = 25
    ds.PixelData = encapsulate([stream[i : i + 4000] for i in range(0, len(stream), 4000)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def part10_bytes(ds: Dataset) -> bytes:
    """`ds` as an explicit VR little endian Part 10 file, whatever its File Meta names as the
    transfer syntax (pydicom refuses to save one it does not know)."""
    from pydicom.filewriter import write_file_meta_info

    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=False)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=False)
    return path
