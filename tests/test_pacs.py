"""`query`, `pull` and `convert SERVER` against a real Orthanc (DICOMweb and DIMSE), loopback only.

Orthanc 1.10 has no bind-address option and listens on every interface, so it runs in its own
network namespace (`unshare -n`, loopback only). The test thread joins that namespace with
setns(2) for the duration of the module, so the CLI runs in-process and talks to 127.0.0.1 of
the namespace; nothing is reachable from outside, and the namespace disappears with Orthanc.
The oracle is Orthanc itself plus the uploaded files: expected studies and bytes come from the
files we sent, never from hand-written values.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

pytest.importorskip("pynetdicom")
requests = pytest.importorskip("requests")

from dcmexport.cli import main  # noqa: E402
from dcmexport.sample import write_samples  # noqa: E402
from dcmexport.sources import dicomweb  # noqa: E402
from dcmexport.sources.servers import InstanceRef, parse_server  # noqa: E402

CLONE_NEWNET = 0x40000000
HTTP_PORT, DICOM_PORT = 8042, 4242  # free by construction: the namespace is ours alone
USER, PASSWORD = "dcmx", "pw-Secret-4711"
WEB = f"http://127.0.0.1:{HTTP_PORT}/dicom-web"
DIMSE = f"dicom://ORTHANC@127.0.0.1:{DICOM_PORT}"
SERVERS = pytest.mark.parametrize("server", [WEB, DIMSE], ids=["dicomweb", "dimse"])
PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)


def orthanc_config(storage: Path, plugin: str) -> dict[str, object]:
    """The exact configuration the tests give Orthanc (docs/notes/pacs2.md quotes it)."""
    return {
        "Name": "dcmexport-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": HTTP_PORT,
        "DicomPort": DICOM_PORT,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomModalities": {"dcmexport": ["DCMEXPORT", "127.0.0.1", 11112]},
        "SaveJobs": False,
        "StableAge": 1,
    }


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _skip_unless_possible() -> str:
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    plugin = next((p for p in PLUGIN_CANDIDATES if Path(p).exists()), None)
    if plugin is None:
        pytest.skip(
            "the Orthanc DICOMweb plugin is not installed: apt-get install orthanc-dicomweb"
        )
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare/ip (util-linux, iproute2) are needed for a private network")
    if os.geteuid() != 0:
        pytest.skip("a private network namespace needs root")
    return plugin


def _distinct_copy(
    src: Path, dst: Path, n: int, patient_id: str, date: str, accession: str
) -> Path:
    """`src` as an instance of another patient's study (new UIDs, IDs and date)."""
    ds = pydicom.dcmread(src)
    ds.PatientID, ds.StudyDate, ds.AccessionNumber = patient_id, date, accession
    ds.StudyInstanceUID = f"2.25.{4711000 + n}"
    ds.SeriesInstanceUID = f"2.25.{4712000 + n}.{ds.get('SeriesNumber', 1)}"
    sop_uid = pydicom.uid.UID(f"2.25.{4713000 + n}.{src.stem[-4:].lstrip('0') or 0}")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _dataset(src: Path) -> pydicom.Dataset:
    return pydicom.dcmread(src, stop_before_pixels=True)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A running Orthanc holding the sample set plus two small studies of other patients;
    the test thread is inside its network namespace until the module ends."""
    plugin = _skip_unless_possible()
    root = tmp_path_factory.mktemp("orthanc")
    (root / "db").mkdir()
    config = root / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(root / "db", plugin), indent=1))
    log = (root / "orthanc.log").open("wb")
    process = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec Orthanc {config}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    joined = False
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if Path(f"/proc/{process.pid}/exe").resolve().name == "Orthanc":
                break
            time.sleep(0.02)
        if process.poll() is not None:
            tail = (root / "orthanc.log").read_text()[-300:]
            pytest.skip(f"Orthanc did not start in a private namespace: {tail}")
        target = os.open(f"/proc/{process.pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            joined = True
        except OSError as exc:
            pytest.skip(f"cannot join the private network namespace: {exc}")
        finally:
            os.close(target)
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        while True:
            try:
                if session.get(f"http://127.0.0.1:{HTTP_PORT}/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("Orthanc did not answer within 20 s")
            time.sleep(0.05)
        uploaded = _upload_all(session, root / "upload")
        session.close()
        yield {"files": uploaded, "root": root}
    finally:
        if joined:
            _setns(home)
        os.close(home)
        process.kill()  # its storage is a temporary folder: no clean shutdown needed (~3 s)
        process.wait()
        log.close()


def _upload_all(session: Any, folder: Path) -> dict[str, Path]:
    """Upload the sample set (one file per SOP Instance UID) and two other patients' studies
    through Orthanc's REST API; returns SOP Instance UID → the file sent."""
    samples = [
        p for p in write_samples(folder / "samples", ct_slices=8, size=128) if p.name != "DICOMDIR"
    ]
    files: dict[str, Path] = {}
    for path in sorted(samples):
        if "cd" in path.relative_to(folder / "samples").parts:
            continue  # the DICOMDIR copies repeat the CT's SOP Instance UIDs
        files.setdefault(str(_dataset(path).SOPInstanceUID), path)
    mr = sorted((folder / "samples" / "MR").glob("*.dcm"))[:2]
    cr = sorted((folder / "samples" / "CR").glob("*.dcm"))
    extra = [
        _distinct_copy(p, folder / "other" / f"B{n}.dcm", 1, "OTHER002", "20231201", "ACC2")
        for n, p in enumerate(mr)
    ]
    extra += [
        _distinct_copy(p, folder / "other" / "C.dcm", 2, "SAMPLE003", "20240301", "ACC3")
        for p in cr
    ]
    for path in extra:
        files[str(_dataset(path).SOPInstanceUID)] = path
    for path in files.values():
        response = session.post(f"http://127.0.0.1:{HTTP_PORT}/instances", data=path.read_bytes())
        assert response.ok and response.json()["Status"] == "Success", response.text[:200]
    return files


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCMEXPORT_USER", USER)
    monkeypatch.setenv("DCMEXPORT_PASSWORD", PASSWORD)


