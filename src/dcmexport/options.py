"""The one options object that describes a conversion, and the option grammars it is made of.

The CLI builds it, the library consumes it, a worker process receives it pickled. Values are
validated here, at the boundary, so the pipeline never sees a malformed option. The enums here
are the single spelling of each choice: the CLI's ``choices`` and the writers' registries are
built from them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable
from typing import Any

from .errors import UsageError
from .naming import Layout, parse_layout


class StillFormat(str, enum.Enum):
    """Still-image formats we write, with their file extension."""

    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"

    @property
    def extension(self) -> str:
        return {"png": ".png", "jpeg": ".jpg", "tiff": ".tiff"}[self.value]

    @property
    def max_bits(self) -> int:
        """The deepest samples the format holds (JPEG is 8-bit)."""
        return 8 if self is StillFormat.JPEG else 16


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


class VolumeFormat(str, enum.Enum):
    """What `--volume` writes per series of slices (and per enhanced multi-frame file)."""

    NIFTI = "nifti"
    NPZ = "npz"
    NONE = "none"

    @property
    def extension(self) -> str:
        return {"nifti": ".nii.gz", "npz": ".npz", "none": ""}[self.value]


class Product(str, enum.Enum):
    """What a run writes per input: rendered images (`convert`) or DICOM copies (`anonymize`)."""

    IMAGES = "images"
    DICOM = "dicom"


class BurnedInPolicy(str, enum.Enum):
    """``--burned-in``: what a de-identified run does with images that may carry burned-in
    identifying text (``mask``/``mask-all`` need the ``ocr`` extra)."""

    WARN = "warn"  # write it, keep Burned In Annotation YES, note it and count it
    EXCLUDE = "exclude"  # write nothing for it: a `skipped` row with the reason
    MASK = "mask"  # OCR the images at risk, black out the text, re-check, then write
    MASK_ALL = "mask-all"  # the same for every image, at risk or not

    @property
    def masks(self) -> bool:
        """True if this policy blacks out burned-in text (OCR)."""
        return self in (BurnedInPolicy.MASK, BurnedInPolicy.MASK_ALL)


class MetadataPhi(str, enum.Enum):
    """``--metadata-phi``: whether `--metadata` sidecars of a run without `--anonymize` carry
    patient data (`none`: the sidecar describes the de-identified header)."""

    KEEP = "keep"
    NONE = "none"


class WindowKind(str, enum.Enum):
    """What a `--window` value asks for."""

    AUTO = "auto"  # the file's VOI, else min-max
    FILE = "file"  # the file's N-th window or VOI LUT (1-based)
    MINMAX = "minmax"
    EXPLICIT = "explicit"  # a center/width pair or a CT preset, LINEAR


#: CT window presets as (center, width) in HU; common radiology values (Radiopaedia, RSNA).
CT_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40, 80),
    "subdural": (75, 215),
    "stroke": (40, 40),
    "bone": (400, 1800),
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "abdomen": (40, 400),
    "liver": (30, 150),
    "soft-tissue": (50, 350),
}


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """A parsed `--window` value: `kind`, and `index` (``file:N``) or `center`/`width`."""

    kind: WindowKind
    index: int = 1
    center: float = 0.0
    width: float = 0.0
    text: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", WindowKind(self.kind))


def parse_window(text: str) -> WindowSpec:
    """Parse ``auto``, ``file[:N]``, ``minmax``, ``C,W`` or a CT preset name."""
    t = text.strip().lower()
    if t in ("auto", "minmax"):
        return WindowSpec(WindowKind(t), text=t)
    if t == "file" or t.startswith("file:"):
        try:
            index = int(t[5:]) if ":" in t else 1
        except ValueError:
            index = 0
        if index < 1:
            raise UsageError(f"--window {text!r}: use file or file:N with N >= 1")
        return WindowSpec(WindowKind.FILE, index=index, text=t)
    if t in CT_PRESETS:
        center, width = CT_PRESETS[t]
        return WindowSpec(WindowKind.EXPLICIT, center=center, width=width, text=t)
    parts = t.split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        presets = ", ".join(CT_PRESETS)
        raise UsageError(
            f"--window {text!r}: use auto, file[:N], minmax, C,W (e.g. 40,400) or one of {presets}"
        ) from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise UsageError(f"--window {text!r}: the width must be a positive number")
    return WindowSpec(WindowKind.EXPLICIT, center=center, width=width, text=t)


class FrameKind(str, enum.Enum):
    """How `--frames` picks frames."""

    ALL = "all"
    FIRST = "first"
    MIDDLE = "middle"
    LIST = "list"  # explicit numbers
    RANGE = "range"  # (A, B) inclusive


@dataclasses.dataclass(frozen=True)
class FrameSelection:
    """Which frames of a multi-frame input become stills; numbers are 1-based.

    `numbers` holds the explicit numbers of ``list``, or (A, B) of ``range``.
    """

    kind: FrameKind
    numbers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FrameKind(self.kind))

    def frame_numbers(self, number_of_frames: int) -> list[int]:
        """The 1-based frame numbers this selection picks from a file of `number_of_frames`."""
        n = number_of_frames
        if self.kind is FrameKind.ALL:
            return list(range(1, n + 1))
        if self.kind is FrameKind.FIRST:
            return [1]
        if self.kind is FrameKind.MIDDLE:
            return [(n + 1) // 2]
        if self.kind is FrameKind.RANGE:
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
        return FrameSelection(FrameKind(t))
    try:
        if "-" in t:
            a_text, b_text = t.split("-", 1)
            a, b = int(a_text), int(b_text)
            if a < 1 or b < a:
                raise ValueError
            return FrameSelection(FrameKind.RANGE, (a, b))
        numbers = tuple(int(p) for p in t.split(","))
        if any(n < 1 for n in numbers):
            raise ValueError
        return FrameSelection(FrameKind.LIST, numbers)
    except ValueError:
        raise UsageError(
            f"--frames {text!r}: use all, first, middle, N, A-B or N,M,... (1-based)"
        ) from None


#: Default safety limits (docs/cli.md): a frame of 2^28 pixels is 16384 x 16384.
DEFAULT_MAX_PIXELS = 2**28
DEFAULT_MAX_FRAMES = 2**20
DEFAULT_MAX_INFLATE = 2**30

_SIZE_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int, option: str) -> int:
    """A positive count or byte size: ``1000``, ``2^28``, ``512M``, ``4G`` (powers of 1024)."""
    if isinstance(text, int):
        value = text
    else:
        t = text.strip().lower().removesuffix("b")
        try:
            if "^" in t:
                base, exponent = t.split("^", 1)
                value = int(base) ** int(exponent)
            else:
                suffix = t[-1:] if t[-1:] in _SIZE_SUFFIXES else ""
                value = int(float(t[: len(t) - len(suffix)]) * _SIZE_SUFFIXES[suffix])
        except (ValueError, OverflowError):
            value = 0
    if value < 1:
        raise UsageError(f"{option} {text!r}: use a positive number, e.g. 2^28, 512M or 4G")
    return value


@dataclasses.dataclass(frozen=True)
class Limits:
    """Safety limits checked before anything is allocated (dicom/limits.py), so that a hostile
    or broken file is refused with a reason instead of taking the machine's memory."""

    #: pixels (rows x columns x samples) of one frame, from the header and the codestream
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: frames of one input (Number of Frames)
    max_frames: int = DEFAULT_MAX_FRAMES
    #: bytes a deflated dataset or an archive member may inflate to
    max_inflate: int = DEFAULT_MAX_INFLATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_pixels", parse_size(self.max_pixels, "--max-pixels"))
        object.__setattr__(self, "max_frames", parse_size(self.max_frames, "--max-frames"))
        object.__setattr__(self, "max_inflate", parse_size(self.max_inflate, "--max-inflate"))


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides what one conversion writes. Immutable and picklable."""

    format: StillFormat = StillFormat.PNG
    bits: int = 8
    window: WindowSpec = dataclasses.field(default_factory=lambda: parse_window("auto"))
    raw: bool = False
    #: draw overlay planes (60xx) into stills and video, as viewers do (not with `raw`)
    overlays: bool = True
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
    #: one volume per series of slices and per enhanced multi-frame file (`--volume`)
    volume: VolumeFormat = VolumeFormat.NONE
    #: images (`convert`) or de-identified DICOM copies (`anonymize`)
    product: Product = Product.IMAGES
    #: de-identify every input in memory before any exporter sees it (PS3.15 Annex E)
    anonymize: bool = False
    #: de-identified runs: images that may carry burned-in text are noted or left out
    burned_in: BurnedInPolicy = BurnedInPolicy.WARN
    #: sidecars without patient data in a run without `anonymize`
    metadata_phi: MetadataPhi = MetadataPhi.KEEP
    #: safety limits on pixels, frames and inflated bytes (not part of the resume key)
    limits: Limits = dataclasses.field(default_factory=Limits)
    #: also a thumbnail of each still for the HTML report (`convert --html`), made from the
    #: rendering in memory; not an output option: outputs and resume do not depend on it
    thumbnails: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", StillFormat(self.format))
        object.__setattr__(self, "video", VideoFormat(self.video))
        object.__setattr__(self, "metadata", MetadataFormat(self.metadata))
        object.__setattr__(self, "volume", VolumeFormat(self.volume))
        object.__setattr__(self, "product", Product(self.product))
        object.__setattr__(self, "burned_in", BurnedInPolicy(self.burned_in))
        object.__setattr__(self, "metadata_phi", MetadataPhi(self.metadata_phi))
        if isinstance(self.window, str):
            object.__setattr__(self, "window", parse_window(self.window))
        if isinstance(self.layout, str):
            object.__setattr__(self, "layout", parse_layout(self.layout))
        if isinstance(self.frames, str):
            object.__setattr__(self, "frames", parse_frames(self.frames))
        if self.bits not in (8, 16):
            raise UsageError(f"--bits {self.bits}: use 8 or 16")
        if self.bits > self.format.max_bits:
            raise UsageError("--bits 16 needs --format png or tiff (JPEG is 8-bit)")
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise UsageError(f"--fps {self.fps:g}: use a rate above 0 and at most 1000")
        if self.series_video and not self.video.kinds:
            raise UsageError("--series-video needs --video mp4, gif or both")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: use 1..100")
        self._check_deidentification()

    def _check_deidentification(self) -> None:
        if self.product is Product.DICOM and not self.anonymize:
            raise UsageError("DICOM copies are written de-identified only (dcmexport anonymize)")
        if self.anonymize and self.series_video:
            raise UsageError("--series-video is not available with --anonymize yet")
        if self.anonymize and self.volume is not VolumeFormat.NONE:
            raise UsageError("--volume is not available with --anonymize yet")
        if self.metadata_phi is MetadataPhi.NONE and self.metadata is MetadataFormat.NONE:
            raise UsageError("--metadata-phi none needs --metadata txt or json")


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` values as fsspec storage options.

    ``true``/``false`` become booleans (``anon=true``); a dotted key makes a nested option
    (``client_kwargs.region_name=eu-west-1``); every other value stays text. A malformed
    pair is a `UsageError` that names the key only (values may be secrets).
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep:  # the text may be a secret given without its key: never shown
            raise UsageError("--storage-option: use KEY=VALUE (the value given is not shown)")
        if not key or any(not part for part in key.split(".")):
            raise UsageError(f"--storage-option {key or '(empty key)'}: use KEY=VALUE")
        value: Any = {"true": True, "false": False}.get(text.lower(), text)
        *outer, last = key.split(".")
        target = options
        for part in outer:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise UsageError(f"--storage-option {key}: {part} is already a value")
            target = nested
        target[last] = value
    return options
