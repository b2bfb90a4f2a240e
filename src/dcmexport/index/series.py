"""`index --level series`: one row per series, folded as rows stream in.

Series are the one grouping of `dicom.series` (Series Instance UID; a copy of an instance
counts once), so an index and a series video agree on what a series is.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..dicom.series import SeriesGrouping
from .columns import _AGGREGATED, SERIES_COLUMNS, Row, series_columns


@dataclasses.dataclass
class _Series:
    """A series row under construction: shared values, counts, ranges, common folder."""

    row: Row
    folder: str | None
    varying: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def start(cls, row: Row, columns: Sequence[str], new_instance: bool) -> _Series:
        out = {c: row.get(c) for c in columns if c not in SERIES_COLUMNS}
        out.update(files=0, instances=0, frames=0 if row["status"] == "ok" else None)
        out.update(instance_number_min=None, instance_number_max=None, file_size=0)
        series = cls(out, os.path.dirname(row["path"]))
        series.add(row, new_instance)
        return series

    def add(self, row: Row, new_instance: bool) -> None:
        """Fold one file in; `new_instance` is False for a copy of an instance already in."""
        out = self.row
        out["files"] += 1
        out["file_size"] = _plus(out["file_size"], row.get("file_size"))
        if row["status"] == "ok" and new_instance:
            out["instances"] += 1
            out["frames"] += _frames(row)
        number = row.get("InstanceNumber")
        if number is not None:
            low, high = out["instance_number_min"], out["instance_number_max"]
            out["instance_number_min"] = number if low is None else min(low, number)
            out["instance_number_max"] = number if high is None else max(high, number)
        for name in out.keys() - _AGGREGATED - self.varying:
            if row.get(name) != out[name]:
                self.varying.add(name)
                out[name] = None
        self.folder = _common_folder(self.folder, row["path"])

    def finish(self) -> Row:
        if self.row["files"] > 1:
            self.row["path"] = self.folder
        return self.row


def _frames(row: Row) -> int:
    """Number of Frames; 1 when absent from an image, 0 for an instance without one."""
    return row.get("NumberOfFrames") or (1 if row.get("Rows") else 0)


def _plus(total: int | None, value: int | None) -> int | None:
    return None if total is None or value is None else total + value


def _common_folder(folder: str | None, path: str) -> str | None:
    if folder is None:
        return None
    try:
        return os.path.commonpath([folder, os.path.dirname(path)]) or None
    except ValueError:  # relative and absolute paths, or two drives
        return None


def series_rows(rows: Iterable[Row], columns: Sequence[str] | None = None) -> list[Row]:
    """One row per series (by Series Instance UID), in the order series first appear.

    A cell holds the value every instance of the series shares; a value that varies within
    the series (a per-slice window, say) is left empty, so a row never passes one instance's
    value off as the series', and the table does not depend on file order. ``files``,
    ``instances`` (distinct SOP Instance UIDs: a copy of a file counts once) and ``frames``
    (Number of Frames; 1 for a single-frame image, 0 for no image) are counts,
    ``file_size`` is a total, ``instance_number_min``/``_max`` a range, and ``path`` the
    deepest folder holding all the series' files. Files without a Series Instance UID (a
    DICOMDIR, unreadable and non-DICOM files) keep a row each, with their own path and
    reason. `columns` defaults to `series_columns` of the rows' keys; the rows need the
    columns of `_SERIES_INPUTS`.
    """
    groups: dict[tuple[str, Any], _Series] = {}
    grouping: SeriesGrouping[None] = SeriesGrouping(keep_members=False)
    names: Sequence[str] = columns or ()
    for position, row in enumerate(rows):
        names = names or series_columns(row.keys())
        uid = row.get("SeriesInstanceUID") if row["status"] == "ok" else None
        new_instance = True
        if uid:
            key: tuple[str, Any] = ("series", uid)
            new_instance = grouping.add(None, str(uid), row.get("SOPInstanceUID"))
        else:
            key = ("file", position)
        if key in groups:
            groups[key].add(row, new_instance)
        else:
            groups[key] = _Series.start(row, names, new_instance)
    return [{c: g.finish().get(c) for c in names} for g in groups.values()]