@dataclasses.dataclass
class Study:
    """What we uploaded for one study: the oracle for `query`."""

    patient: str
    date: str
    accession: str
    modalities: set[str] = dataclasses.field(default_factory=set)
    series: set[str] = dataclasses.field(default_factory=set)
    n: int = 0


def _studies(files: dict[str, Path]) -> dict[str, Study]:
    """Per study, from the uploaded files: patient, date, accession, modalities, counts."""
    out: dict[str, Study] = {}
    for path in files.values():
        ds = _dataset(path)
        study = out.setdefault(
            str(ds.StudyInstanceUID),
            Study(str(ds.PatientID), str(ds.StudyDate), str(ds.AccessionNumber)),
        )
        study.modalities.add(str(ds.Modality))
        study.series.add(str(ds.SeriesInstanceUID))
        study.n += 1
    return out


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- query


@SERVERS
@pytest.mark.parametrize(
    ("filters", "predicate"),
    [
        ([], lambda s: True),
        (["--patient-id", "SAMP*"], lambda s: s.patient.startswith("SAMP")),
        (
            ["--patient-id", "SAMPLE00?"],
            lambda s: len(s.patient) == 9 and s.patient.startswith("SAMPLE00"),
        ),
        (
            ["--study-date", "20240101-20240131"],
            lambda s: "20240101" <= s.date <= "20240131",
        ),
        (["--study-date", "20231201"], lambda s: s.date == "20231201"),
        (["--modality", "MR"], lambda s: "MR" in s.modalities),
        (["--accession", "ACC2"], lambda s: s.accession == "ACC2"),
    ],
    ids=[
        "all",
        "wildcard-star",
        "wildcard-question",
        "date-range",
        "date",
        "modality",
        "accession",
    ],
)
def test_query_finds_the_matching_studies(
    orthanc, credentials, capsys, tmp_path, server, filters, predicate
) -> None:
    studies = _studies(orthanc["files"])
    expected = {uid for uid, s in studies.items() if predicate(s)}
    assert expected  # every filter here matches something
    table = tmp_path / "studies.csv"
    code, out, err = _run(["query", server, *filters, "-o", str(table)], capsys)
    assert code == 0, err
    import csv

    rows = list(csv.DictReader(table.open()))
    assert {r["study_uid"] for r in rows} == expected
    for row in rows:  # the counts Orthanc reports are those of what we uploaded
        study = studies[row["study_uid"]]
        assert int(row["series"]) == len(study.series)
        assert int(row["instances"]) == study.n
        assert set(row["modality"].split("/")) == study.modalities
        assert row["patient_id"] == study.patient
    assert all(uid in out for uid in expected)  # the printed table has them too


