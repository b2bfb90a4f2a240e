"""Video files for cines and series: clip timing from the DICOM header, H.264 MP4, GIF.

MP4 is H.264 (libx264 through PyAV) in yuv420p with even dimensions and the index at the
front (``+faststart``): what every browser's ``<video>`` plays. Frames are encoded as they
arrive, so memory does not grow with the clip. GIF is written with Pillow, which needs all
frames at the end: a guard (`GifPlan`) bounds its size by downscaling and dropping frames.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..dicom.values import decimal_value
from ..errors import PixelDataError, UsageError, VideoError

DEFAULT_FPS = Fraction(10)
#: x264 constant quality (18–23 is "visually lossless" to "good"): on a noisy 512² fluoroscopy
#: cine, 20 gives 36 dB PSNR at half the size and 10 % less time than 18
MP4_CRF = 20
MP4_PRESET = "medium"
#: GIF guard: frames larger than this are downscaled (longest side, pixels) ...
GIF_MAX_SIDE = 640
#: ... and frames are dropped (every k-th kept) beyond this many pixels over the whole clip,
#: which bounds the GIF file (about a byte per pixel before LZW compression).
GIF_MAX_PIXELS = 100_000_000
#: browsers slow GIF frames shown for under 20 ms down to 100 ms: 50 fps is the fastest GIF
GIF_MIN_DELAY_CS = 2
_MAX_FPS = Fraction(1000)
#: slower than a frame per 1000 s is a broken value (its rate would round to 0): passed over
_MIN_FPS = Fraction(1, 1000)


@dataclasses.dataclass(frozen=True)
class ClipTiming:
    """How long each frame is shown.

    `fps` is the constant rate, or the average one when `durations_ms` gives each frame's own
    display time (variable timing from a Frame Time Vector). `source` names where it came from.
    """

    fps: Fraction
    source: str
    durations_ms: tuple[float, ...] | None = None

    def frame_durations(self, n_frames: int) -> list[float]:
        """Display time of each of `n_frames` frames, in milliseconds."""
        if self.durations_ms is not None:
            return list(self.durations_ms[:n_frames])
        return [1000 / float(self.fps)] * n_frames

    def describe(self) -> str:
        rate = f"{float(self.fps):.4g} fps"
        if self.durations_ms is not None:
            return f"variable timing, {rate} on average ({self.source})"
        return f"{rate} ({self.source})"


def nominal_rate(fps: float) -> Fraction:
    """`fps` as an exact fraction, snapped to a whole or NTSC rate when that close.

    Frame Time is stored in milliseconds with two decimals (66.67 for 15 fps), so the rate
    read back is off by up to 0.05 %; players and `ffprobe` should see the rate meant.
    """
    for nice in (Fraction(round(fps)), Fraction(round(fps * 1.001) * 1000, 1001)):
        if nice > 0 and abs(fps - float(nice)) <= 1e-3 * float(nice):
            return nice
    return Fraction(fps).limit_denominator(1000)


def _positive(value: object) -> float | None:
    number = decimal_value(value) if value not in (None, "") else None
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _frame_time_vector(ds: Dataset, n_frames: int) -> tuple[float, ...] | None:
    """Per-frame display times from (0018,1065): increment i+1 is how long frame i shows.

    The first increment is 0 by definition (PS3.3 C.7.6.5.1.2); the last frame is shown for
    the average increment. None if the vector is missing, short or not usable.
    """
    raw = ds.get("FrameTimeVector")
    if raw is None or n_frames < 2:
        return None
    values = [decimal_value(v) for v in (raw if isinstance(raw, Sequence) else [raw])]
    if len(values) < n_frames or any(v is None or not math.isfinite(v) for v in values):
        return None
    increments = [float(v) for v in values[1:n_frames]]  # type: ignore[arg-type]
    if any(v <= 0 for v in increments):
        return None
    return (*increments, sum(increments) / len(increments))


def clip_timing(ds: Dataset, n_frames: int, fps: float | None = None) -> ClipTiming:
    """The display timing of a cine, in order of trust (PS3.3 C.7.6.5, C.8.7.2):

    ``--fps``, Frame Time (0018,1063), Frame Time Vector (0018,1065), Cine Rate (0018,0040),
    Recommended Display Frame Rate (0008,2144), else 10 fps. Unusable values are passed over.
    """
    if fps is not None:
        if not 0 < fps <= _MAX_FPS:
            raise UsageError(f"--fps {fps}: use a rate above 0 and at most {_MAX_FPS}")
        return ClipTiming(nominal_rate(fps), "--fps")
    frame_time = _positive(ds.get("FrameTime"))
    if frame_time is not None and _MIN_FPS <= 1000 / frame_time <= _MAX_FPS:
        return ClipTiming(nominal_rate(1000 / frame_time), "Frame Time")
    durations = _frame_time_vector(ds, n_frames)
    if durations is not None and _MIN_FPS <= 1000 * len(durations) / sum(durations) <= _MAX_FPS:
        mean = sum(durations) / len(durations)
        rate = nominal_rate(1000 / mean)
        if max(durations) - min(durations) <= 0.01 * mean:  # constant within rounding
            return ClipTiming(rate, "Frame Time Vector")
        return ClipTiming(rate, "Frame Time Vector", durations)
    for keyword, name in (
        ("CineRate", "Cine Rate"),
        ("RecommendedDisplayFrameRate", "Recommended Display Frame Rate"),
    ):
        rate_value = _positive(ds.get(keyword))
        if rate_value is not None and _MIN_FPS <= rate_value <= _MAX_FPS:
            return ClipTiming(nominal_rate(rate_value), name)
    return ClipTiming(DEFAULT_FPS, "no timing in the file: default")


def gif_delay_cs(clock_ms: float, shown_cs: int) -> int:
    """The delay of the next GIF frame, in centiseconds, when the frame should end at
    `clock_ms` and the frames before it take `shown_cs`.

    GIF counts in 10 ms steps: tracking the real clock makes 15 fps (66.7 ms) 70, 60, 70, ...
    instead of a constant 60 that drifts to 16.7 fps. No delay is under `GIF_MIN_DELAY_CS`.
    """
    return max(round(clock_ms / 10) - shown_cs, GIF_MIN_DELAY_CS)


def fit_into(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """`image` (grey or RGB uint8) scaled to fit inside rows × columns with its aspect ratio
    kept, centred on black: a frame of another size in a video of the first frame's size.

    What a viewer does with such a frame (fit to the window, never stretch), and what
    ffmpeg's ``scale=W:H:force_original_aspect_ratio=decrease,pad=W:H:(ow-iw)/2:(oh-ih)/2``
    gives; ffmpeg's automatic scaling on a size change would stretch it instead.
    """
    from PIL import Image

    height, width = image.shape[:2]
    scale = min(rows / height, columns / width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))  # PIL: (w, h)
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    out = np.zeros((rows, columns, *image.shape[2:]), dtype=image.dtype)
    top, left = (rows - size[1]) // 2, (columns - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = resized
    return out


#: Full-range 8-bit grey to limited-range luma (BT.709 / BT.601 alike: Y' = 16 + 219 E')
LIMITED_RANGE_LUMA = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)


def yuv420p_of_grey(image: np.ndarray) -> np.ndarray:
    """An even-sized uint8 grey frame as one planar yuv420p buffer (Y rows, then the U and V
    quarter planes at the neutral 128): grey has no chroma, so no colour matrix or scaler."""
    rows, columns = image.shape
    out = np.empty((rows * 3 // 2, columns), dtype=np.uint8)
    np.take(LIMITED_RANGE_LUMA, image, out=out[:rows])
    out[rows:] = 128
    return out


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where a size is odd: yuv420p needs even dimensions."""
    rows, columns = image.shape[:2]
    pad = [(0, rows % 2), (0, columns % 2)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="edge") if rows % 2 or columns % 2 else image


