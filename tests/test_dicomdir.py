"""Tests for `dcmexport.sources.dicomdir` on pydicom's DICOMDIR test set, copied and altered."""

from __future__ import annotations

import io
import os
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import MediaStorageDirectoryStorage, generate_uid

from dcmexport.errors import NotDicomError
from dcmexport.sources.archives import iter_members, read_member
from dcmexport.sources.dicomdir import (
    find_dicomdir,
    is_dicomdir,
    is_dicomdir_name,
    references,
    references_in_archive,
)

from .conftest import pydicom_file, pydicom_test_files_dir

#: Edited records hold deliberately invalid CS values (lower case, '..'), which pydicom warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS:UserWarning")

VARIANTS = ["DICOMDIR", "DICOMDIR-reordered", "DICOMDIR-implicit", "DICOMDIR-bigEnd"]
VARIANTS += ["DICOMDIR-nooffset", "DICOMDIR-nopatient"]  # FileSet refuses the last one


@pytest.fixture(scope="module")
def source() -> Path:
    folder = pydicom_test_files_dir() / "dicomdirtests"
    if not (folder / "DICOMDIR").exists():
        pytest.skip("pydicom's DICOMDIR test set is not bundled")
    return folder


@pytest.fixture
def cd(tmp_path: Path, source: Path) -> Path:
    """A writable copy of the test set: DICOMDIR (31 images) and TINY_ALPHA/DICOMDIR (50)."""
    return Path(shutil.copytree(source, tmp_path / "cd"))


def image_records(dicomdir: Path) -> dict[str, str]:
    """ReferencedFileID (joined with /) → SOP Instance UID, for every IMAGE record."""
    ds = pydicom.dcmread(dicomdir)
    return {
        "/".join(r.ReferencedFileID): r.ReferencedSOPInstanceUIDInFile
        for r in ds.DirectoryRecordSequence
        if r.DirectoryRecordType == "IMAGE"
    }