@SERVERS
def test_query_by_uid_and_series_level(orthanc, credentials, capsys, tmp_path, server) -> None:
    studies = _studies(orthanc["files"])
    other = sorted(uid for uid, s in studies.items() if s.patient != "SAMPLE001")
    code, out, err = _run(
        ["query", server, *[a for uid in other for a in ("--study", uid)]], capsys
    )
    assert code == 0, err
    assert {re.findall(r"2\.25\.[0-9.]+", line)[0] for line in out.splitlines()[1:]} == set(other)
    series_uid = sorted(studies[other[0]].series)[0]
    table = tmp_path / "series.parquet"
    code, out, err = _run(
        ["query", server, "--series", series_uid, "--level", "series", "-o", str(table)], capsys
    )
    assert code == 0, err
    import pyarrow.parquet as pq

    rows = pq.read_table(table).to_pylist()
    assert [(r["study_uid"], r["series_uid"]) for r in rows] == [(other[0], series_uid)]


def test_query_wildcards_are_sent_unencoded() -> None:
    """dicomweb-client sends `*` as %2A, which Orthanc matches literally: we must not."""
    assert dicomweb.query_string([("PatientID", "SAMP*"), ("StudyDate", "20240101-20240131")]) == (
        "PatientID=SAMP*&StudyDate=20240101-20240131"
    )
    assert dicomweb.query_string([("PatientID", "A B&C?")]) == "PatientID=A%20B%26C?"


# --------------------------------------------------------------------------- pull


def _pulled(out: Path) -> dict[str, Path]:
    return {p.stem: p for p in out.rglob("*.dcm")}