#: libx264 refuses a side over 16,384 pixels and frames beyond its level limits; checked
#: (`movies.write_videos`) before a clip's writers open, so the reason is ours and not
#: FFmpeg's "Generic error", and the GIF and stills of that clip are still written
H264_MAX_SIDE = 16384
H264_MAX_PIXELS = 8192 * 8192


def check_h264_size(rows: int, columns: int) -> None:
    """`VideoError` if H.264 cannot hold frames of rows x columns."""
    if max(rows, columns) > H264_MAX_SIDE or rows * columns > H264_MAX_PIXELS:
        raise VideoError(
            f"frames of {columns} x {rows} pixels are larger than H.264 video allows "
            f"({H264_MAX_SIDE} pixels a side, {H264_MAX_PIXELS:,} a frame): no MP4 "
            "(use --video gif or --video none)"
        )


class Mp4Writer:
    """Encode 8-bit grey or RGB frames to an H.264 MP4 as they arrive.

    Colour goes through the BT.709 matrix in limited range, and the stream says so, so that
    browsers and players reproduce the source colours. Variable timing (a Frame Time Vector)
    is written as per-frame timestamps in milliseconds.
    """

    def __init__(self, path: Path, timing: ClipTiming, rows: int, columns: int) -> None:
        import av
        from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

        self._av = av
        # one scaler for the whole clip: `VideoFrame.reformat` builds a new one per frame,
        # which cost more than the conversion itself (2.8 against 0.8 ms a 512² frame)
        self._reformatter = VideoReformatter()
        self._reformat: dict[str, Any] = {
            "format": "yuv420p",
            "dst_colorspace": Colorspace.ITU709,
            "dst_color_range": ColorRange.MPEG,
        }
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._variable = timing.durations_ms is not None
            stream = self._container.add_stream("libx264", rate=timing.fps)
            stream.width, stream.height = columns + columns % 2, rows + rows % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(MP4_CRF), "preset": MP4_PRESET}
            context = stream.codec_context
            # frame threads, as the ffmpeg CLI gives x264; PyAV's default (slice threads)
            # encodes about 15 % slower on two cores (benchmarks/video_speed.py)
            context.thread_type = "FRAME"
            context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
            context.color_range = int(ColorRange.MPEG)
            if self._variable:
                stream.time_base = context.time_base = Fraction(1, 1000)
            self._stream = stream
        except BaseException:
            self._container.close()
            raise
        self._durations = timing.durations_ms
        self._index = 0
        self._clock_ms = 0.0
        self._closed = False
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Encode one (rows, columns) grey or (rows, columns, 3) RGB uint8 frame."""
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or not image.size:
            raise PixelDataError(f"a decoded frame of shape {image.shape} is not an image")
        image = pad_to_even(image)
        if image.ndim == 2:  # grey needs no matrix: Y' in limited range, neutral chroma
            frame = self._av.VideoFrame.from_ndarray(yuv420p_of_grey(image), format="yuv420p")
        else:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame = self._reformatter.reformat(frame, **self._reformat)
        if self._variable:
            assert self._durations is not None
            frame.pts = round(self._clock_ms)
            frame.time_base = Fraction(1, 1000)
            self._clock_ms += self._durations[min(self._index, len(self._durations) - 1)]
        else:
            frame.pts = self._index
        self._index += 1
        try:
            packets = self._stream.encode(frame)
        except self._av.error.FFmpegError as exc:  # e.g. the encoder would not open
            raise VideoError(f"the H.264 encoder refused the frames: {exc}") from exc
        for packet in packets:
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (moves the index to the front)."""
        try:
            if self.frames:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the file without flushing (after an error; harmless after `close`)."""
        if not self._closed:
            self._closed = True
            self._container.close()


@dataclasses.dataclass(frozen=True)
class GifPlan:
    """The GIF size guard for one clip: output size and which frames are kept (every `step`-th)."""

    rows: int
    columns: int
    step: int
    source_rows: int
    source_columns: int
    source_frames: int

    @classmethod
    def for_clip(cls, n_frames: int, rows: int, columns: int, timing: ClipTiming) -> GifPlan:
        scale = min(1.0, GIF_MAX_SIDE / max(rows, columns))
        out_rows, out_columns = max(round(rows * scale), 1), max(round(columns * scale), 1)
        by_size = math.ceil(n_frames * out_rows * out_columns / GIF_MAX_PIXELS)
        # frames shown under 20 ms: keep fewer, longer ones so the clip still runs in real time
        shortest = min(timing.frame_durations(n_frames)) if n_frames else 100.0
        by_speed = math.ceil(GIF_MIN_DELAY_CS * 10 / max(shortest, 1e-3) - 1e-9)
        return cls(out_rows, out_columns, max(by_size, by_speed, 1), rows, columns, n_frames)

    def kept(self, n_frames: int) -> int:
        return math.ceil(n_frames / self.step)

    def describe(self) -> str:
        """What the guard did, for the manifest (empty when the GIF is the full clip)."""
        done = []
        if (self.rows, self.columns) != (self.source_rows, self.source_columns):
            done.append(
                f"downscaled {self.source_columns}x{self.source_rows} to {self.columns}x{self.rows}"
            )
        if self.step > 1:
            kept = self.kept(self.source_frames)
            done.append(f"every {self.step}th frame kept ({self.source_frames} -> {kept})")
        return f"GIF guard: {', '.join(done)}" if done else ""


_GREY_PALETTE = bytes(level for level in range(256) for _ in range(3))


class GifWriter:
    """Write a looping GIF frame by frame within a `GifPlan` (memory does not grow).

    Uses Pillow's GIF frame writers (`getheader`/`getdata`) rather than ``save_all``, which
    holds every frame until the end and merges identical neighbours: a GIF has every kept
    frame, each with its own delay. Grey frames keep their 256 levels exactly; colour frames
    get their own 256-colour palette.
    """

    def __init__(self, path: Path, timing: ClipTiming, plan: GifPlan) -> None:
        self._path = path
        self._plan = plan
        self._durations = timing.frame_durations(plan.source_frames)
        self._pending = None  # the last kept frame: written once its delay is known
        self._pending_ms = 0.0
        self._clock_ms = 0.0
        self._shown_cs = 0
        self._file = None
        self._index = 0
        self.frames = 0

    def _picture(self, image: np.ndarray):
        from PIL import Image

        size = (self._plan.columns, self._plan.rows)
        picture = Image.fromarray(image)
        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.LANCZOS)
        if picture.mode == "RGB":
            return picture.quantize(256, method=Image.Quantize.FASTOCTREE)
        grey = Image.frombytes("P", size, picture.tobytes())
        grey.putpalette(_GREY_PALETTE)
        return grey

    def write(self, image: np.ndarray) -> None:
        """Add one (rows, columns) grey or (rows, columns, 3) RGB uint8 frame."""
        index, self._index = self._index, self._index + 1
        duration = self._durations[min(index, len(self._durations) - 1)]
        if index % self._plan.step:
            self._pending_ms += duration  # a dropped frame's time goes to the one shown
            return
        self._flush()
        self._pending = self._picture(image)
        self._pending_ms = duration

    def _flush(self) -> None:
        """Write the pending frame with a delay that keeps the GIF's clock on the real one."""
        from PIL import GifImagePlugin

        if self._pending is None:
            return
        if self._file is None:
            self._file = open(self._path, "wb")  # noqa: SIM115 - closed in close()/abort()
            header, _ = GifImagePlugin.getheader(self._pending.copy(), None, {"loop": 0})
            self._file.write(b"".join(header))
        self._clock_ms += self._pending_ms
        delay = gif_delay_cs(self._clock_ms, self._shown_cs)
        self._shown_cs += delay
        data = GifImagePlugin.getdata(self._pending, duration=delay * 10, include_color_table=True)
        self._file.write(b"".join(data))
        self._pending = None
        self.frames += 1

    def close(self) -> None:
        """Write the last frame and the trailer."""
        try:
            self._flush()
            if self._file is None:
                raise ValueError("a GIF needs at least one frame")
            self._file.write(b";")
        finally:
            self.abort()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
