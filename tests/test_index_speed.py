"""The lean paths of `dcmexport.index` give what the general paths give: a header parsed from
a file's first bytes equals `decoding.read_dataset`'s read of the path (pydicom's own reader),
cached cells equal freshly decoded ones, and CSV cells equal `json.dumps`/`repr`'s."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import UID

from dcmexport import index
from dcmexport.dicom import decoding, plainread
from dcmexport.index import instance_columns, read_header
from dcmexport.index.read import _head_dataset
from dcmexport.index.table import _csv_cell, _csv_cells
from dcmexport.index.values import forget_cells

from .conftest import pydicom_file, pydicom_test_files_dir
from .test_index import WIDE

#: Many VRs, multi-valued columns, file meta and absent tags.
COLUMNS = instance_columns((*WIDE, "MediaStorageSOPInstanceUID", "SpecificCharacterSet"))


def _by_path_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The row read through `decoding.read_dataset` with pydicom reading the path (the plain
    reads switched off), cold cache."""
    with monkeypatch.context() as m:
        m.setattr(index.read, "_head_dataset", lambda path: None)
        m.setattr(decoding, "_plain_header", lambda path: None)
        forget_cells()
        return read_header(str(path), COLUMNS)


def _files() -> list[Path]:
    return sorted(p for p in pydicom_test_files_dir().rglob("*") if p.is_file())


def test_head_read_gives_the_path_reads_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bundled pydicom file (DICOMDIRs, no meta, deflated, big endian, no pixel data,
    truncated, not DICOM at all): the same row, whichever read is taken."""
    took_head = 0
    for path in _files():
        with warnings.catch_warnings():  # pydicom warns about the oddities it tolerates
            warnings.simplefilter("ignore")
            took_head += _head_dataset(str(path)) is not None
        forget_cells()
        assert read_header(str(path), COLUMNS) == _by_path_read(path, monkeypatch), path.name
    assert took_head > 50  # the lean read is the common one


@pytest.mark.parametrize("head_bytes", [300, 1024, 16 * 1024])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm"])
def test_head_read_of_files_cut_anywhere(
    name: str, head_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files cut inside the meta, inside an element, at and around the Pixel Data tag, with
    headers shorter and longer than the bytes read first: the path read's row each time."""
    data = pydicom_file(name).read_bytes()
    monkeypatch.setattr(plainread, "HEAD_BYTES", head_bytes)
    pixels = max(data.find(b"\xe0\x7f\x10\x00"), data.find(b"\x7f\xe0\x00\x10"))
    cuts = {0, 100, 132, 200, 700, head_bytes - 1, head_bytes, head_bytes + 1, len(data) - 1}
    if pixels > 0:
        cuts |= {pixels + d for d in (-9, -1, 0, 1, 4, 8, 11, 12, 13)}
    for cut in sorted(c for c in cuts if 0 <= c <= len(data)):
        path = tmp_path / f"{cut}.dcm"
        path.write_bytes(data[:cut])
        forget_cells()
        assert read_header(str(path), COLUMNS) == _by_path_read(path, monkeypatch), cut


def test_cached_cells_are_the_decoded_cells_and_each_rows_own() -> None:
    """A warm cache (every file read once before) gives the cold cache's rows; a list cell
    is never shared between rows."""
    paths = [str(p) for p in sorted(pydicom_test_files_dir().glob("*.dcm"))]
    forget_cells()
    cold = [read_header(p, COLUMNS) for p in paths]
    warm = [read_header(p, COLUMNS) for p in paths]
    assert warm == cold
    first, again = read_header(paths[0], COLUMNS), read_header(paths[0], COLUMNS)
    lists = [name for name, value in first.items() if isinstance(value, list)]
    assert lists
    assert all(first[name] is not again[name] for name in lists)


def test_csv_cells_are_the_general_cells() -> None:
    values: list[Any] = [None, "", "text", "é\r\n", 0, -3, True, False, 1.5, 0.1 + 0.2, math.nan]
    values += [[], [1, 2], [0.5, 1e-300], ["a", "山田"], [None], UID("1.2.840"), b"x"]
    row = {f"c{i}": value for i, value in enumerate(values)}
    columns = [*row, "absent"]
    assert _csv_cells(row, columns) == [_csv_cell(row.get(c)) for c in columns]
    lists = [v for v in values if isinstance(v, list)]
    assert [_csv_cell(v) for v in lists] == [json.dumps(v, ensure_ascii=False) for v in lists]