def _body(data: bytes) -> tuple[str, bytes]:
    """The transfer syntax and the data set bytes after the file meta group."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    stream = io.BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    return str(meta.TransferSyntaxUID), stream.read()


def test_pull_dicomweb_is_byte_identical_and_resumes(
    orthanc, credentials, capsys, tmp_path
) -> None:
    files: dict[str, Path] = orthanc["files"]
    out = tmp_path / "pulled"
    code, _, err = _run(["pull", WEB, "-o", str(out), "-q"], capsys)
    assert code == 0, err
    pulled = _pulled(out)
    assert set(pulled) == set(files)
    for sop_uid, path in pulled.items():
        ds = _dataset(path)
        assert (
            path.relative_to(out).as_posix()
            == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{sop_uid}.dcm"
        )
        assert path.read_bytes() == files[sop_uid].read_bytes()  # Orthanc adds nothing
    manifest = (out / "manifest.csv").read_text()
    assert manifest.count(",ok,") == len(files) and PASSWORD not in manifest

    # a rerun fetches nothing; a deleted file is fetched again, alone
    stamps = {p: p.stat().st_mtime_ns for p in pulled.values()}
    victim = sorted(pulled.values())[0]
    victim.unlink()
    code, _, err = _run(["pull", WEB, "-o", str(out)], capsys)
    assert code == 0, err
    assert f"pulled 1 instance(s), {len(files) - 1} already present, failed 0" in err
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != victim)
    assert victim.read_bytes() == files[victim.stem].read_bytes()
    assert PASSWORD not in err


def test_pull_dimse_keeps_the_stored_data_set(orthanc, capsys, tmp_path) -> None:
    files: dict[str, Path] = orthanc["files"]
    studies = _studies(files)
    sample = next(uid for uid, s in studies.items() if s.patient == "SAMPLE001")
    out = tmp_path / "pulled"
    code, _, err = _run(["pull", DIMSE, "--study", sample, "-o", str(out), "-q"], capsys)
    assert code == 0, err
    pulled = _pulled(out)
    assert set(pulled) == {
        uid for uid, p in files.items() if _dataset(p).StudyInstanceUID == sample
    }
    for sop_uid, path in pulled.items():
        # C-STORE carries no file meta: pynetdicom writes its own group 0002; the data set
        # arrives in the stored transfer syntax (one presentation context per syntax), byte for byte
        assert _body(path.read_bytes()) == _body(files[sop_uid].read_bytes())
    code, _, err = _run(["pull", DIMSE, "--study", sample, "-o", str(out)], capsys)
    assert code == 0 and f"pulled 0 instance(s), {len(pulled)} already present" in err


def test_pull_dimse_modality_filter_takes_only_those_series(orthanc, capsys, tmp_path) -> None:
    files: dict[str, Path] = orthanc["files"]
    out = tmp_path / "mr"
    code, _, err = _run(
        ["pull", DIMSE, "--modality", "MR", "--patient-id", "OTHER*", "-o", str(out), "-q"], capsys
    )
    assert code == 0, err
    expected = {
        uid
        for uid, p in files.items()
        if _dataset(p).Modality == "MR" and str(_dataset(p).PatientID).startswith("OTHER")
    }
    assert set(_pulled(out)) == expected and expected


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "server",
    ["http://127.0.0.1:9/dicom-web", "dicom://NOBODY@127.0.0.1:9"],
    ids=["dicomweb", "dimse"],
)
@pytest.mark.parametrize("command", ["query", "pull"])
def test_unreachable_server_is_exit_2_with_one_line(
    orthanc, capsys, tmp_path, server, command
) -> None:
    args = [command, server, "--retries", "1"] + (
        ["-o", str(tmp_path / "x")] if command == "pull" else []
    )
    code, out, err = _run(args, capsys)
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "cannot reach" in err
    assert not (tmp_path / "x").exists()


def test_missing_credentials_are_exit_2_and_no_secret_is_printed(
    orthanc, capsys, monkeypatch
) -> None:
    for name in ("DCMEXPORT_USER", "DCMEXPORT_PASSWORD", "DCMEXPORT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, out, err = _run(["query", WEB], capsys)
    assert code == 2 and "401" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run(["query", WEB, "--user", USER, "--password", "wrong-Secret"], capsys)
    assert code == 2 and "wrong-Secret" not in err
    monkeypatch.setenv("DCMEXPORT_PASSWORD", PASSWORD)
    code, out, err = _run(["query", f"http://{USER}@127.0.0.1:{HTTP_PORT}/dicom-web"], capsys)
    assert code == 0 and "SAMPLE001" in out and PASSWORD not in out + err


@pytest.mark.parametrize(
    "args",
    [
        ["--study", "1.2.3/../../x"],
        ["--series", "1.2.a"],
        ["--study-date", "2024-01-01"],
        ["--study-date", "20240201-20240101"],
    ],
    ids=["study-uid", "series-uid", "date-format", "date-order"],
)
def test_bad_filters_are_usage_errors(capsys, tmp_path, args) -> None:
    code, _, err = _run(["pull", WEB, *args, "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_server_parsing_hides_credentials() -> None:
    server = parse_server("https://me:s3cret@pacs.example:8443/dicom-web/", environ={})
    assert server.url == "https://pacs.example:8443/dicom-web"
    assert "s3cret" not in repr(server) and server.credentials.password == "s3cret"
    token = parse_server("http://h/dw", environ={"DCMEXPORT_TOKEN": "tok-123"})
    assert token.credentials.token == "tok-123" and "tok-123" not in repr(token)
    dimse = parse_server("dicom://PACS@10.0.0.5:104", calling_aet="ME")
    assert (dimse.called_aet, dimse.host, dimse.port, dimse.calling_aet) == (
        "PACS",
        "10.0.0.5",
        104,
        "ME",
    )
    ref = InstanceRef("1.2", "1.2.3", "1.2.3.4")
    assert ref.relative_path.as_posix() == "1.2/1.2.3/1.2.3.4.dcm"
    assert not InstanceRef("1.2", "../x", "1").valid


def test_multipart_is_split_into_parts() -> None:
    body = (
        b"preamble\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n"
        b"--XYZ\r\n\r\nB\r\nB\r\n--XYZ--\r\n"
    )
    assert dicomweb.split_multipart(
        'multipart/related; type="application/dicom"; boundary=XYZ', body
    ) == [b"AAA", b"B\r\nB"]


# --------------------------------------------------------------------------- convert SERVER


def _outputs(out: Path, sop_of: dict[str, str]) -> dict[tuple[str, str, str, str], Path]:
    """(SOP Instance UID, kind, frame, extension) → output file, from OUT/manifest.csv;
    `sop_of` maps a manifest source to its SOP Instance UID."""
    import csv

    found: dict[tuple[str, str, str, str], Path] = {}
    with (out / "manifest.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            assert row["status"] == "ok", row
            if row["output"]:
                key = (sop_of[row["source"]], row["kind"], row["frame"], Path(row["output"]).suffix)
                found[key] = out / row["output"]
    return found


def _server_sop(source: str) -> str:
    return source.rsplit("/instances/", 1)[1]


def _frame_count(path: Path) -> int:
    tool = shutil.which("ffprobe")
    if tool is None:
        pytest.skip("ffprobe is not installed: apt-get install ffmpeg")
    command = [tool, "-v", "error", "-count_packets", "-select_streams", "v:0"]
    command += ["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def subset(orthanc: dict[str, Any]) -> tuple[dict[str, Path], list[str]]:
    """The CT and XA series (single frames in every encoding, a 30-frame cine): the files,
    and the `--series` filters that select them on the server."""
    files: dict[str, Path] = orthanc["files"]
    chosen = {sop: p for sop, p in files.items() if _dataset(p).Modality in ("CT", "XA")}
    series = sorted({str(_dataset(p).SeriesInstanceUID) for p in chosen.values()})
    return chosen, [arg for uid in series for arg in ("--series", uid)]


@pytest.fixture(scope="module")
def folder_outputs(
    subset: tuple[dict[str, Path], list[str]], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str, str], Path]:
    """The oracle for `convert SERVER`: the same files converted from disk."""
    files = subset[0]
    out = tmp_path_factory.mktemp("from-disk") / "out"
    code = main(["convert", *map(str, files.values()), "-o", str(out), "-j", "2", "-q"])
    assert code == 0
    return _outputs(out, {str(path): sop for sop, path in files.items()})


class _Counted:
    """Counts the fetches (WADO-RS retrievals, C-GET requests) of an in-process run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dcmexport.sources import dimse

        self.calls = 0
        monkeypatch.setenv("DCMEXPORT_IN_PROCESS", "1")  # -j 1 counts here, not in a worker
        for module, name in ((dicomweb, "retrieve_instance"), (dimse, "get_kept")):
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name)))

    def _wrap(self, fetch: Any) -> Any:
        def counted(*args: Any) -> Any:
            self.calls += 1
            return fetch(*args)

        return counted