def lower_case_tree(root: Path) -> None:
    """Rename every file and folder under `root` to lower case, as some CD copies do."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            if name != name.lower():
                os.rename(os.path.join(folder, name), os.path.join(folder, name.lower()))


def rewrite(ds: Dataset, path: Path, appended: Sequence[Dataset] = ()) -> None:
    """Save an edited DICOMDIR, `appended` records becoming root siblings; offsets are
    recomputed by position, as a DICOMDIR writer would."""
    seq = ds.DirectoryRecordSequence
    index = {r.seq_item_tell: i for i, r in enumerate(seq)}
    links = [
        (
            index.get(r.OffsetOfTheNextDirectoryRecord),
            index.get(r.OffsetOfReferencedLowerLevelDirectoryEntity),
        )
        for r in seq
    ]
    first = last = index[ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity]
    while links[last][0] is not None:
        last = links[last][0]  # type: ignore[assignment]
    for record in appended:
        seq.append(record)
        links.append((None, None))
        links[last] = (len(seq) - 1, links[last][1])
        last = len(seq) - 1
    for _ in range(2):  # the second pass writes offsets valid for the first pass's layout
        ds.save_as(path)
        tells = [r.seq_item_tell for r in pydicom.dcmread(path).DirectoryRecordSequence]
        for record, (after, lower) in zip(seq, links, strict=True):
            record.OffsetOfTheNextDirectoryRecord = 0 if after is None else tells[after]
            record.OffsetOfReferencedLowerLevelDirectoryEntity = (
                0 if lower is None else tells[lower]
            )
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = tells[first]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = tells[last]
    ds.save_as(path)


def file_record(file_id: list[str], sop_class: str = "") -> Dataset:
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = "PRIVATE"
    record.PrivateRecordUID = generate_uid()
    record.ReferencedFileID = file_id
    if sop_class:
        record.ReferencedSOPClassUIDInFile = sop_class
    return record


def load_fileset(path: Path) -> FileSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FileSet(path)


# --- the real set --------------------------------------------------------------------------


def test_every_image_found_exactly_once(cd: Path) -> None:
    refs = references(cd / "DICOMDIR")
    records = image_records(cd / "DICOMDIR")
    assert len(records) == 31
    assert [r.problem for r in refs] == [""] * len(records)
    assert sorted(r.file_id for r in refs) == sorted(records)
    assert len({r.path.resolve() for r in refs if r.path}) == len(records)
    for ref in refs:
        assert ref.path is not None and ref.path.is_relative_to(cd)
        assert pydicom.dcmread(ref.path).SOPInstanceUID == records[ref.file_id]


def test_same_references_and_order_as_pydicom_fileset(cd: Path) -> None:
    expected = ["/".join(i.ReferencedFileID) for i in load_fileset(cd / "DICOMDIR")]
    assert [r.file_id for r in references(cd / "DICOMDIR")] == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_of_the_dicomdir_give_the_same_files(cd: Path, variant: str) -> None:
    refs = references(cd / variant)
    assert not [r for r in refs if r.problem]
    assert sorted(r.file_id for r in refs) == sorted(image_records(cd / "DICOMDIR"))


def test_records_describe_without_patient_data(cd: Path) -> None:
    refs = references(cd / "DICOMDIR")
    assert refs[0].record == "IMAGE record 77654033/CR1/6154 (instance 1 of series 1)"
    ds = pydicom.dcmread(cd / "DICOMDIR")
    patient_data = {
        str(r.get(k))
        for r in ds.DirectoryRecordSequence
        for k in ("PatientName", "StudyDate", "StudyDescription")
        if r.get(k)
    }
    assert patient_data
    assert not any(value in ref.record for ref in refs for value in patient_data)


def test_tiny_alpha_set(cd: Path) -> None:
    refs = references(cd / "TINY_ALPHA" / "DICOMDIR")
    assert len(refs) == 50 and not [r for r in refs if r.problem]


def test_empty_dicomdir(cd: Path) -> None:
    assert references(cd / "DICOMDIR-empty.dcm") == []


# --- copies that changed -------------------------------------------------------------------


def test_lower_cased_copy_resolves_everything(cd: Path) -> None:
    lower_case_tree(cd)
    dicomdir = find_dicomdir(cd)
    assert dicomdir == cd / "dicomdir"
    assert len(load_fileset(dicomdir)) == 0  # why FileSet alone is not enough
    refs = references(dicomdir)
    assert [r.problem for r in refs] == [""] * 31
    assert all(r.path and r.path.is_file() and str(r.path) == str(r.path).lower() for r in refs)
    assert sorted(r.file_id for r in refs) == sorted(image_records(dicomdir))


def test_one_missing_file_is_reported_and_the_rest_resolve(cd: Path) -> None:
    lower_case_tree(cd)
    (cd / "98892003" / "mr700" / "4648").unlink()
    refs = references(cd / "dicomdir")
    problems = [r for r in refs if r.problem]
    assert [(r.file_id, r.path) for r in problems] == [("98892003/MR700/4648", None)]
    assert problems[0].problem == "referenced file 98892003/MR700/4648 is missing"
    assert "IMAGE record 98892003/MR700/4648" in problems[0].record
    assert len([r for r in refs if r.path]) == 30


def test_iso9660_version_suffix_and_trailing_dot(cd: Path) -> None:
    folder = cd / "77654033" / "CT2"
    names = sorted(os.listdir(folder))
    (folder / names[0]).rename(folder / f"{names[0]};1")
    (folder / names[1]).rename(folder / f"{names[1]}.")
    refs = references(cd / "DICOMDIR")
    assert not [r for r in refs if r.problem]
    assert {f"{names[0]};1", f"{names[1]}."} <= {r.path.name for r in refs if r.path}


# --- hostile and nested references ---------------------------------------------------------


def test_escaping_references_are_problems_never_followed(cd: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.dcm").write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    ds = pydicom.dcmread(cd / "DICOMDIR")
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    images[0].ReferencedFileID = ["..", "outside.dcm"]
    images[1].ReferencedFileID = ["", "etc", "passwd"]
    rewrite(ds, cd / "DICOMDIR")
    with pytest.raises(PermissionError):
        load_fileset(cd / "DICOMDIR")  # pydicom refuses the whole set
    refs = references(cd / "DICOMDIR")
    problems = {r.file_id: r.problem for r in refs if r.problem}
    assert problems == {
        "../outside.dcm": "referenced file ../outside.dcm refused: '..' in the path",
        "/etc/passwd": "referenced file /etc/passwd refused: absolute path",
    }
    assert len([r for r in refs if r.path]) == 29


def test_a_link_out_of_the_folder_is_a_problem(cd: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    target = cd / "77654033" / "CR1" / "6154"
    target.unlink()
    target.symlink_to(outside)
    refs = references(cd / "DICOMDIR")
    assert [r.problem for r in refs if r.problem] == [
        "referenced file 77654033/CR1/6154 refused: outside the DICOMDIR's folder (a link)"
    ]


def make_nested(cd: Path) -> None:
    """TINY_ALPHA's DICOMDIR becomes a DIRFILE referenced from the top DICOMDIR (twice), the
    top DICOMDIR references itself and, once more in other case, one of its images: each set
    is read once and each file listed once."""
    (cd / "TINY_ALPHA" / "DICOMDIR").rename(cd / "TINY_ALPHA" / "DIRFILE")
    ds = pydicom.dcmread(cd / "DICOMDIR")
    nested = file_record(["TINY_ALPHA", "DIRFILE"], MediaStorageDirectoryStorage)
    again = file_record(["tiny_alpha", "dirfile"])  # found by name and content
    itself = file_record(["DICOMDIR"], MediaStorageDirectoryStorage)
    duplicate = file_record(["77654033", "cr1", "6154"])
    rewrite(ds, cd / "DICOMDIR", [nested, itself, again, duplicate])


def test_nested_dirfile_is_followed_once(cd: Path) -> None:
    make_nested(cd)
    refs = references(cd / "DICOMDIR")
    assert not [r for r in refs if r.problem]
    assert len(refs) == 31 + 50
    assert len({r.path.resolve() for r in refs if r.path}) == 81
    nested = [r for r in refs if r.path and "TINY_ALPHA" in r.path.parts]
    assert len(nested) == 50
    assert nested[0].file_id == "PT000000/ST000000/SE000000/IM000000"


def test_not_a_dicomdir(cd: Path) -> None:
    with pytest.raises(NotDicomError):
        references(pydicom_file("CT_small.dcm"))
    with pytest.raises(NotDicomError):
        references(cd / "TINY_ALPHA" / "README")


# --- detection -----------------------------------------------------------------------------


def test_is_dicomdir(cd: Path) -> None:
    assert is_dicomdir(cd / "DICOMDIR")
    assert is_dicomdir(str(cd / "DICOMDIR-implicit"))
    assert is_dicomdir((cd / "DICOMDIR").read_bytes())
    assert is_dicomdir(pydicom.dcmread(cd / "DICOMDIR"))
    assert not is_dicomdir(pydicom_file("CT_small.dcm"))
    assert not is_dicomdir(pydicom.dcmread(pydicom_file("CT_small.dcm")))
    assert not is_dicomdir(cd / "TINY_ALPHA" / "README")
    assert not is_dicomdir(b"not dicom at all")
    assert not is_dicomdir(cd / "missing")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DICOMDIR", True),
        ("dicomdir", True),
        ("CD/DicomDir", True),
        ("CD\\DICOMDIR;1", True),
        ("DICOMDIR.", True),
        ("DICOMDIR-implicit", False),
        ("DICOMDIR/x", False),
        ("DIRFILE", False),
    ],
)
def test_is_dicomdir_name(name: str, expected: bool) -> None:
    assert is_dicomdir_name(name) is expected


def test_find_dicomdir(cd: Path, tmp_path: Path) -> None:
    assert find_dicomdir(cd) == cd / "DICOMDIR"
    (cd / "TINY_ALPHA" / "DICOMDIR").rename(cd / "TINY_ALPHA" / "DicomDir")
    assert find_dicomdir(cd / "TINY_ALPHA") == cd / "TINY_ALPHA" / "DicomDir"
    assert find_dicomdir(cd / "77654033") is None
    assert find_dicomdir(tmp_path / "missing") is None


# --- inside an archive ---------------------------------------------------------------------


def zip_tree(root: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                path = Path(folder, name)
                zf.write(path, f"{prefix}/{path.relative_to(root).as_posix()}")
    return archive


@pytest.mark.parametrize("lower", [False, True])
def test_archive_gives_the_same_references(cd: Path, tmp_path: Path, lower: bool) -> None:
    if lower:
        lower_case_tree(cd)
    dicomdir = find_dicomdir(cd)
    assert dicomdir is not None
    on_disk = references(dicomdir)
    archive = zip_tree(cd, tmp_path / "cd.zip", "CD")
    names = [m.name for m in iter_members(archive) if not m.problem]
    member = f"CD/{dicomdir.name}"
    in_zip = references_in_archive(read_member(archive, member), member, names)
    assert [(r.file_id, r.record, r.problem) for r in in_zip] == [
        (r.file_id, r.record, r.problem) for r in on_disk
    ]
    assert [r.member for r in in_zip] == [
        f"CD/{r.path.relative_to(cd).as_posix()}" for r in on_disk if r.path
    ]


def test_archive_with_missing_hostile_and_nested_references(cd: Path, tmp_path: Path) -> None:
    make_nested(cd)
    (cd / "77654033" / "CR1" / "6154").unlink()
    ds = pydicom.dcmread(cd / "DICOMDIR")
    ds.DirectoryRecordSequence[-1].ReferencedFileID = ["..", "..", "x"]
    rewrite(ds, cd / "DICOMDIR")
    archive = zip_tree(cd, tmp_path / "cd.zip", "media")
    names = [m.name for m in iter_members(archive)]
    dicomdir = read_member(archive, "media/DICOMDIR")

    def read(name: str) -> bytes:
        return read_member(archive, name)

    refs = references_in_archive(dicomdir, "media/DICOMDIR", names, read)
    assert [r.problem for r in refs if r.problem] == [
        "referenced file 77654033/CR1/6154 is missing",
        "referenced file ../../x refused: '..' in the path",
    ]
    members = [r.member for r in refs if r.member]
    assert len(members) == len(set(members)) == 30 + 50
    assert sum(m.startswith("media/TINY_ALPHA/PT000000/") for m in members) == 50
    without_read = references_in_archive(dicomdir, "media/DICOMDIR", names)
    assert "media/TINY_ALPHA/DIRFILE" in [r.member for r in without_read]


def test_archive_dicomdir_bytes_must_be_a_dicomdir() -> None:
    with pytest.raises(NotDicomError):
        references_in_archive(pydicom_file("CT_small.dcm").read_bytes(), "x/DICOMDIR", [])
    with pytest.raises(NotDicomError):
        references_in_archive(io.BytesIO(b"junk").getvalue(), "DICOMDIR", [])
