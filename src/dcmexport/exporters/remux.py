"""Encapsulated video (MPEG-2, H.264, HEVC) copied into MP4 without re-encoding.

The DICOM file holds an elementary stream: no container, so no timestamps. PyAV's raw
demuxers give H.264/HEVC packets none at all, and a stream with B-frames needs presentation
times that differ from decoding order. A first pass decodes the stream once (cheap next to
encoding) to learn each packet's place in presentation order; the second pass copies the
packets into MP4 with those times at the clip's frame rate. No pixel is changed.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

from ..dicom.codecs import VIDEO_SYNTAXES
from ..errors import PixelDataError


def presentation_ranks(stream: bytes, demuxer: str) -> list[int]:
    """For each packet in decoding order, its 0-based position in presentation order."""
    import av

    with av.open(io.BytesIO(stream), format=demuxer) as container:
        video = container.streams.video[0]
        shown: list[int] = []
        count = 0
        for packet in container.demux(video):
            if packet.size:
                packet.pts = packet.dts = count
                count += 1
            for frame in video.codec_context.decode(packet if packet.size else None):
                if frame.pts is not None:
                    shown.append(int(frame.pts))
    ranks = [0] * count
    for rank, index in enumerate(shown):
        if 0 <= index < count:
            ranks[index] = rank
    return ranks


def remux_to_mp4(stream: bytes, ts: str, fps: Fraction, path: Path) -> int:
    """Write the elementary `stream` of transfer syntax `ts` to `path` as MP4; frames copied.

    Returns the number of frames (packets) written.
    """
    import av

    demuxer = VIDEO_SYNTAXES[str(ts)]
    try:
        ranks = presentation_ranks(stream, demuxer)
    except av.error.FFmpegError as exc:
        raise PixelDataError(f"cannot read the video stream ({exc})") from None
    if not ranks:
        raise PixelDataError("the video stream holds no frames")
    delay = max(max(i - r for i, r in enumerate(ranks)), 0)
    time_base = 1 / Fraction(fps)
    with (
        av.open(io.BytesIO(stream), format=demuxer) as source,
        av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        video = source.streams.video[0]
        target = out.add_stream_from_template(video)
        target.time_base = time_base
        index = 0
        for packet in source.demux(video):
            if not packet.size:
                continue
            packet.stream = target
            packet.time_base = time_base
            packet.pts = ranks[index] if index < len(ranks) else index
            packet.dts = index - delay
            packet.duration = 1
            out.mux(packet)
            index += 1
    return index