@SERVERS
def test_convert_server_writes_what_a_folder_run_writes_and_resumes(
    orthanc, credentials, subset, folder_outputs, capsys, tmp_path, monkeypatch, server
) -> None:
    files, series = subset
    out = tmp_path / "out"
    code, _, err = _run(["convert", server, *series, "-o", str(out), "-j", "2", "-q"], capsys)
    assert code == 0, err
    with (out / "manifest.csv").open() as f:
        import csv

        sources = {row["source"] for row in csv.DictReader(f)}
    assert all(s.startswith(f"{server}/studies/") for s in sources) and PASSWORD not in str(sources)
    got = _outputs(out, {s: _server_sop(s) for s in sources})
    assert set(got) == set(folder_outputs) and {k[0] for k in got} == set(files)
    assert {k[3] for k in got} == {".png", ".gif", ".mp4"}
    for key, path in got.items():
        ds = _dataset(files[key[0]])
        # PHI-free names: <StudyUID>/<SeriesUID>/<SOPUID>[.ext or /frame.ext]
        base = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{key[0]}"
        assert path.relative_to(out).as_posix().startswith((f"{base}.", f"{base}/"))
        if key[3] == ".mp4":  # H.264 is not bit-reproducible run to run: the frames are there
            assert _frame_count(path) == _frame_count(folder_outputs[key])
        else:
            assert path.read_bytes() == folder_outputs[key].read_bytes(), key

    # a rerun (in this process, so the fetches can be counted) fetches nothing
    counted = _Counted(monkeypatch)
    code, _, err = _run(["convert", server, *series, "-o", str(out), "-j", "1"], capsys)
    assert code == 0, err
    assert counted.calls == 0 and f"{len(files)} already up to date" in err
    # ... and an instance whose outputs went missing is fetched again, alone
    next(iter(got.values())).unlink()
    code, _, err = _run(["convert", server, *series, "-o", str(out), "-j", "1"], capsys)
    assert code == 0 and counted.calls == 1 and f"{len(files) - 1} already up to date" in err


