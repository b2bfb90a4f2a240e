"""Object storage in and out, against a real S3-compatible server (moto) on loopback.

The server is started by the test on 127.0.0.1 with a free port and stopped at the end;
nothing else on the network is touched. Outputs are checked against a local run of the same
inputs (bytes for stills, GIFs, sidecars and the manifest; decoded frames for MP4, whose
bytes differ run to run); what `index` reads is counted from the server's own request log.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks.s3_speed import moto_server

from dcmexport.cli import main
from dcmexport.engine.batch import convert
from dcmexport.errors import OutsideOutputError, UsageError
from dcmexport.index import index_rows
from dcmexport.options import parse_storage_options
from dcmexport.sample import write_ct_series
from dcmexport.sources import InputKind, discover
from dcmexport.store import ObjectStore, default_state_dir, store_for

from .conftest import pydicom_file

pytest.importorskip("s3fs")
fsspec = pytest.importorskip("fsspec")

#: A secret key planted in every run: it must never appear in any output, log or object.
SECRET = "planted-Secret-9f2c41e7d0"
KEY_ID = "AKIAPLANTEDKEY0001"


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, up within 30 s, stopped afterwards."""
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if server is None:
        pytest.skip("moto_server is not installed: pip install 'moto[server]'")
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(moto_server(server))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


@pytest.fixture(scope="module")
def options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": KEY_ID, "secret": SECRET}


def _cli_options(options: dict[str, Any]) -> list[str]:
    return [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]


@pytest.fixture(scope="module")
def fs(options: dict[str, Any]) -> Any:
    s3 = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    for bucket in ("inbox", "outbox"):
        s3.mkdir(bucket)
    return s3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, fs: Any) -> Path:
    """A small mixed input set, locally and as s3://inbox/data/: CT slices, an MR, a
    two-frame colour cine (MP4 and GIF), a zip of two images, a text file."""
    root = tmp_path_factory.mktemp("s3data") / "data"
    write_ct_series(root / "CT", 4, size=64)
    shutil.copy(pydicom_file("MR_small.dcm"), root / "MR_small.dcm")
    (root / "cine").mkdir()
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), root / "cine" / "rgb.dcm")
    with zipfile.ZipFile(root / "bundle.zip", "w") as zf:
        zf.write(pydicom_file("CT_small.dcm"), "a/ct.dcm")
        zf.write(pydicom_file("MR_small_RLE.dcm"), "b/mr.dcm")
    (root / "notes.txt").write_text("not DICOM\n")
    fs.put(f"{root}/", "inbox/data/", recursive=True)
    return root


@pytest.fixture(scope="module")
def local_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    summary = convert([data], out, jobs=1, metadata="json")
    assert summary.exit_code == 0
    return out


def _objects(fs: Any, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {key[len(prefix) :]: fs.cat_file(key) for key in fs.find(prefix)}


def _local_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and ".dcmexport" not in p.relative_to(out).parts
    }


def _frames(mp4: bytes) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(mp4)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _assert_same_outputs(remote: dict[str, bytes], local: dict[str, bytes], data: Path) -> None:
    """The same names; the same bytes (inputs named alike), MP4 frames within ±1."""
    assert sorted(remote) == sorted(local)
    for name, expected in local.items():
        got = remote[name]
        if name.endswith(".mp4"):  # encoder bytes differ run to run: compare the pictures
            a, b = _frames(got), _frames(expected)
            assert len(a) == len(b) > 0
            for x, y in zip(a, b, strict=True):
                assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
        else:  # the manifest and sidecars name the inputs: a URL here, a path there
            got = got.replace(b"s3://inbox/data/", b"DATA/")
            assert got == expected.replace(f"{data}/".encode(), b"DATA/"), name


