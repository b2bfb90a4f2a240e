"""The one series grouping: instances grouped by Series Instance UID, copies counted once,
and slices ordered for stacking.

Used by series videos, `index --level series` and (later) volumes, so they all agree on what
a series is. Slices are ordered along the slice normal — the position of each slice (Image
Position (Patient)) projected on the normal of Image Orientation (Patient), PS3.3
C.7.6.2.1.1 — which is how viewers stack them; when a slice lacks geometry or the
orientations differ, by Instance Number instead. Headers are read without pixels, in the
same executor as the conversion.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np

from ..errors import DcmExportError
from . import decoding
from .faults import PASS_THROUGH
from .values import decimal_value

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SliceInfo:
    """What ordering a slice in its series needs, read from its header."""

    source: str
    path: str
    series_uid: str
    instance_uid: str
    series_number: str
    instance: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    size: int
    mtime_ns: int


def _numbers(value: object, count: int) -> tuple[float, ...] | None:
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        return None
    numbers = [decimal_value(v) for v in value]
    if len(numbers) != count:
        return None
    found = [n for n in numbers if n is not None]
    return tuple(found) if len(found) == count else None


def slice_info(source: str, path: str) -> SliceInfo | None:
    """The slice's series and geometry; None unless it is a single-frame image in a series."""
    try:
        ds = decoding.read_dataset(path, stop_before_pixels=True)
        stat = os.stat(path)
    except (DcmExportError, OSError):
        return None
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not uid or decoding.number_of_frames(ds) != 1 or not ds.get("Rows") or not ds.get("Columns"):
        return None
    try:
        instance: int | None = int(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        instance = None
    xyz = _numbers(ds.get("ImagePositionPatient") or (), 3)
    position = (xyz[0], xyz[1], xyz[2]) if xyz is not None else None
    return SliceInfo(
        source=source,
        path=path,
        series_uid=uid,
        instance_uid=str(ds.get("SOPInstanceUID", "") or "").strip(),
        series_number=str(ds.get("SeriesNumber", "") or "").strip(),
        instance=instance,
        position=position,
        orientation=_numbers(ds.get("ImageOrientationPatient") or (), 6),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
    )


def slice_infos(items: Sequence[tuple[str, str]]) -> list[SliceInfo | None]:
    """`slice_info` for a chunk of (source, path): one executor task."""
    return [_slice_info_or_none(source, path) for source, path in items]


def _slice_info_or_none(source: str, path: str) -> SliceInfo | None:
    """`slice_info`, None for a header too broken to read (it was converted, so rarely)."""
    try:
        return slice_info(source, path)
    except PASS_THROUGH:
        raise
    except BaseException:
        return None


def order_slices(slices: Sequence[SliceInfo]) -> tuple[list[SliceInfo], str]:
    """Slices in stacking order, and how they were ordered (for the manifest)."""
    first = slices[0].orientation
    geometric = first is not None and all(
        s.position is not None
        and s.orientation is not None
        and np.allclose(s.orientation, first, atol=1e-3)
        for s in slices
    )
    if geometric:
        assert first is not None
        normal = np.cross(np.asarray(first[:3]), np.asarray(first[3:]))
        if np.linalg.norm(normal) > 1e-6:

            def along_normal(s: SliceInfo) -> tuple[float, int, str]:
                assert s.position is not None
                return (float(np.dot(normal, s.position)), s.instance or 0, s.source)

            return sorted(slices, key=along_normal), "slice position along the normal"
    return sorted(slices, key=lambda s: (s.instance is None, s.instance or 0, s.source)), (
        "Instance Number"
    )


@dataclasses.dataclass
class SeriesGroup(Generic[T]):
    """The members of one series, and how many copies of members were left out."""

    uid: str
    members: list[T] = dataclasses.field(default_factory=list)
    copies: int = 0


class SeriesGrouping(Generic[T]):
    """Groups items by Series Instance UID as they stream in, in order of first appearance.

    The one rule for copies: an item whose SOP Instance UID was already seen in its series
    is a copy (a CD holding a file twice) and counts once; an item without a SOP Instance
    UID is always an instance of its own. Items without a Series Instance UID form no series.
    """

    def __init__(self, *, keep_members: bool = True) -> None:
        self.groups: dict[str, SeriesGroup[T]] = {}
        self._seen: dict[str, set[str]] = defaultdict(set)
        #: False: only count (a streaming fold such as an index keeps its own summary)
        self.keep_members = keep_members

    def add(self, item: T, series_uid: str | None, instance_uid: str | None) -> bool:
        """File `item` under its series; False if it is a copy (or has no series)."""
        if not series_uid:
            return False
        group = self.groups.get(series_uid)
        if group is None:
            group = self.groups[series_uid] = SeriesGroup(series_uid)
        if instance_uid:
            if instance_uid in self._seen[series_uid]:
                group.copies += 1
                return False
            self._seen[series_uid].add(instance_uid)
        if self.keep_members:
            group.members.append(item)
        return True
