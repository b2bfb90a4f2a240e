"""`dcmexport.index`: a row per file with its fate, typed values, the same rows from every
scheduler, series grouping, and tables that pandas and DuckDB read back as written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from dcmexport import index
from dcmexport.errors import UsageError
from dcmexport.index import (
    DEFAULT_COLUMNS,
    build_index,
    index_rows,
    instance_columns,
    parse_columns,
    read_header,
    series_rows,
    write_table,
)
from dcmexport.sources.discovery import discover

from .conftest import SAMPLE_CT_SIZE, SAMPLE_CT_SLICES, pydicom_file, pydicom_test_files_dir

CT_SLICES, CT_SIZE = SAMPLE_CT_SLICES, SAMPLE_CT_SIZE
JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


def charset_file(name: str) -> Path:
    path = pydicom_test_files_dir().parent / "charset_files" / name
    if not path.exists():
        pytest.skip(f"pydicom charset file {name} not bundled in this pydicom version")
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, sample_set: tuple[Path, list[Path]]) -> Path:
    """The sample set, a few of pydicom's files, a text file and a truncated DICOM file."""
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copytree(sample_set[0], folder / "samples")
    extra = folder / "extra"
    extra.mkdir()
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "MR_truncated.dcm"):
        shutil.copy(pydicom_file(name), extra / name)
    shutil.copy(charset_file("chrH31.dcm"), extra / "japanese.dcm")
    (extra / "notes.txt").write_text("not DICOM\n")
    header = (folder / "samples" / "CT" / "CT_0001.dcm").read_bytes()[:700]
    (extra / "cut.dcm").write_bytes(header)  # ends inside an element of the header
    return folder


@pytest.fixture(scope="module")
def rows(mixed: Path) -> list[dict[str, Any]]:
    return list(index_rows([mixed], jobs=1))


def row_of(rows: list[dict[str, Any]], tail: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["path"].endswith(tail)]
    return row


# --------------------------------------------------------------------------- instance rows


def test_one_row_per_file_in_discovery_order(mixed: Path, rows: list[dict[str, Any]]) -> None:
    files = sorted(str(p) for p in mixed.rglob("*") if p.is_file())
    assert sorted(r["path"] for r in rows) == files
    assert [r["path"] for r in rows] == [str(f.path) for f in discover([mixed])]
    assert all(list(r) == list(DEFAULT_COLUMNS) for r in rows)
    assert instance_columns(DEFAULT_COLUMNS) == DEFAULT_COLUMNS  # path first, status last


def test_every_file_says_what_became_of_it(rows: list[dict[str, Any]]) -> None:
    notes, cut = row_of(rows, "notes.txt"), row_of(rows, "cut.dcm")
    assert (notes["status"], notes["error"]) == ("skipped", "not a DICOM file")
    assert cut["status"] == "error" and cut["error"].startswith("truncated DICOM file")
    assert cut["file_size"] == 700 and cut["SOPInstanceUID"] is None
    # truncated *pixel data* does not spoil a header-only read
    assert row_of(rows, "MR_truncated.dcm")["status"] == "ok"
    failed = {Path(r["path"]).name for r in rows if r["status"] != "ok"}
    assert failed == {"notes.txt", "cut.dcm", ".dcmexport-sample"}
    assert all(r["error"] is None for r in rows if r["status"] == "ok")


