"""DICOM value helpers shared by every room: lenient numbers as DCMTK reads them."""

from __future__ import annotations

import math
import re

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