def test_convert_bucket_to_bucket_matches_a_local_run(
    data: Path,
    local_run: Path,
    fs: Any,
    options: dict[str, Any],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = ["convert", "s3://inbox/data/", "-o", "s3://outbox/same/", "--metadata", "json"]
    state = tmp_path / "state"
    code = main([*argv, *_cli_options(options), "--state-dir", str(state), "-j", "2", "-v"])
    assert code == 0
    remote = _objects(fs, "outbox/same/")
    _assert_same_outputs(remote, _local_files(local_run), data)
    assert "bundle/a/ct.png" in remote and "cine/rgb.gif" in remote
    # credentials appear nowhere: not in output, log, objects or the local state
    out, err = capfd.readouterr()
    everything = [out, err, *(v.decode("latin-1") for v in remote.values())]
    everything += [p.read_bytes().decode("latin-1") for p in state.rglob("*") if p.is_file()]
    assert not [text for text in everything if SECRET in text or KEY_ID in text]
    # a rerun is up to date, and still says nothing secret
    assert main([*argv, *_cli_options(options), "--state-dir", str(state), "-j", "1"]) == 0
    out, err = capfd.readouterr()
    assert "already up to date" in err and SECRET not in out + err


def test_a_killed_run_resumes(fs: Any, options: dict[str, Any], tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "many", 80, size=32)
    fs.put(f"{tmp_path / 'many'}/", "inbox/many/", recursive=True)
    state = tmp_path / "state"
    argv = ["convert", "s3://inbox/many/", "-o", "s3://outbox/killed/", "-j", "1", "-q"]
    argv += [*_cli_options(options), "--state-dir", str(state)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    env["DCMEXPORT_IN_PROCESS"] = "1"  # one input at a time, so the kill lands mid-way
    process = subprocess.Popen([sys.executable, "-m", "dcmexport", *argv], env=env)
    database = state / "state-v2.sqlite"
    done = 0
    deadline = time.monotonic() + 30
    try:
        while done < 10 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            if database.exists():
                with contextlib_closing(sqlite3.connect(database, timeout=1)) as db:
                    try:
                        done = db.execute("SELECT count(*) FROM files").fetchone()[0]
                    except sqlite3.OperationalError:
                        done = 0
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert 10 <= done < len(slices), "the run was not caught mid-way"
    summary = convert(
        ["s3://inbox/many/"],
        "s3://outbox/killed/",
        jobs=1,
        storage_options=options,
        state_dir=state,
    )
    assert summary.exit_code == 0
    assert summary.up_to_date >= done and summary.converted + summary.up_to_date == len(slices)
    remote = _objects(fs, "outbox/killed/")
    assert sorted(remote) == sorted([f"CT_{i:04d}.png" for i in range(1, 81)] + ["manifest.csv"])
    assert len(remote["manifest.csv"].decode().splitlines()) == len(slices) + 1


class contextlib_closing:  # sqlite3 connections do not close on `with`
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _served_bytes(recording: str, sizes: dict[str, int]) -> int:
    """Bytes of object data the server sent, from its request log (GETs and their Range)."""
    total = 0
    for line in recording.splitlines():
        request = json.loads(line)
        if request["method"] != "GET":
            continue
        path = urllib.parse.unquote(urllib.parse.urlsplit(request["url"]).path).lstrip("/")
        if path not in sizes:
            continue
        size = sizes[path]
        header = request["headers"].get("Range") or request["headers"].get("range")
        if header is None:
            total += size
            continue
        start, _, end = header.removeprefix("bytes=").partition("-")
        total += min(int(end), size - 1) - int(start) + 1
    return total


def test_index_reads_only_headers(
    fs: Any, options: dict[str, Any], endpoint: str, tmp_path: Path
) -> None:
    paths = write_ct_series(tmp_path / "ct", 4, size=512)
    fs.put(f"{tmp_path / 'ct'}/", "inbox/big/", recursive=True)
    sizes = {f"inbox/big/{p.name}": p.stat().st_size for p in paths}
    _post(f"{endpoint}/moto-api/recorder/reset-recording")
    _post(f"{endpoint}/moto-api/recorder/start-recording")
    table = tmp_path / "t.csv"
    argv = ["index", "s3://inbox/big/", "-o", str(table), "-j", "1", *_cli_options(options)]
    try:
        assert main(argv) == 0
    finally:
        _post(f"{endpoint}/moto-api/recorder/stop-recording")
    with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording") as r:
        served = _served_bytes(r.read().decode(), sizes)
    total = sum(sizes.values())
    assert 0 < served < total / 10, (served, total)
    # the same rows as a local index, but for the path
    remote = list(index_rows(["s3://inbox/big/"], jobs=1, storage_options=options))
    local = list(index_rows([tmp_path / "ct"], jobs=1))
    for r, loc in zip(remote, local, strict=True):
        assert r.pop("path").startswith("s3://inbox/big/CT_")
        loc.pop("path")
        assert r == loc


def test_a_dask_cluster_with_no_shared_folder_converts_a_bucket(
    data: Path, local_run: Path, fs: Any, options: dict[str, Any], dask_cluster: str, tmp_path: Path
) -> None:
    summary = convert(
        ["s3://inbox/data/"],
        "s3://outbox/dask/",
        scheduler=dask_cluster,
        storage_options=options,
        state_dir=tmp_path / "state",
        metadata="json",
    )
    assert summary.exit_code == 0
    _assert_same_outputs(_objects(fs, "outbox/dask/"), _local_files(local_run), data)


def test_keys_never_leave_the_prefix(fs: Any, options: dict[str, Any], tmp_path: Path) -> None:
    store = ObjectStore("s3://outbox/safe/", options, state_dir=tmp_path)
    for bad in ("../x.png", "a/../../x.png", "/x.png", "a//x.png", "a\\..\\x.png", "./x", ""):
        with pytest.raises(OutsideOutputError):
            store.put(bad, b"x")
    assert store.put("a/b.png", b"x") == "a/b.png"
    # object names with `..` parts, as S3 allows, are made safe in the output names
    fs.put_file(str(pydicom_file("CT_small.dcm")), "inbox/dots/../escape.dcm")
    fs.put_file(str(pydicom_file("MR_small.dcm")), "inbox/dots/../../up.dcm")
    summary = convert(["s3://inbox/dots/"], "s3://outbox/safe/", jobs=1, storage_options=options)
    assert summary.exit_code == 0 and summary.converted == 2
    fs.invalidate_cache()
    assert sorted(fs.find("outbox/safe/")) == [
        "outbox/safe/_/_/up.png",
        "outbox/safe/_/escape.png",
        "outbox/safe/a/b.png",
        "outbox/safe/manifest.csv",
    ]
    assert not [k for k in fs.find("outbox/") if k.endswith(("escape.png", "up.png"))][2:]
    assert repr(store) == "ObjectStore('s3://outbox/safe/')"


def test_storage_options_and_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_storage_options(["anon=true", "client_kwargs.region_name=eu", "key=a=b"]) == {
        "anon": True,
        "client_kwargs": {"region_name": "eu"},
        "key": "a=b",
    }
    with pytest.raises(UsageError) as caught:
        parse_storage_options([SECRET])
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    state = default_state_dir("s3://b/out/")
    assert state.parent == tmp_path / "dcmexport" and state == default_state_dir("s3://b/out")
    assert state != default_state_dir("s3://b/other/")
    assert store_for("s3://b/out/").state_dir == state
    assert store_for(tmp_path / "o").state_dir == tmp_path / "o" / ".dcmexport"


def test_memory_urls_list_sorted_and_read_zip_members(tmp_path: Path) -> None:
    mem = fsspec.filesystem("memory")
    ct = pydicom_file("CT_small.dcm").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("x/one.dcm", ct)
        zf.writestr("../evil.dcm", ct)
    mem.pipe_file("/m/b/2.dcm", ct)
    mem.pipe_file("/m/a.zip", buffer.getvalue())
    mem.pipe_file("/m/b/1.txt", b"text")
    mem.pipe_file("/m/c.tar", b"tar")
    refs = list(discover(["memory://m/"]))
    assert [r.source for r in refs] == [
        "memory://m/a.zip/x/one.dcm",
        "memory://m/a.zip/../evil.dcm",
        "memory://m/b/1.txt",
        "memory://m/b/2.dcm",
        "memory://m/c.tar",
    ]
    assert [r.kind for r in refs[:3]] == [InputKind.URL_MEMBER, InputKind.URL_MEMBER, InputKind.URL]
    assert refs[1].problem and refs[4].problem and not refs[0].problem
    summary = convert(["memory://m/"], tmp_path / "out", jobs=1)
    assert (tmp_path / "out" / "a" / "x" / "one.png").is_file()
    assert (tmp_path / "out" / "b" / "2.png").is_file()
    assert summary.converted == 2 and summary.failed == 2 and summary.skipped == 1
    with pytest.raises(UsageError):
        list(discover(["memory://nothing/here/"]))


def test_anonymize_bucket_to_bucket_matches_a_local_run(
    data: Path, fs: Any, options: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "local"
    assert main(["anonymize", str(data), "-o", str(local), "--key", "k", "-j", "1", "-q"]) == 0
    map_file = tmp_path / "map.csv"
    argv = ["anonymize", "s3://inbox/data/", "-o", "s3://outbox/anon/", "--key", "k"]
    argv += ["--map", str(map_file), "--state-dir", str(tmp_path / "state"), "-j", "2"]
    assert main([*argv, *_cli_options(options)]) == 0
    remote, expected = _objects(fs, "outbox/anon/"), _local_files(local)
    copies = sorted(name for name in expected if name.endswith(".dcm"))
    assert len(copies) == 8  # 4 CT, MR, cine, 2 zip members; notes.txt skipped
    assert sorted(remote) == sorted(expected)
    assert all(remote[name] == expected[name] for name in copies)  # the same bytes
    # the manifest names copies by pseudonym; only --map (local) relinks them to the keys
    manifest = remote["manifest.csv"].decode()
    assert "inbox" not in manifest and "data/" not in manifest
    assert "s3://inbox/data/CT/" in map_file.read_text()
    out, err = capfd.readouterr()
    texts = [out, err, *(v.decode("latin-1") for v in remote.values())]
    assert not [t for t in texts if SECRET in t or KEY_ID in t]


def test_volume_with_object_storage_is_refused_before_any_work(
    data: Path, fs: Any, options: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    opts = _cli_options(options)
    to_bucket = ["convert", str(data), "-o", "s3://outbox/volume/", "--volume", "nifti"]
    from_bucket = ["convert", "s3://inbox/data/", "-o", str(tmp_path / "out"), "--volume", "npz"]
    series = ["convert", "s3://inbox/data/", "-o", str(tmp_path / "out"), "--series-video"]
    for argv, said in ((to_bucket, "--volume"), (from_bucket, "--volume"), (series, "--series")):
        assert main([*argv, *opts, "--state-dir", str(tmp_path / "state")]) == 2
        err = capfd.readouterr().err
        assert f"{said}" in err and "not" in err, err
    fs.invalidate_cache()
    assert not fs.exists("outbox/volume/") and not (tmp_path / "out").exists()
    assert not (tmp_path / "state").exists()


def test_failures_by_reason_are_read_back_from_a_bucket_manifest(
    fs: Any, options: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fs.put_file(str(pydicom_file("CT_small.dcm")), "inbox/withtar/ct.dcm")
    fs.pipe_file("inbox/withtar/old.tar", b"not read")
    argv = ["convert", "s3://inbox/withtar/", "-o", "s3://outbox/withtar/"]
    assert main([*argv, *_cli_options(options), "--state-dir", str(tmp_path)]) == 1
    err = capfd.readouterr().err
    assert "1 input(s) failed; by reason:" in err
    assert "tar archives in object storage are not read yet" in err
    assert "every input's outcome is in s3://outbox/withtar/manifest.csv" in err
