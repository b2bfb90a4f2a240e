"""Patient CDs, archives and layouts end to end: DICOMDIR sets, zip/tar members, hostile names
and tag values — every image converted once, and nothing written outside OUT."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dcmexport import convert
from dcmexport.cli import main
from dcmexport.sources import InputRef

from .conftest import pydicom_file, pydicom_test_files_dir

SET = ("DICOMDIR", "77654033", "98892001", "98892003")


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def images(out: Path) -> list[str]:
    """The content hashes of every PNG written, one per image."""
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*.png")
        if ".dcmexport" not in p.parts
    )


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def cd(tmp_path: Path) -> Path:
    """pydicom's DICOMDIR test set: a DICOMDIR and 31 images in extension-less files."""
    source = pydicom_test_files_dir() / "dicomdirtests"
    if not (source / "DICOMDIR").is_file():
        pytest.skip("pydicom's dicomdirtests are not bundled")
    folder = tmp_path / "cd"
    folder.mkdir()
    for name in SET:
        if (source / name).is_dir():
            shutil.copytree(source / name, folder / name)
        else:
            shutil.copy(source / name, folder / name)
    return folder


def lower_case_copy(folder: Path, target: Path) -> Path:
    """What a hand-made copy of a CD often looks like: every name lower-cased."""
    for path in sorted(folder.rglob("*")):
        rel = Path(*(part.lower() for part in path.relative_to(folder).parts))
        if path.is_dir():
            (target / rel).mkdir(parents=True, exist_ok=True)
        else:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / rel)
    return target


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return target


def tar_folder(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, path.relative_to(folder).as_posix())
    return target


# --- DICOMDIR sets --------------------------------------------------------------------------


def test_a_cd_converts_every_image_once_however_it_is_given(cd: Path, tmp_path: Path) -> None:
    runs = {
        "folder": cd,
        "dicomdir": cd / "DICOMDIR",
        "zip": zip_folder(cd, tmp_path / "cd.zip"),
        "tgz": tar_folder(cd, tmp_path / "cd.tgz"),
    }
    results = {}
    for name, source in runs.items():
        out = tmp_path / f"out-{name}"
        assert convert([source], out, jobs=2).exit_code == 0, name
        rows = manifest(out)
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 31 and len({r["source"] for r in ok}) == 31, name
        results[name] = images(out)
    assert len(results["folder"]) == 31
    assert results["folder"] == results["dicomdir"] == results["zip"] == results["tgz"]


def test_lower_cased_cd_copy_with_a_missing_file(cd: Path, tmp_path: Path) -> None:
    copy = lower_case_copy(cd, tmp_path / "copy")
    assert (copy / "dicomdir").is_file()
    (copy / "77654033" / "cr1" / "6154").unlink()
    expected = sorted(images_of(cd, tmp_path / "reference"))
    for source in (copy, copy / "dicomdir", zip_folder(copy, tmp_path / "copy.zip")):
        out = tmp_path / f"out-{source.name}"
        assert main(["convert", str(source), "-o", str(out), "-q"]) == 1
        rows = manifest(out)
        errors = [r for r in rows if r["status"] == "error"]
        assert len(errors) == 1
        assert errors[0]["source"].endswith("77654033/CR1/6154")
        assert "IMAGE record 77654033/CR1/6154" in errors[0]["error"]
        assert "missing" in errors[0]["error"]
        converted = images(out)
        assert len(converted) == 30 and set(converted) < set(expected)


def images_of(folder: Path, out: Path) -> list[str]:
    convert([folder], out, jobs=1)
    return images(out)


def test_a_folder_with_its_dicomdir_and_images_converts_nothing_twice(cd: Path, tmp_path: Path):
    out = tmp_path / "out"
    convert([cd, cd / "DICOMDIR", cd / "77654033"], out, jobs=1)
    sources = [r["source"] for r in manifest(out) if r["status"] == "ok"]
    assert len(sources) == 31 == len({str(Path(s).resolve()) for s in sources})


# --- hostile archives -----------------------------------------------------------------------


def _ct_bytes() -> bytes:
    return pydicom_file("CT_small.dcm").read_bytes()


def test_hostile_zip_members_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/ct.dcm", _ct_bytes())
        for name in ("../evil.dcm", "/abs/evil.dcm", "..\\evil.dcm", "a/../../evil.dcm"):
            zf.writestr(zipfile.ZipInfo(name), _ct_bytes())
    before = tree(tmp_path)
    out = work / "out"
    assert main(["convert", str(archive), "-o", str(out), "-q"]) == 1
    rows = manifest(out)
    assert [r["output"] for r in rows if r["status"] == "ok"] == ["ok/ct.png"]
    refused = [r for r in rows if r["status"] == "error"]
    assert len(refused) == 4
    assert all(r["error"].startswith("archive member refused") for r in refused)
    assert {p for p in tree(tmp_path) - before if not p.startswith("work/out")} == set()


