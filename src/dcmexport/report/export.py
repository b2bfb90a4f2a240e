"""Reading an export back: its manifest rows and, header-only, the tags of its inputs.

The report never renders DICOM: it reads `OUT/manifest.csv`, looks at the files it names, and
reads a dozen header values of each input that still exists (a fast scan, else pydicom without
pixels). Inputs that moved or were archive members are grouped under "unknown" later.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..dicom.decoding import read_dataset
from ..dicom.header_scan import SCAN_KEYWORDS, scan_header
from ..errors import DcmExportError
from ..manifest import COLUMNS, Kind, Status

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row as the report needs it (text columns kept as written)."""

    source: str
    frame: int | None
    output: str
    status: Status
    error: str
    window_center: str
    window_width: str
    raw: bool
    voi: str
    #: None for a kind this report does not know (an empty cell on error rows, or newer kinds)
    kind: Kind | None
    note: str


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.ERROR


def _kind(value: str) -> Kind | None:
    try:
        return Kind(value)
    except ValueError:
        return None


def _row(cells: dict[str, str]) -> Row:
    frame = cells.get("frame", "")
    return Row(
        source=cells.get("source", ""),
        frame=int(frame) if frame.isdigit() else None,
        output=cells.get("output", ""),
        status=_status(cells.get("status", "")),
        error=cells.get("error", ""),
        window_center=cells.get("window_center", ""),
        window_width=cells.get("window_width", ""),
        raw=bool(cells.get("raw_offset", "")),
        voi=cells.get("voi", ""),
        kind=_kind(cells.get("kind", "")),
        note=cells.get("note", ""),
    )


def read_manifest(path: Path) -> Iterator[Row]:
    """The rows of a manifest written by `convert` (columns found by name, extra ones ignored)."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "source" not in reader.fieldnames:
            raise DcmExportError(f"{path} is not a dcmexport manifest (expected {COLUMNS[:4]})")
        for cells in reader:
            yield _row(cells)


@dataclasses.dataclass(frozen=True)
class Header:
    """The header values the report shows or groups by; empty strings when absent."""

    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    instance_number: str = ""
    rows: str = ""
    columns: str = ""
    frames: str = ""

    @property
    def known(self) -> bool:
        return bool(self.series_uid or self.study_uid)


_FIELDS = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "StudyInstanceUID": "study_uid",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "SeriesInstanceUID": "series_uid",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
    "Modality": "modality",
    "InstanceNumber": "instance_number",
    "Rows": "rows",
    "Columns": "columns",
    "NumberOfFrames": "frames",
}
assert set(_FIELDS) <= set(SCAN_KEYWORDS)

UNKNOWN = Header()


def locate_source(source: str, out: Path) -> Path | None:
    """The input file a manifest `source` names, if it still exists: as written (relative to
    the current folder), else relative to OUT's parent (where `convert` usually ran)."""
    if not source:
        return None
    path = Path(source)
    candidates = [path] if path.is_absolute() else [path, out.parent / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _pydicom_values(path: Path) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_dataset(path, stop_before_pixels=True)
        return {k: str(ds.get(k, "")) for k in _FIELDS if ds.get(k) is not None}


def read_header(path: Path) -> Header:
    """The report's header values of one input, header-only; `UNKNOWN` if unreadable."""
    try:
        values = scan_header(path, _FIELDS)
        if values is None:
            values = _pydicom_values(path)
    except Exception as exc:  # OSError, NotDicomError, or pydicom's many types on odd files
        log.debug("report: header of an input unreadable (%s)", type(exc).__name__)
        return UNKNOWN
    fields = {_FIELDS[k]: v.strip() for k, v in values.items()}
    return Header(**fields)


def read_headers(paths: list[Path | None]) -> list[Header]:
    """`read_header` of each path (`UNKNOWN` for None: the input is gone)."""
    return [read_header(path) if path is not None else UNKNOWN for path in paths]