def test_values_are_plain_typed_python(rows: list[dict[str, Any]]) -> None:
    ct = row_of(rows, "CT/CT_0002.dcm")
    assert ct["PatientName"] == "Sample^Patient" and type(ct["PatientName"]) is str
    assert type(ct["SOPInstanceUID"]) is str and ct["Modality"] == "CT"
    assert (ct["StudyDate"], ct["StudyTime"], ct["PatientBirthDate"]) == (
        "2024-01-15",
        "09:30:00",
        "1970-01-01",
    )
    assert (ct["Rows"], ct["InstanceNumber"], ct["SeriesNumber"]) == (CT_SIZE, 2, 1)
    assert ct["SliceThickness"] == 5.0 and type(ct["SliceThickness"]) is float
    assert ct["WindowCenter"] == [40.0, -600.0] and ct["WindowWidth"] == [400.0, 1500.0]
    assert ct["ImageOrientationPatient"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert ct["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert ct["file_size"] == Path(ct["path"]).stat().st_size
    assert ct["NumberOfFrames"] is None  # absent stays missing
    # Value Multiplicity 1-n: a list even where the file has one value
    assert row_of(rows, "CR/CR_0001.dcm")["WindowCenter"] == [2100.0]
    assert row_of(rows, "XA/XA_0001.dcm")["NumberOfFrames"] == 30
    assert row_of(rows, "MR_small_implicit.dcm")["transfer_syntax"] == "1.2.840.10008.1.2"


def test_non_ascii_person_name_is_decoded(rows: list[dict[str, Any]]) -> None:
    assert row_of(rows, "japanese.dcm")["PatientName"] == JAPANESE_NAME


def test_one_and_two_workers_give_identical_rows(mixed: Path, rows: list[dict]) -> None:
    assert list(index_rows([mixed], jobs=2)) == rows


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # malformed on purpose
def test_scalar_list_and_date_rules_on_a_hand_built_file(tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, "1.2.3.4"
    ds.Modality = ["CT", "MR"]  # VM 1, repeated by a non-conformant writer
    ds.StudyDate, ds.SeriesDate, ds.StudyTime = "2024.01.15", "2024", "0930"
    ds.InstanceNumber = "2.0"
    ds.SliceThickness = " 1.25"
    ds.PixelSpacing = [0.5, 0.5]
    ds.add_new(0x00091010, "LO", "private text ")
    ds.add_new(0x00091011, "US", 7)
    path = tmp_path / "tiny.dcm"
    ds.save_as(path, enforce_file_format=True)
    cols = parse_columns(
        "Modality StudyDate SeriesDate StudyTime InstanceNumber SliceThickness PixelSpacing "
        "0009,1010 0x00091011"
    )
    row = read_header(str(path), instance_columns(cols))
    assert row["status"] == "ok"
    assert row["Modality"] == "CT\\MR"
    assert (row["StudyDate"], row["SeriesDate"], row["StudyTime"]) == (
        "2024-01-15",
        "2024",
        "09:30",
    )
    assert (row["InstanceNumber"], row["SliceThickness"]) == (2, 1.25)
    assert row["PixelSpacing"] == [0.5, 0.5]
    assert row["00091010"] == "private text"  # private tags: text, named GGGGEEEE
    assert row["00091011"] == "7"


# The values decoded without pydicom's per-element machinery (for speed) equal pydicom's.
REFERENCE = sorted(p.name for p in pydicom_test_files_dir().glob("*.dcm"))
WIDE = (
    *DEFAULT_COLUMNS,
    "ImageType",
    "OtherPatientIDs",
    "InstitutionName",
    "ReferringPhysicianName",
    "PixelPaddingValue",
    "FrameIncrementPointer",
    "AcquisitionDateTime",
    "PatientAge",
    "KVP",
    "TransferSyntaxUID",
)


@pytest.mark.parametrize("name", REFERENCE, ids=REFERENCE)
def test_fast_decoding_matches_pydicom(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path, columns = str(pydicom_file(name)), instance_columns(WIDE)
    fast = read_header(path, columns)
    monkeypatch.setattr(index.values, "_raw_cell", lambda raw, column: index.values._USE_PYDICOM)
    assert fast == read_header(path, columns)


# --------------------------------------------------------------------------- columns


def test_parse_columns_takes_keywords_and_every_tag_form() -> None:
    text = "PatientID, 0008,0060 (0018,0050)  0x00280030 00280010 0x281050 studydate,0009,0010"
    assert parse_columns(text) == (
        "PatientID",
        "Modality",
        "SliceThickness",
        "PixelSpacing",
        "Rows",
        "WindowCenter",
        "StudyDate",
        "00090010",
    )
    assert parse_columns(["Modality", "Rows,Modality", "file_size"]) == (
        "Modality",
        "Rows",
        "file_size",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PatientNme", "did you mean PatientName?"),
        ("ReferencedImageSequence", "a sequence or bulk data"),
        ("7FE0,0010", "a sequence or bulk data"),
        (" , ", "at least one"),
        ("instances", "unknown column"),  # a series table's count, not an instance's
    ],
)
def test_parse_columns_rejects_what_cannot_be_a_column(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_columns(text)


def test_selected_columns_only(mixed: Path) -> None:
    cols = parse_columns("PatientID 0008,0060 (0028,0010) 0x00280030")
    selected = list(index_rows([mixed / "samples" / "CT"], columns=cols, jobs=1))
    expected_keys = ["path", "PatientID", "Modality", "Rows", "PixelSpacing", "status", "error"]
    assert [list(r) for r in selected] == [expected_keys] * CT_SLICES
    spacing = 420 / CT_SIZE  # the sample CT spans a 420 mm field of view
    assert selected[0]["Modality"] == "CT" and selected[0]["PixelSpacing"] == [spacing, spacing]


def test_usage_errors_come_before_any_reading(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="input not found"):
        index_rows([tmp_path / "missing"])  # not lazily, on first next()
    with pytest.raises(UsageError, match="--jobs 0"):
        index_rows([tmp_path], jobs=0)
    with pytest.raises(UsageError, match=r"must end in \.csv or \.parquet"):
        build_index([tmp_path], tmp_path / "index.xlsx")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        write_table([], tmp_path / "dir.csv")


def test_build_index_reports_progress_and_checks_its_level(mixed: Path, tmp_path: Path) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.total: int | None = None
            self.results: list[tuple[str, str]] = []

        def start(self, total: int | None) -> None:
            self.total = total

        def result(self, result: Any) -> None:
            self.results.append((result.status, result.reason))

    recorder = Recorder()
    summary = build_index([mixed / "extra"], tmp_path / "i.csv", jobs=1, reporter=recorder)
    assert recorder.total == len(recorder.results) == summary.files == 7
    assert ("skipped", "not a DICOM file") in recorder.results
    with pytest.raises(UsageError, match="--level study: use instance or series"):
        build_index([mixed], tmp_path / "i.csv", level="study")


def test_missing_pyarrow_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(UsageError, match="pip install pyarrow"):
        build_index([tmp_path], tmp_path / "index.parquet")
    assert not (tmp_path / "index.parquet").exists()


# --------------------------------------------------------------------------- series level


def test_series_rows_count_and_share(rows: list[dict[str, Any]]) -> None:
    series = {r["SeriesDescription"]: r for r in series_rows(rows) if r["SeriesDescription"]}
    ct = series["Chest CT (synthetic phantom)"]
    # the sample's "patient CD" holds lossless copies of the CT, CR and XA instances
    assert (ct["files"], ct["instances"], ct["frames"]) == (2 * CT_SLICES, CT_SLICES, CT_SLICES)
    assert (ct["instance_number_min"], ct["instance_number_max"]) == (1, CT_SLICES)
    assert ct["Modality"] == "CT" and ct["Rows"] == CT_SIZE
    assert ct["ImagePositionPatient"] is None  # varies by slice: not one slice's value
    assert ct["transfer_syntax"] is None  # explicit VR in CT/, JPEG-LS on the CD
    assert ct["file_size"] == sum(
        r["file_size"] for r in rows if r["SeriesDescription"] == ("Chest CT (synthetic phantom)")
    )
    mr = series["Head T1 SE axial (synthetic phantom)"]
    assert (mr["files"], mr["instances"], mr["frames"]) == (5, 5, 5)
    assert Path(mr["path"]).name == "MR"  # the folder holding the series
    xa = series["Angio run (synthetic)"]
    assert (xa["files"], xa["instances"], xa["frames"]) == (2, 1, 30)
    assert "SOPInstanceUID" not in ct and "InstanceNumber" not in ct


def test_series_rows_keep_files_without_a_series(rows: list[dict[str, Any]]) -> None:
    series = series_rows(rows)
    loose = {Path(r["path"]).name: r for r in series if r["SeriesInstanceUID"] is None}
    assert loose.keys() == {"notes.txt", "cut.dcm", "DICOMDIR", ".dcmexport-sample"}
    assert loose["cut.dcm"]["status"] == "error" and loose["cut.dcm"]["instances"] == 0
    assert loose["DICOMDIR"]["frames"] == 0  # an instance, but no image
    ok_series = {r["SeriesInstanceUID"] for r in rows if r["status"] == "ok"} - {None}
    assert len(series) == len(ok_series) + len(loose)


def test_series_rows_do_not_depend_on_file_order(rows: list[dict[str, Any]]) -> None:
    forward = {r["SeriesInstanceUID"]: r for r in series_rows(rows) if r["SeriesInstanceUID"]}
    backward = series_rows(list(reversed(rows)))
    assert {r["SeriesInstanceUID"]: r for r in backward if r["SeriesInstanceUID"]} == forward


# --------------------------------------------------------------------------- tables


def read_back(path: Path) -> tuple[Any, str]:
    """The table as pandas reads it, and the DuckDB table function that reads it."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("duckdb")
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype={"PatientID": str, "AccessionNumber": str})
        return frame, f"read_csv_auto('{path}')"
    return pd.read_parquet(path, dtype_backend="numpy_nullable"), f"read_parquet('{path}')"


def duckdb_rows(query: str) -> list[tuple]:
    import duckdb

    relation = duckdb.sql(query)
    assert relation is not None
    return relation.fetchall()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_load_in_pandas_and_duckdb(mixed: Path, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pyarrow")
    table = tmp_path / f"index{suffix}"
    summary = build_index([mixed], table, jobs=2)
    assert (summary.skipped, summary.failed, summary.exit_code) == (2, 1, 1)
    assert summary.rows == summary.files == len(list(discover([mixed])))
    frame, source = read_back(table)
    assert len(frame) == duckdb_rows(f"select count(*) from {source}")[0][0] == summary.rows
    types = dict(row[:2] for row in duckdb_rows(f"describe select * from {source}"))
    assert list(frame.columns) == list(types) == list(DEFAULT_COLUMNS)
    assert types["Rows"] == types["file_size"] == "BIGINT" and types["SliceThickness"] == "DOUBLE"
    assert str(frame["SliceThickness"].dtype).lower() == "float64"
    assert frame["Rows"].dtype.kind in "iuf" and frame["file_size"].dtype.kind in "iu"
    ct = frame[frame["path"].str.endswith("CT/CT_0001.dcm")].iloc[0]
    japanese = frame[frame["path"].str.endswith("japanese.dcm")].iloc[0]
    assert japanese["PatientName"] == JAPANESE_NAME
    assert duckdb_rows(f"select PatientName from {source} where path like '%japanese.dcm'") == [
        (JAPANESE_NAME,)
    ]
    window = "WindowCenter"
    if suffix == ".csv":  # lists are JSON arrays, which DuckDB casts to lists
        assert json.loads(ct["WindowCenter"]) == [40.0, -600.0]
        assert types["StudyDate"] == "DATE" and types["WindowCenter"] == "VARCHAR"
        window = "WindowCenter::DOUBLE[]"
    else:
        assert list(ct["WindowCenter"]) == [40.0, -600.0]
        assert types["WindowCenter"] == "DOUBLE[]" and types["StudyDate"] == "VARCHAR"
    query = f"select {window} from {source} where path like '%CT/CT_0001.dcm'"
    assert duckdb_rows(query) == [([40.0, -600.0],)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_series_table(mixed: Path, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pyarrow")
    table = tmp_path / f"series{suffix}"
    cols = parse_columns("SeriesDescription Modality")
    summary = build_index([mixed], table, columns=cols, level="series", jobs=1)
    frame, _ = read_back(table)
    assert list(frame.columns) == [
        "path",
        "SeriesInstanceUID",
        "SeriesDescription",
        "Modality",
        "files",
        "instances",
        "frames",
        "status",
        "error",
    ]
    assert len(frame) == summary.rows < summary.files
    assert int(frame["files"].sum()) == summary.files


def test_a_column_may_be_empty_everywhere_and_a_table_may_have_no_rows(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    for suffix in (".csv", ".parquet"):
        assert write_table([], tmp_path / f"empty{suffix}", instance_columns(["WindowCenter"])) == 0
        frame, _ = read_back(tmp_path / f"empty{suffix}")
        assert list(frame.columns) == ["path", "WindowCenter", "status", "error"]
        assert len(frame) == 0
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "empty.parquet")
    assert schema.field("WindowCenter").type.value_type == pa.float64()
    assert schema.field("WindowCenter").metadata == {b"tag": b"(0028,1050)", b"vr": b"DS"}


def test_the_table_never_indexes_itself(mixed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(mixed / "extra", folder)
    first = build_index([folder], folder / "index.csv", jobs=1)
    second = build_index([folder], folder / "index.csv", jobs=1)
    assert first.files == second.files == len(list((mixed / "extra").iterdir()))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_rows(
    mixed: Path,
    rows: list[dict[str, Any]],
    dask_cluster: str,
) -> None:
    assert list(index_rows([mixed], scheduler=dask_cluster)) == rows
