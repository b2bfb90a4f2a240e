"""Series videos: the single-frame slices of one series (a CT or MR stack) as one clip.

Slices are grouped by Series Instance UID and ordered along the slice normal — the position
of each slice (Image Position (Patient)) projected on the normal of Image Orientation
(Patient), PS3.3 C.7.6.2.1.1 — which is how viewers stack them; when a slice lacks geometry
or the orientations differ, by Instance Number instead. Headers are read without pixels, in
the same executor as the conversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

import numpy as np

from . import decoding
from .errors import DcmExportError
from .windowing import decimal_value

#: a slice's outputs share a folder; the series video goes there under this name
SERIES_VIDEO_STEM = "series"


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
    try:
        numbers = tuple(decimal_value(v) for v in value)  # type: ignore[union-attr]
    except TypeError:
        return None
    if len(numbers) != count or any(n is None for n in numbers):
        return None
    return numbers  # type: ignore[return-value]


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
        instance = int(ds.get("InstanceNumber"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        instance = None
    position = _numbers(ds.get("ImagePositionPatient") or (), 3)
    return SliceInfo(
        source=source,
        path=path,
        series_uid=uid,
        instance_uid=str(ds.get("SOPInstanceUID", "") or "").strip(),
        series_number=str(ds.get("SeriesNumber", "") or "").strip(),
        instance=instance,
        position=position,  # type: ignore[arg-type]
        orientation=_numbers(ds.get("ImageOrientationPatient") or (), 6),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
    )


def slice_infos(items: Sequence[tuple[str, str]]) -> list[SliceInfo | None]:
    """`slice_info` for a chunk of (source, path): one executor task."""
    return [slice_info(source, path) for source, path in items]


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

            def along_normal(s: SliceInfo) -> tuple:
                return (float(np.dot(normal, s.position)), s.instance or 0, s.source)

            return sorted(slices, key=along_normal), "slice position along the normal"
    return sorted(slices, key=lambda s: (s.instance is None, s.instance or 0, s.source)), (
        "Instance Number"
    )


@dataclasses.dataclass(frozen=True)
class SeriesItem:
    """One series video to make: its slices in order and where the video goes."""

    key: str
    source: str
    base: str
    paths: tuple[str, ...]
    rows: int
    columns: int
    fingerprint: tuple[int, int]
    note: str
    seq: int


def series_items(
    infos: Iterable[SliceInfo], bases: dict[str, str], first_seq: int
) -> list[tuple[SeriesItem, PurePosixPath]]:
    """Group slices into series of two or more; (item without base, wanted base) each.

    The video's wanted base is ``<folder of the first slice's output>/series_<number>``;
    the caller claims a free name for it. The fingerprint changes whenever a slice is added,
    removed, reordered or modified, so that a rerun remakes exactly the stale videos.
    """
    groups: dict[str, list[SliceInfo]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for info in infos:
        if info.instance_uid and info.instance_uid in seen[info.series_uid]:
            copies[info.series_uid] += 1  # the same instance twice (a CD copy): once is enough
            continue
        seen[info.series_uid].add(info.instance_uid)
        groups[info.series_uid].append(info)
    found = []
    for seq, (uid, members) in enumerate(sorted(groups.items()), first_seq):
        if len(members) < 2:
            continue
        ordered, how = order_slices(members)
        (rows, columns), count = Counter((s.rows, s.columns) for s in ordered).most_common(1)[0]
        digest = hashlib.sha256()
        for s in ordered:
            digest.update(f"{s.path}\0{s.size}\0{s.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        fingerprint = (len(ordered), int.from_bytes(digest.digest()[:7], "big"))
        number = ordered[0].series_number or hashlib.sha1(uid.encode()).hexdigest()[:8]
        folder = PurePosixPath(bases[ordered[0].source]).parent
        wanted = folder / f"{SERIES_VIDEO_STEM}_{_safe(number)}"
        sources = [s.source for s in ordered]
        common = os.path.commonpath(sources) if len(set(sources)) > 1 else sources[0]
        note = f"series video of {len(ordered)} slices ordered by {how}"
        if count < len(ordered):
            note += f"; {len(ordered) - count} slice(s) not {columns}x{rows} left out"
        if copies[uid]:
            note += f"; {copies[uid]} copies of the same instances left out"
        item = SeriesItem(
            key=f"series:{uid}",
            source=common,
            base="",
            paths=tuple(os.path.abspath(s.path) for s in ordered),
            rows=rows,
            columns=columns,
            fingerprint=fingerprint,
            note=note,
            seq=seq,
        )
        found.append((item, wanted))
    return found


def _safe(text: str) -> str:
    """A Series Number as a file name part: digits and letters only."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "_" for c in text).strip("._")
    return cleaned[:32] or "x"