def test_hostile_tar_members_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        data = _ct_bytes()
        for name in ("ok/ct.dcm", "../evil.dcm", "/abs/evil.dcm"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in (
            ("link-passwd", "/etc/passwd", tarfile.SYMTYPE),
            ("link-up.dcm", "../x.dcm", tarfile.SYMTYPE),
            ("hard.dcm", "ok/ct.dcm", tarfile.LNKTYPE),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    before = tree(tmp_path)
    out = work / "out"
    assert main(["convert", str(archive), "-o", str(out), "-q"]) == 1
    rows = manifest(out)
    assert [r["output"] for r in rows if r["status"] == "ok"] == ["ok/ct.png"]
    assert sum(r["status"] == "error" for r in rows) == 5
    assert {p for p in tree(tmp_path) - before if not p.startswith("work/out")} == set()


def test_archive_members_resume(tmp_path: Path) -> None:
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/ct.dcm", _ct_bytes())
    out = tmp_path / "out"
    assert convert([archive], out, jobs=1).converted == 1
    again = convert([archive], out, jobs=1)
    assert (again.up_to_date, again.converted) == (1, 0)


# --- layouts and hostile tag values ---------------------------------------------------------


def _tiny(path: Path, patient_id: str | bytes, instance: int = 1) -> Path:
    """An 8×8 secondary-capture image with the given Patient ID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20240101", 1, instance
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(64, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_study_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(source)
    assert main(["convert", str(source), "-o", str(out), "-q", "--layout", "study"]) == 0
    expected = f"{ds.PatientID}/{ds.StudyDate}/{ds.SeriesNumber}/{ds.InstanceNumber}.png"
    assert [r["output"] for r in manifest(out)] == [expected]
    assert (out / expected).is_file()
    templated = tmp_path / "t"
    template = "{Modality}/{SeriesNumber:03d}/{InstanceNumber:04d}_{stem}_{AccessionNumber}"
    assert main(["convert", str(source), "-o", str(templated), "-q", "--layout", template]) == 0
    assert [r["output"] for r in manifest(templated)] == [
        f"CT/{int(ds.SeriesNumber):03d}/{int(ds.InstanceNumber):04d}_CT_small_unknown.png"
    ]
    assert main(["convert", str(source), "-o", str(tmp_path / "x"), "--layout", "{Nope}"]) == 2


def test_hostile_tag_values_never_leave_out(tmp_path: Path) -> None:
    escape = f"dcmexport-escape-{uuid.uuid4().hex}"
    values = [
        "../../x",
        f"/tmp/{escape}",
        "..\\x",
        "CON",
        "nul",
        "COM1",
        "..",
        ".",
        "a\x00b",
        f"../{escape}",
    ]
    src = tmp_path / "in"
    src.mkdir()
    for i, value in enumerate(values):
        _tiny(src / f"{i}.dcm", value, instance=1)
    out = tmp_path / "work" / "out"
    before = tree(tmp_path)
    assert main(["convert", str(src), "-o", str(out), "-q", "--layout", "study"]) == 0
    rows = manifest(out)
    outputs = [r["output"] for r in rows]
    assert len(outputs) == len(set(outputs)) == len(values)  # nobody overwrote anybody
    for output in outputs:
        assert (out / output).resolve().is_relative_to(out.resolve())
        first = output.split("/")[0]
        assert first not in ("..", ".", "CON", "nul", "COM1") and "\x00" not in output
    assert not Path(f"/tmp/{escape}").exists()
    assert {p for p in tree(tmp_path) - before if not p.startswith("work/out")} == {"work"}


def test_a_link_inside_out_cannot_lead_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "unknown").symlink_to(outside)  # a layout folder that is a link to elsewhere
    src = _tiny(tmp_path / "a.dcm", "")
    assert main(["convert", str(src), "-o", str(out), "-q", "--layout", "{PatientID}/{stem}"]) == 1
    assert list(outside.iterdir()) == []
    assert "outside the output folder" in manifest(out)[0]["error"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(min_size=1, max_size=40))
def test_any_patient_id_stays_inside_out(tmp_path: Path, value: str) -> None:
    run = tmp_path / uuid.uuid4().hex
    src = run / "in"
    src.mkdir(parents=True)
    try:
        _tiny(src / "a.dcm", value.encode("utf-8", "surrogatepass").decode("latin-1"))
    except Exception:  # a value pydicom cannot store is not this test's business
        return
    out = run / "out"
    convert([src], out, jobs=1, layout="{PatientID}/{PatientID}_{stem}")
    for row in manifest(out):
        if row["output"]:
            assert (out / row["output"]).resolve().is_relative_to(out.resolve())
    assert {p.name for p in run.iterdir()} == {"in", "out"}


def test_frame_field_places_stills_and_names_the_video(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = pydicom_file("SC_rgb_rle_2frame.dcm")
    layout = "{Modality}/{stem}_{frame:03d}"
    assert convert([source], out, jobs=1, frames="all", layout=layout).exit_code == 0
    assert [(r["frame"], r["output"]) for r in manifest(out)] == [
        ("", "OT/SC_rgb_rle_2frame.mp4"),
        ("", "OT/SC_rgb_rle_2frame.gif"),
        ("1", "OT/SC_rgb_rle_2frame_001.png"),
        ("2", "OT/SC_rgb_rle_2frame_002.png"),
    ]


# --------------------------------------------------------------------------- InputRef paths


@pytest.mark.parametrize(
    ("root", "path"),
    [
        ("/data/in", "/data/in/a.dcm"),
        ("/data/in/", "/data/in/sub/dir/a.dcm"),
        ("/", "/a/b.dcm"),
        ("//", "//a/b.dcm"),
        ("//srv", "//srv/a/b.dcm"),
        ("in", "in/x/y.dcm"),
        (".", "x/y.dcm"),
        ("/data/in", "/data/in"),
        ("/data/in", "/data/inner/a.dcm"),
        ("/data/in", "/data/in/../in/a.dcm"),
        ("/data//in/./", "/data/in/a b/ü.dcm"),
    ],
)
def test_input_ref_paths_are_pathlibs(root: str, path: str) -> None:
    """`trusted_parts` and `absolute` take string shortcuts; pathlib is the oracle."""
    ref = InputRef(Path(path), root=Path(root))
    try:
        expected: tuple[str, ...] | None = Path(path).relative_to(Path(root)).parts
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            _ = ref.trusted_parts
    else:
        assert ref.trusted_parts == expected
    assert ref.absolute().path == Path(os.path.abspath(Path(path)))
    assert ref.absolute().root == ref.root
