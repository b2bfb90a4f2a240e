"""DICOM value helpers shared by every room: lenient numbers as DCMTK reads them, a value
as one line of text."""

from __future__ import annotations

import math
import re

from pydicom.dataset import Dataset

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


def first_item(owner: Dataset | None, keyword: str) -> Dataset | None:
    """Item 1 of the sequence `keyword` of `owner`, or None."""
    seq = owner.get(keyword) if owner is not None else None
    return seq[0] if seq else None


def functional_group(ds: Dataset, frame_index: int, keyword: str) -> Dataset | None:
    """The frame's item of a functional group macro: per-frame overrides shared (PS3.3
    C.7.6.16); None when neither has it."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame_index < len(per_frame):
        found = first_item(per_frame[frame_index], keyword)
        if found is not None:
            return found
    return first_item(first_item(ds, "SharedFunctionalGroupsSequence"), keyword)


def text_value(ds: Dataset, keyword: str) -> str:
    """An element's value as text: "" when absent or empty, several values joined with
    DICOM's backslash (for query results and sidecars)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
