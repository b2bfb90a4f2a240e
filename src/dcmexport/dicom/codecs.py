"""Decoders for what pydicom's plugins leave out and DCMTK or GDCM decode.

- JPEG codestreams through `imagecodecs` (libjpeg-turbo 3): 12-bit JPEG Extended streams
  that libjpeg (pylibjpeg) rejects as "misplaced marker", and the retired JPEG processes
  6/8 (1.2.840.10008.1.2.4.53) and 10/12 (…4.55, progressive), which no pydicom plugin reads;
- Deflated Image Frame Compression (1.2.840.10008.1.2.8.1): each frame a Deflate stream of
  native little-endian pixels;
- ACR-NEMA packed 12-bit pixels (Bits Allocated 12: two pixels in three bytes);
- encapsulated video (MPEG-2, H.264, HEVC) through PyAV;
- recognising a JPEG-family codestream by its markers, for files whose transfer syntax
  says native while the pixel data holds a compressed stream.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

import numpy as np
from pydicom.uid import UID

from ..errors import PixelDataError

#: pydicom has no decoder for these JPEG processes; imagecodecs does.
RETIRED_JPEG = {
    "1.2.840.10008.1.2.4.53": "JPEG Extended, Hierarchical-free processes 6 & 8 (retired)",
    "1.2.840.10008.1.2.4.55": "JPEG Full Progression, processes 10 & 12 (retired)",
}

#: Transfer syntaxes `decode_jpeg_family` decodes with imagecodecs.
IMAGECODECS_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.53",
    "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
}

DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"

#: Encapsulated video transfer syntaxes (PS3.5 8.2.5–8.2.8) and PyAV's demuxer for each.
VIDEO_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2.4.100": "mpegvideo",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.100.1": "mpegvideo",
    "1.2.840.10008.1.2.4.101": "mpegvideo",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.101.1": "mpegvideo",
    "1.2.840.10008.1.2.4.102": "h264",  # MPEG-4 AVC/H.264 HP@L4.1
    "1.2.840.10008.1.2.4.102.1": "h264",
    "1.2.840.10008.1.2.4.103": "h264",  # BD-compatible HP@L4.1
    "1.2.840.10008.1.2.4.103.1": "h264",
    "1.2.840.10008.1.2.4.104": "h264",  # HP@L4.2 for 2D video
    "1.2.840.10008.1.2.4.104.1": "h264",
    "1.2.840.10008.1.2.4.105": "h264",  # HP@L4.2 for 3D video
    "1.2.840.10008.1.2.4.105.1": "h264",
    "1.2.840.10008.1.2.4.106": "h264",  # Stereo HP@L4.2
    "1.2.840.10008.1.2.4.106.1": "h264",
    "1.2.840.10008.1.2.4.107": "hevc",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": "hevc",  # HEVC/H.265 Main 10 Profile / Level 5.1
}

_ITEM_TAG = b"\xfe\xff\x00\xe0"


def is_video(ts: str) -> bool:
    """True for the encapsulated MPEG-2, H.264 and HEVC transfer syntaxes."""
    return str(ts) in VIDEO_SYNTAXES


def imagecodecs_available() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def decode_jpeg_family(data: bytes, ts: str, *, keep_ybr: bool) -> np.ndarray:
    """One frame's codestream decoded with imagecodecs (ImportError if it is not installed).

    `keep_ybr`: leave YCbCr samples as they are (12-bit colour, converted by our pipeline as
    for pylibjpeg's output); otherwise libjpeg-turbo converts 8-bit YCbCr to RGB, as the
    pydicom JPEG plugins do.
    """
    import imagecodecs

    ts = str(ts)
    try:
        if ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
            return np.asarray(imagecodecs.jpegls_decode(data))
        if ts in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"):
            return np.asarray(imagecodecs.jpeg2k_decode(data))
        if keep_ybr:
            ycbcr = imagecodecs.JPEG8.CS.YCbCr
            try:
                return np.asarray(
                    imagecodecs.jpeg8_decode(data, colorspace=ycbcr, outcolorspace=ycbcr)
                )
            except Exception:  # grey or a codestream without YCbCr components
                pass
        try:
            return np.asarray(imagecodecs.jpeg8_decode(data))
        except Exception:
            if ts in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
                return np.asarray(imagecodecs.ljpeg_decode(data))
            raise
    except Exception as exc:
        raise PixelDataError(f"imagecodecs: {' '.join(str(exc).split())[:200]}") from None


def sniff_codestream(data: bytes) -> UID | None:
    """The transfer syntax of a compressed codestream, read from its markers, or None.

    Used when a native transfer syntax labels pixel data that is in fact a JPEG, JPEG-LS or
    JPEG 2000 stream (written by some old devices and converters), as DCMTK and GDCM detect.
    """
    if data[:4] == b"\xff\x4f\xff\x51" or data[4:8] == b"jP  ":
        return UID("1.2.840.10008.1.2.4.90")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xC0,):
            return UID("1.2.840.10008.1.2.4.50")
        if marker in (0xC1,):
            return UID("1.2.840.10008.1.2.4.51")
        if marker in (0xC2, 0xC6):
            return UID("1.2.840.10008.1.2.4.55")
        if marker in (0xC3, 0xC7):
            return UID("1.2.840.10008.1.2.4.57")
        if marker == 0xF7:
            return UID("1.2.840.10008.1.2.4.80")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        i += 2 + length
    return None


def first_fragment(value: bytes) -> bytes:
    """The first non-empty fragment of encapsulated pixel data (after the offset table)."""
    offset = 0
    while offset + 8 <= len(value) and value[offset : offset + 4] == _ITEM_TAG:
        length = int.from_bytes(value[offset + 4 : offset + 8], "little")
        fragment = value[offset + 8 : offset + 8 + length]
        if offset and fragment:
            return fragment
        offset += 8 + length
    return b""


def inflate(data: bytes) -> bytes:
    """A Deflate stream (RFC 1951), or a zlib-wrapped one as some writers make."""
    for wbits in (-15, 15):
        try:
            return zlib.decompress(data, wbits)
        except zlib.error:
            continue
    raise PixelDataError("Deflated Image Frame Compression: the frame is not a Deflate stream")


def unpack_12bit(data: bytes, count: int) -> np.ndarray:
    """ACR-NEMA packed 12-bit samples (Bits Allocated 12) as uint16.

    Pixels are a bit stream in little-endian 16-bit words, as DCMTK reads them: bytes
    b0 b1 b2 hold p0 = b0 | (b1 & 0x0F) << 8 and p1 = b1 >> 4 | b2 << 4.
    """
    need = (count * 3 + 1) // 2
    raw = np.frombuffer(data[:need], dtype=np.uint8)
    if raw.size < need:
        raw = np.concatenate([raw, np.zeros(need - raw.size, np.uint8)])
    if raw.size % 3:
        raw = np.concatenate([raw, np.zeros(3 - raw.size % 3, np.uint8)])
    triples = raw.reshape(-1, 3).astype(np.uint16)
    out = np.empty(triples.shape[0] * 2, dtype=np.uint16)
    out[0::2] = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    out[1::2] = (triples[:, 1] >> 4) | (triples[:, 2] << 4)
    return out[:count]


def video_stream(fragments: Iterator[bytes]) -> bytes:
    """The elementary stream of encapsulated video: its fragments joined (PS3.5 8.2.5)."""
    return b"".join(fragments)


def iter_video_frames(stream: bytes, ts: str, *, grey: bool) -> Iterator[np.ndarray]:
    """Decoded frames of an MPEG-2/H.264/HEVC elementary stream, in presentation order:
    (rows, columns, 3) RGB, or (rows, columns) luma for MONOCHROME video."""
    import av

    try:
        container = av.open(io.BytesIO(stream), "r", format=VIDEO_SYNTAXES[str(ts)])
    except Exception as exc:
        raise PixelDataError(f"cannot open the video stream ({_one_line(exc)})") from None
    with container:
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="gray" if grey else "rgb24")
        except av.error.FFmpegError as exc:
            raise PixelDataError(f"cannot decode the video stream ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