@SERVERS
def test_convert_server_filters(orthanc, credentials, capsys, tmp_path, server) -> None:
    files: dict[str, Path] = orthanc["files"]
    out = tmp_path / "mr"
    args = ["convert", server, "--modality", "MR", "--patient-id", "OTHER*", "-o", str(out)]
    code, _, err = _run([*args, "--video", "none", "-q"], capsys)
    assert code == 0, err
    expected = {
        uid
        for uid, p in files.items()
        if _dataset(p).Modality == "MR" and str(_dataset(p).PatientID).startswith("OTHER")
    }
    assert expected and {p.stem for p in out.rglob("*.png")} == expected
    code, _, err = _run(
        ["convert", server, "--accession", "NO-SUCH", "-o", str(tmp_path / "n")], capsys
    )
    assert code == 2 and err.strip().splitlines()[-1].startswith("dcmexport: no files found")


@SERVERS
def test_convert_server_one_missing_instance_is_one_error_row(
    orthanc, credentials, capsys, tmp_path, monkeypatch, server
) -> None:
    """An instance listed but gone by the time the worker fetches it (404, or a C-GET that
    sends nothing): one `error` row, exit 1, the others converted."""
    from dcmexport.sources import query

    listed = query.list_instances

    def with_a_ghost(server: Any, filters: Any) -> list[Any]:
        found = listed(server, filters)
        ghost = dataclasses.replace(found[0], sop_instance_uid="2.25.999999999")
        return [*found, ghost]

    monkeypatch.setattr(query, "list_instances", with_a_ghost)
    out = tmp_path / "out"
    code, _, err = _run(["convert", server, "--patient-id", "SAMPLE003", "-o", str(out)], capsys)
    assert code == 1, err
    import csv

    with (out / "manifest.csv").open(newline="") as f:
        errors = [row for row in csv.DictReader(f) if row["status"] == "error"]
    assert [row["source"].rsplit("/", 1)[1] for row in errors] == ["2.25.999999999"]
    assert "failed 1" in err and len(list(out.rglob("*.png"))) >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:9/dicom-web", "--retries", "1"], "cannot reach"),
        (["dicom://NOBODY@127.0.0.1:9", "--retries", "1"], "cannot reach"),
        ([WEB, "--series-video"], "--series-video"),
        (["{folder}", "--patient-id", "X"], "SERVER"),
    ],
    ids=["dicomweb-unreachable", "dimse-unreachable", "series-video", "filter-without-server"],
)
def test_convert_server_usage_errors_are_exit_2(
    orthanc, credentials, capsys, tmp_path, args, message
) -> None:
    args = [str(tmp_path) if a == "{folder}" else a for a in args]
    code, _, err = _run(["convert", *args, "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()  # nothing made before the server was usable
