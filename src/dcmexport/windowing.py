"""Which VOI transform to apply: the `--window` option, CT presets, and the file's own windows.

`--window` is parsed once into a `WindowSpec`; `select_voi` turns a spec plus one frame's
attributes into a concrete `Window` or `VoiLut` (or `None` for min-max, which needs the pixels).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Sequence

import numpy as np

from .errors import UsageError, WindowError


class VoiLutFunction(str, enum.Enum):
    """(0028,1056) VOI LUT Function, PS3.3 C.11.2.1.3."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


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
    """A parsed `--window` value.

    kind: ``auto`` (file's VOI, else min-max), ``file`` (file's `index`-th VOI, 1-based),
    ``minmax``, or ``explicit`` (`center`, `width`, LINEAR).
    """

    kind: str
    index: int = 1
    center: float = 0.0
    width: float = 0.0
    text: str = "auto"


def parse_window(text: str) -> WindowSpec:
    """Parse ``auto``, ``file[:N]``, ``minmax``, ``C,W`` or a CT preset name."""
    t = text.strip().lower()
    if t in ("auto", "minmax"):
        return WindowSpec(t, text=t)
    if t == "file" or t.startswith("file:"):
        try:
            index = int(t[5:]) if ":" in t else 1
        except ValueError:
            index = 0
        if index < 1:
            raise UsageError(f"--window {text!r}: use file or file:N with N >= 1")
        return WindowSpec("file", index=index, text=t)
    if t in CT_PRESETS:
        center, width = CT_PRESETS[t]
        return WindowSpec("explicit", center=center, width=width, text=t)
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
    return WindowSpec("explicit", center=center, width=width, text=t)


@dataclasses.dataclass(frozen=True)
class Window:
    """A window center/width pair with its VOI LUT Function (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: VoiLutFunction = VoiLutFunction.LINEAR
    explanation: str = ""
    #: for a min–max window, the (min, max) modality values it was made from
    span: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class VoiLut:
    """One item of the VOI LUT Sequence: `data[clip(x - first_mapped, 0, len-1)]`."""

    first_mapped: int
    bits: int
    data: np.ndarray
    explanation: str = ""


def _multi(value: object) -> list:
    """A DICOM value with VM ≥ 1 as a list (pydicom returns a scalar for VM 1)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


_LEADING_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def decimal_value(value: object) -> float | None:
    """A DS value as a float, leniently: the leading number of a malformed string, as DCMTK
    reads it (``"1,00"`` → 1.0, ``"2000,5"`` → 2000.0); None if there is none."""
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _LEADING_NUMBER.match(str(value))
        if match is None:
            return None
        number = float(match.group(0))
    return number if math.isfinite(number) else None


@dataclasses.dataclass(frozen=True)
class UnusableVoi:
    """A window or VOI LUT the file declares but that cannot be applied, and why.

    Kept in place so that ``file:N`` numbering matches the file (and DCMTK's +Wi/+Wl).
    """

    reason: str


def file_windows(attrs: object) -> list[Window | UnusableVoi]:
    """The file's Window Center/Width pairs, in the file's order.

    `attrs` is any object with DICOM keyword attributes (a Dataset or a functional-group
    item). VM mismatches use the shorter list. A pair with non-numeric values or a width
    < 1 (0 happens in real files; PS3.3 C.11.2.1.2 requires ≥ 1) is an `UnusableVoi`.
    """
    centers = _multi(getattr(attrs, "WindowCenter", None))
    widths = _multi(getattr(attrs, "WindowWidth", None))
    explanations = _multi(getattr(attrs, "WindowCenterWidthExplanation", None))
    function_text = str(getattr(attrs, "VOILUTFunction", "") or "LINEAR").strip().upper()
    try:
        function = VoiLutFunction(function_text)
    except ValueError:
        function = VoiLutFunction.LINEAR
    windows: list[Window | UnusableVoi] = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        center, width = decimal_value(c), decimal_value(w)
        if center is None or width is None:
            windows.append(UnusableVoi(f"window {i + 1} is not numeric ({c!r}, {w!r})"))
        elif width < 1 and not (function is VoiLutFunction.LINEAR_EXACT and width > 0):
            windows.append(UnusableVoi(f"window {i + 1} has width {width:g} (must be ≥ 1)"))
        else:
            label = str(explanations[i]) if i < len(explanations) else ""
            windows.append(Window(center, width, function, label))
    return windows


def select_voi(
    spec: WindowSpec,
    windows: Sequence[Window | UnusableVoi],
    voi_luts: Sequence[VoiLut | UnusableVoi],
) -> Window | VoiLut | None:
    """The VOI transform `spec` asks for; `None` means min-max over the pixels.

    The file's VOI transforms are numbered VOI LUT Sequence items first, then windows, so
    that ``file:1`` is what ``auto`` picks (PS3.4 N.2.1.1 prefers neither; DCMTK numbers the
    two lists separately with +Wl/+Wi). ``auto`` passes over unusable ones.
    """
    if spec.kind == "explicit":
        return Window(spec.center, spec.width, VoiLutFunction.LINEAR, spec.text)
    if spec.kind == "minmax":
        return None
    available: list[Window | VoiLut | UnusableVoi] = [*voi_luts, *windows]
    if spec.kind == "auto":
        return next((v for v in available if not isinstance(v, UnusableVoi)), None)
    if spec.index > len(available):
        have = "no window or VOI LUT" if not available else f"only {len(available)}"
        raise WindowError(f"--window file:{spec.index} asked for, but the file has {have}")
    chosen = available[spec.index - 1]
    if isinstance(chosen, UnusableVoi):
        raise WindowError(f"--window file:{spec.index}: {chosen.reason}")
    return chosen
