"""What a server holds, whatever its protocol: studies, series and instances that match.

The functions here pick DICOMweb or DIMSE from the `Server` and return plain records, so the
CLI, `pull` and a batch `Source` never care which protocol is behind a SERVER. `list_instances`,
`fetch_instance` and `fetch_series` are the three calls a worker-based `convert SERVER` needs;
all take only picklable arguments.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from ..dicom.values import text_value
from ..errors import UsageError
from ..store import write_atomic
from . import dicomweb, dimse
from .servers import (
    InstanceRef,
    QueryFilters,
    QueryLevel,
    SeriesRecord,
    Server,
    ServerKind,
    StudyRecord,
)

logger = logging.getLogger(__name__)

Sink = Callable[[InstanceRef, bytes], None]


def _count(ds: Dataset, keyword: str) -> int | None:
    text = text_value(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def study_record(ds: Dataset) -> StudyRecord:
    """A QIDO-RS or C-FIND study match as a `StudyRecord`."""
    modalities = text_value(ds, "ModalitiesInStudy")
    return StudyRecord(
        patient_id=text_value(ds, "PatientID"),
        study_date=text_value(ds, "StudyDate"),
        modalities=tuple(m for m in modalities.split("\\") if m),
        description=text_value(ds, "StudyDescription"),
        study_uid=text_value(ds, "StudyInstanceUID"),
        accession=text_value(ds, "AccessionNumber"),
        number_of_series=_count(ds, "NumberOfStudyRelatedSeries"),
        number_of_instances=_count(ds, "NumberOfStudyRelatedInstances"),
    )


def series_record(ds: Dataset, study: StudyRecord | None = None) -> SeriesRecord:
    """A QIDO-RS or C-FIND series match as a `SeriesRecord` (study values from `study`)."""
    return SeriesRecord(
        patient_id=text_value(ds, "PatientID") or (study.patient_id if study else ""),
        study_date=text_value(ds, "StudyDate") or (study.study_date if study else ""),
        modality=text_value(ds, "Modality"),
        description=text_value(ds, "SeriesDescription"),
        study_uid=text_value(ds, "StudyInstanceUID") or (study.study_uid if study else ""),
        series_uid=text_value(ds, "SeriesInstanceUID"),
        series_number=text_value(ds, "SeriesNumber"),
        number_of_instances=_count(ds, "NumberOfSeriesRelatedInstances"),
    )


def check_connection(server: Server) -> None:
    """Fail early with a typed error if the server is not there: C-ECHO for DIMSE; for
    DICOMweb the first search does this (a QIDO-RS request costs the same as a probe)."""
    if server.kind is ServerKind.DIMSE:
        dimse.echo(server)


def find_studies(server: Server, filters: QueryFilters) -> list[StudyRecord]:
    """The studies matching `filters`, sorted by date then UID.

    `--series` narrows to the studies holding one of those series; the counts stay the
    study's own (what the server says), not those of the matching series.
    """
    if server.kind is ServerKind.DICOMWEB:
        found = dicomweb.search_studies(server, filters)
    else:
        found = dimse.find_studies(server, filters)
    studies = [study_record(ds) for ds in found]
    if filters.series_uids:
        holding = {s.study_uid for s in find_series(server, filters, studies)}
        studies = [s for s in studies if s.study_uid in holding]
    return sorted(studies, key=lambda s: (s.study_date, s.study_uid))


def find_series(
    server: Server, filters: QueryFilters, studies: Sequence[StudyRecord] | None = None
) -> list[SeriesRecord]:
    """The series matching `filters`: those of the matching studies (hierarchical search),
    or, when only `--series` (and/or `--modality`) is given, one search over all series."""
    search = dicomweb.search_series if server.kind is ServerKind.DICOMWEB else dimse.find_series
    study_filters = filters.patient_id or filters.study_date or filters.accession
    if studies is None and filters.series_uids and not (study_filters or filters.study_uids):
        found = [series_record(ds) for ds in search(server, filters, "")]
    else:
        if studies is None:
            studies = find_studies(server, dataclasses.replace(filters, series_uids=()))
        found = [
            series_record(ds, st) for st in studies for ds in search(server, filters, st.study_uid)
        ]
    if filters.series_uids:  # a server may ignore UID list matching: filter here too
        found = [s for s in found if s.series_uid in filters.series_uids]
    return sorted(found, key=lambda s: (s.study_date, s.study_uid, _number(s.series_number)))


def _number(text: str) -> tuple[int, str]:
    try:
        return (int(text), text)
    except ValueError:
        return (1 << 30, text)


def list_instances(server: Server, filters: QueryFilters) -> list[InstanceRef]:
    """Every instance matching `filters`, grouped by series: the work list of `pull` and of
    `convert SERVER`. Instances whose UIDs are not plain digits and dots are kept (the caller
    reports them as errors: `InstanceRef.valid`)."""
    series = find_series(server, filters)
    if server.kind is ServerKind.DICOMWEB:
        found = [
            ds
            for s in series
            for ds in dicomweb.search_instances(server, s.study_uid, s.series_uid)
        ]
    else:
        found = dimse.find_instances(server, [(s.study_uid, s.series_uid) for s in series])
    order = {s.series_uid: n for n, s in enumerate(series)}
    refs = [
        InstanceRef(
            study_uid=text_value(ds, "StudyInstanceUID"),
            series_uid=text_value(ds, "SeriesInstanceUID"),
            sop_instance_uid=text_value(ds, "SOPInstanceUID"),
            sop_class_uid=text_value(ds, "SOPClassUID"),
        )
        for ds in sorted(
            found,
            key=lambda d: (
                order.get(text_value(d, "SeriesInstanceUID"), len(order)),
                _number(text_value(d, "InstanceNumber")),
            ),
        )
    ]
    return [r for r in refs if r.series_uid in order]


def fetch_instance(server: Server, ref: InstanceRef) -> bytes:
    """One instance's Part-10 bytes: WADO-RS for DICOMweb; for DIMSE a one-instance C-GET
    over an association this process keeps open (`dimse.get_instance`)."""
    if server.kind is ServerKind.DICOMWEB:
        return dicomweb.retrieve_instance(server, ref)
    return dimse.get_instance(server, ref)


def fetch_series(server: Server, refs: Sequence[InstanceRef], sink: Sink) -> dict[str, str]:
    """Fetch `refs` (typically one series), calling `sink(ref, bytes)` as each arrives.

    DIMSE: one C-GET association. DICOMweb: WADO-RS per instance on one keep-alive session.
    Returns the SOP Instance UIDs that failed, each with a one-line reason; a server that
    cannot be reached at all raises `ServerUnreachableError` instead.
    """
    if server.kind is ServerKind.DIMSE:
        return dimse.get_instances(server, refs, sink)
    failures: dict[str, str] = {}
    for ref in refs:
        try:
            sink(ref, dicomweb.retrieve_instance(server, ref))
        except Exception as exc:
            if isinstance(exc, ConnectionError):
                raise
            failures[ref.sop_instance_uid] = str(exc) or type(exc).__name__
    return failures


# --------------------------------------------------------------------------- the query table

STUDY_COLUMNS = (
    "patient_id",
    "study_date",
    "modality",
    "description",
    "study_uid",
    "series",
    "instances",
)
SERIES_COLUMNS = (
    "patient_id",
    "study_date",
    "modality",
    "description",
    "study_uid",
    "series_uid",
    "series_number",
    "instances",
)


def table_rows(records: Iterable[StudyRecord | SeriesRecord]) -> list[dict[str, object]]:
    """Records as table rows (the columns of `STUDY_COLUMNS` or `SERIES_COLUMNS`)."""
    rows: list[dict[str, object]] = []
    for r in records:
        if isinstance(r, StudyRecord):
            rows.append(
                {
                    "patient_id": r.patient_id,
                    "study_date": r.study_date,
                    "modality": "/".join(r.modalities),
                    "description": r.description,
                    "study_uid": r.study_uid,
                    "series": r.number_of_series,
                    "instances": r.number_of_instances,
                }
            )
        else:
            rows.append(
                {
                    "patient_id": r.patient_id,
                    "study_date": r.study_date,
                    "modality": r.modality,
                    "description": r.description,
                    "study_uid": r.study_uid,
                    "series_uid": r.series_uid,
                    "series_number": r.series_number,
                    "instances": r.number_of_instances,
                }
            )
    return rows


def format_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A plain fixed-width text table for the terminal (long values are not cut)."""
    cells = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(lines)


def write_query_table(
    rows: Sequence[dict[str, object]], path: str | os.PathLike[str], columns: Sequence[str]
) -> None:
    """Save the query table as ``.csv`` or ``.parquet``, atomically."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([("" if row[c] is None else row[c]) for c in columns] for row in rows)
        write_atomic(target, buffer.getvalue().encode("utf-8"))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"series": pa.int64(), "instances": pa.int64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        table = pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows], schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(target, sink.getvalue().to_pybytes())
    else:
        raise UsageError(f"-o {target.name}: the table must end in .csv or .parquet")


def records_for(
    server: Server, filters: QueryFilters, level: QueryLevel
) -> tuple[list[dict[str, object]], tuple[str, ...]]:
    """`dcmexport query` in one call: the rows and columns at `level` (study or series)."""
    if level is QueryLevel.STUDY:
        return table_rows(find_studies(server, filters)), STUDY_COLUMNS
    if level is QueryLevel.SERIES:
        return table_rows(find_series(server, filters)), SERIES_COLUMNS
    raise UsageError("query lists studies or series")
