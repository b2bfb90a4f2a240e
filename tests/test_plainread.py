"""`plainread.read_plain` gives exactly what `pydicom.dcmread` gives, or declines.

Oracle: pydicom's own `dcmread` on the same bytes, compared element by element in the raw
form pydicom's reader leaves them (tag, VR, length, value bytes, value offset, encoding),
then converted (every value, the printed dataset) and in the datasets' own attributes
(encodings, preamble, file meta). Over every sample file, every file pydicom bundles for its
tests, pydicom-data's files when installed, and the hostile test files.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from dcmexport.dicom import decoding, plainread

from .conftest import pydicom_data_files, pydicom_test_files_dir

_HOSTILE = Path(__file__).parent / "data" / "hostile"


def _files(sample_set: tuple[Path, list[Path]]) -> list[Path]:
    found = [p for p in sample_set[1] if p.suffix == ".dcm"]
    found += sorted(p for p in pydicom_test_files_dir().rglob("*") if p.is_file())
    found += sorted(_HOSTILE.glob("*.dcm"))
    return found + pydicom_data_files()  # optional; the bundled files cover the cases


def _attributes(ds: Dataset) -> dict[str, Any]:
    return {k: v for k, v in vars(ds).items() if k not in ("_dict", "buffer", "file_meta")}


def _assert_same(ours: Dataset, theirs: Dataset, name: str) -> None:
    assert type(ours) is type(theirs), name
    assert list(ours._dict) == list(theirs._dict), name
    for tag, mine in ours._dict.items():
        other = theirs._dict[tag]
        assert type(mine) is type(other), (name, tag)
        if isinstance(mine, tuple):  # a RawDataElement: every field, value bytes included
            assert tuple(mine) == tuple(other), (name, tag)
        else:  # an undefined-length sequence, parsed on reading by both
            assert mine == other, (name, tag)
            assert mine.is_undefined_length == other.is_undefined_length, (name, tag)
            assert mine.file_tell == other.file_tell, (name, tag)
    assert _attributes(ours) == _attributes(theirs), name


def test_read_plain_is_dcmread_or_declines(sample_set: tuple[Path, list[Path]]) -> None:
    fast = declined = 0
    for path in _files(sample_set):
        data = path.read_bytes()
        ours = plainread.read_plain(data)
        if ours is None:
            declined += 1
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pydicom.dcmread(io.BytesIO(data), force=True)
        _assert_same(ours, theirs, path.name)
        _assert_same(ours.file_meta, theirs.file_meta, f"{path.name} (file meta)")
        assert ours.buffer.getvalue() == data and ours.buffer.tell() == theirs.buffer.tell()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert ours == theirs, path.name  # every element converted
            assert str(ours) == str(theirs), path.name
        fast += 1
    assert fast > 150 and declined > 20, (fast, declined)


@pytest.mark.parametrize("head", [plainread.HEAD_BYTES, 2048, 256])
def test_read_plain_file_is_dcmread_of_the_path(
    sample_set: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch, head: int
) -> None:
    """From a path, the header is read first and the Pixel Data (the last element) straight
    into its value; the dataset is what ``dcmread(path)`` gives, or the file's whole bytes
    come back for pydicom's reading. Smaller heads make headers reach past them: 2 KB holds
    some, 256 bytes none (not even the File Meta)."""
    monkeypatch.setattr(plainread, "HEAD_BYTES", head)
    fast = 0
    for path in _files(sample_set):
        found = plainread.read_plain_file(str(path), 1 << 30)
        if isinstance(found, bytes):
            assert found == path.read_bytes(), path.name
            continue
        assert found is not None, path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pydicom.dcmread(path, force=True)
        _assert_same(found, theirs, path.name)
        _assert_same(found.file_meta, theirs.file_meta, f"{path.name} (file meta)")
        assert found.buffer is None and found.filename == str(path)
        fast += 1
    assert fast > {plainread.HEAD_BYTES: 150, 2048: 20, 256: -1}[head], fast
    assert plainread.read_plain_file(str(_files(sample_set)[0]), 10) is None  # over the limit


def _part10(body: bytes, syntax: str) -> bytes:
    uid = syntax.encode() + b"\0" * (len(syntax) % 2)
    meta = b"\x02\x00\x10\x00UI" + len(uid).to_bytes(2, "little") + uid
    return b"\0" * 128 + b"DICM" + meta + body


_ROWS = b"\x28\x00\x10\x00US\x02\x00\x02\x00"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_part10(_ROWS, pydicom.uid.ExplicitVRBigEndian), "big endian"),
        (_part10(_ROWS, pydicom.uid.DeflatedExplicitVRLittleEndian), "deflated"),
        (
            _part10(_ROWS, pydicom.uid.ImplicitVRLittleEndian),
            "explicit VR under an implicit syntax",
        ),
        (_part10(_ROWS[:-1], pydicom.uid.ExplicitVRLittleEndian), "cut inside a value"),
        (
            _part10(_ROWS + b"\x01\x02", pydicom.uid.ExplicitVRLittleEndian),
            "stray bytes at the end",
        ),
        (
            _part10(b"\x28\x00\x10\x00ZZ\x02\x00\x02\x00", pydicom.uid.ExplicitVRLittleEndian),
            "unknown VR",
        ),
        (
            _part10(
                b"\x00\x00\x00\x01\x04\x00\x00\x00\x01\x00\x00\x00" + _ROWS, "1.2.840.10008.1.2"
            ),
            "command set",
        ),
        (_part10(b"", pydicom.uid.ExplicitVRLittleEndian), "no dataset"),
        (_part10(_ROWS, pydicom.uid.ExplicitVRLittleEndian)[128:], "no preamble"),
    ],
)
def test_read_plain_declines_what_pydicom_decides(data: bytes, why: str) -> None:
    assert plainread.read_plain(data) is None, why


def test_the_worker_reads_plain_files_through_it(sample_set: tuple[Path, list[Path]]) -> None:
    """`decoding.read_dataset` takes the plain reading for a CT slice read from its path, and
    names the dataset after the path as pydicom does for a path it reads."""
    ct = next(p for p in sample_set[1] if p.parent.name == "CT" and p.suffix == ".dcm")
    ds = decoding.read_dataset(ct)
    assert ds.filename == str(ct) and ds.fileobj_type is open
    reference = pydicom.dcmread(ct)
    assert ds == reference and ds.file_meta == reference.file_meta
    assert plainread.read_plain(ct.read_bytes()) is not None


@pytest.mark.parametrize("head", [plainread.HEAD_BYTES, 2048])
def test_read_plain_header_is_dcmread_stopping_before_pixels(
    sample_set: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch, head: int
) -> None:
    """A header-only read from the first bytes: what ``dcmread(path, stop_before_pixels=True)``
    gives, or None (a header longer than the head, or not plain)."""
    monkeypatch.setattr(plainread, "HEAD_BYTES", head)
    fast = 0
    for path in _files(sample_set):
        header = plainread.read_plain_header(str(path))
        if header is None:
            continue
        found = header.ds
        assert header.size == path.stat().st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        _assert_same(found, theirs, path.name)
        _assert_same(found.file_meta, theirs.file_meta, f"{path.name} (file meta)")
        assert not plainread._PIXEL_TAGS & set(found._dict), path.name
        fast += 1
    assert fast > {plainread.HEAD_BYTES: 150, 2048: 20}[head], fast
