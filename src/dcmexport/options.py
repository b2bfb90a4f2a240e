"""The one options object that describes a conversion.

The CLI builds it, the library consumes it, a worker process receives it pickled. Values are
validated here, at the boundary, so the pipeline never sees a malformed option.
"""

from __future__ import annotations

import dataclasses
import enum

from .errors import UsageError
from .naming import Layout, parse_layout
from .windowing import WindowSpec, parse_window


class StillFormat(str, enum.Enum):
    """Still-image formats we write, with their file extension."""

    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"

    @property
    def extension(self) -> str:
        return {"png": ".png", "jpeg": ".jpg", "tiff": ".tiff"}[self.value]


class VideoFormat(str, enum.Enum):
    """Video outputs for multi-frame inputs (and series with `series_video`)."""

    MP4 = "mp4"
    GIF = "gif"
    BOTH = "both"
    NONE = "none"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The file types written: ``("mp4", "gif")`` for both, ``()`` for none."""
        return {"mp4": ("mp4",), "gif": ("gif",), "both": ("mp4", "gif"), "none": ()}[self.value]


class MetadataFormat(str, enum.Enum):
    """A metadata sidecar written beside each converted input (`none` = no sidecar)."""

    TXT = "txt"
    JSON = "json"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class FrameSelection:
    """Which frames of a multi-frame input become stills; numbers are 1-based.

    `kind` is one of ``all``, ``first``, ``middle``, ``list`` (explicit `numbers`) or ``range``
    (`numbers` = (A, B) inclusive).
    """

    kind: str
    numbers: tuple[int, ...] = ()

    def frame_numbers(self, number_of_frames: int) -> list[int]:
        """The 1-based frame numbers this selection picks from a file of `number_of_frames`."""
        n = number_of_frames
        if self.kind == "all":
            return list(range(1, n + 1))
        if self.kind == "first":
            return [1]
        if self.kind == "middle":
            return [(n + 1) // 2]
        if self.kind == "range":
            a, b = self.numbers
            picked = [i for i in range(a, b + 1) if i <= n]
        else:
            picked = [i for i in self.numbers if i <= n]
        if not picked:
            raise UsageError(f"--frames selects no frame of a {n}-frame file")
        return picked


def parse_frames(text: str) -> FrameSelection:
    """Parse ``all``, ``first``, ``middle``, ``N``, ``A-B`` or ``N,M,...`` (1-based)."""
    t = text.strip().lower()
    if t in ("all", "first", "middle"):
        return FrameSelection(t)
    try:
        if "-" in t:
            a_text, b_text = t.split("-", 1)
            a, b = int(a_text), int(b_text)
            if a < 1 or b < a:
                raise ValueError
            return FrameSelection("range", (a, b))
        numbers = tuple(int(p) for p in t.split(","))
        if any(n < 1 for n in numbers):
            raise ValueError
        return FrameSelection("list", numbers)
    except ValueError:
        raise UsageError(
            f"--frames {text!r}: use all, first, middle, N, A-B or N,M,... (1-based)"
        ) from None


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides what one conversion writes. Immutable and picklable."""

    format: StillFormat = StillFormat.PNG
    bits: int = 8
    window: WindowSpec = dataclasses.field(default_factory=lambda: parse_window("auto"))
    raw: bool = False
    frames: FrameSelection | None = None
    video: VideoFormat = VideoFormat.BOTH
    #: frames per second for video; None = from the file's timing, else 10
    fps: float | None = None
    #: also one video per series of single-frame images (a CT or MR stack)
    series_video: bool = False
    quality: int = 90
    metadata: MetadataFormat = MetadataFormat.NONE
    #: output names: None = mirror the input tree, else a template (`naming.parse_layout`)
    layout: Layout | None = None
    #: rewrite outputs even if an earlier run made them with the same options
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", StillFormat(self.format))
        object.__setattr__(self, "video", VideoFormat(self.video))
        object.__setattr__(self, "metadata", MetadataFormat(self.metadata))
        if isinstance(self.window, str):
            object.__setattr__(self, "window", parse_window(self.window))
        if isinstance(self.layout, str):
            object.__setattr__(self, "layout", parse_layout(self.layout))
        if isinstance(self.frames, str):
            object.__setattr__(self, "frames", parse_frames(self.frames))
        if self.bits not in (8, 16):
            raise UsageError(f"--bits {self.bits}: use 8 or 16")
        if self.bits == 16 and self.format is StillFormat.JPEG:
            raise UsageError("--bits 16 needs --format png or tiff (JPEG is 8-bit)")
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise UsageError(f"--fps {self.fps:g}: use a rate above 0 and at most 1000")
        if self.series_video and not self.video.kinds:
            raise UsageError("--series-video needs --video mp4, gif or both")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: use 1..100")
