"""Which VOI transform to apply: the file's own windows and VOI LUTs, or the `--window` option.

`--window` is parsed once into a `WindowSpec` (in `options`); `select_voi` turns a spec plus
one frame's attributes into a concrete `Window` or `VoiLut` (or `None` for min-max, which
needs the pixels).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

import numpy as np

from ..dicom.values import decimal_value
from ..errors import WindowError
from ..options import CT_PRESETS, WindowKind, WindowSpec, parse_window


class VoiLutFunction(str, enum.Enum):
    """(0028,1056) VOI LUT Function, PS3.3 C.11.2.1.3."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


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
    if spec.kind is WindowKind.EXPLICIT:
        return Window(spec.center, spec.width, VoiLutFunction.LINEAR, spec.text)
    if spec.kind is WindowKind.MINMAX:
        return None
    available: list[Window | VoiLut | UnusableVoi] = [*voi_luts, *windows]
    if spec.kind is WindowKind.AUTO:
        return next((v for v in available if not isinstance(v, UnusableVoi)), None)
    if spec.index > len(available):
        have = "no window or VOI LUT" if not available else f"only {len(available)}"
        raise WindowError(f"--window file:{spec.index} asked for, but the file has {have}")
    chosen = available[spec.index - 1]
    if isinstance(chosen, UnusableVoi):
        raise WindowError(f"--window file:{spec.index}: {chosen.reason}")
    return chosen


__all__ = [
    "CT_PRESETS",
    "UnusableVoi",
    "VoiLut",
    "VoiLutFunction",
    "Window",
    "WindowSpec",
    "decimal_value",
    "file_windows",
    "parse_window",
    "select_voi",
]
