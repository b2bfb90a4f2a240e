"""Issue 13, the rest: `index` reads archive members as `convert` does, a repeated archive
member is an input of its own, ``-j 1`` is guarded like more workers (a hang or a crash costs
one input), and an index table keeps input order after a worker died.

Oracle: a plain pydicom read of the same files (and `convert`'s own manifest for the names).
Every CLI run checks its exit code.
"""

from __future__ import annotations

import contextlib
import csv
import faulthandler
import io
import os
import signal
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from dcmexport.cli import main

from .conftest import pydicom_file


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _manifest(out: Path) -> list[dict[str, str]]:
    return _table(out / "manifest.csv")


def _sample_members(sample_set: tuple[Path, list[Path]]) -> dict[str, bytes]:
    """A few real files of `dcmexport sample` by member name: CT slices, an MR, a cine."""
    root, _ = sample_set
    ct = sorted((root / "CT").rglob("*.dcm"))[:3]
    mr = sorted((root / "MR").rglob("*.dcm"))[:1]
    us = sorted((root / "US").rglob("*.dcm"))[:1]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in (*ct, *mr, *us)}


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _tgz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _oracle(data: bytes) -> dict[str, str]:
    """What a plain pydicom read says, in the table's text form."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {
        "SOPInstanceUID": str(ds.SOPInstanceUID),
        "Modality": str(ds.Modality),
        "PatientID": str(ds.PatientID),
        "Rows": str(ds.Rows),
        "Columns": str(ds.Columns),
        "InstanceNumber": str(ds.get("InstanceNumber", "")),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "file_size": str(len(data)),
        "status": "ok",
    }


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_index_reads_archive_members_as_convert_does(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, kind: str
) -> None:
    good = _sample_members(sample_set)
    ct = next(iter(good.values()))
    members = [
        *good.items(),
        ("notes/readme.txt", b"not DICOM at all"),
        ("cut/truncated.dcm", ct[:1000]),  # a Part 10 file cut inside its header
        ("../evil.dcm", ct),  # refused: climbs out
    ]
    build = _zip if kind == "zip" else _tgz
    archive = build(tmp_path / f"set.{kind}", members)
    table = tmp_path / "t.csv"
    assert main(["index", str(archive), "-o", str(table), "-q", "-j", "1"]) == 1
    rows = _table(table)
    shown = [f"{archive}/{name}" for name, _ in members]
    assert [r["path"] for r in rows] == shown  # one row per member, in archive order
    by_path = {r["path"]: r for r in rows}
    for name, data in good.items():
        row = by_path[f"{archive}/{name}"]
        assert {k: row[k] for k in _oracle(data)} == _oracle(data), name
    evil = by_path[f"{archive}/../evil.dcm"]
    assert (evil["status"], evil["error"]) == ("error", "archive member refused: '..' in the path")
    # every other member gets the row its bytes get as a plain file
    plain = tmp_path / "plain"
    for name, data in members[:-1]:
        (plain / name).parent.mkdir(parents=True, exist_ok=True)
        (plain / name).write_bytes(data)
    plain_table = tmp_path / "plain.csv"
    assert main(["index", str(plain), "-o", str(plain_table), "-q", "-j", "1"]) == 1
    for row in _table(plain_table):
        name = Path(row["path"]).relative_to(plain).as_posix()
        assert by_path[f"{archive}/{name}"] == {**row, "path": f"{archive}/{name}"}
    assert by_path[f"{archive}/notes/readme.txt"]["status"] == "skipped"
    assert by_path[f"{archive}/cut/truncated.dcm"]["status"] == "error"
    # convert names every member the same way
    out = tmp_path / "out"
    assert main(["convert", str(archive), "-o", str(out), "-q", "--video", "none"]) == 1
    assert [r["source"] for r in _manifest(out) if not r["frame"]] == shown
    # and says of a file cut inside its header what index says (was "skipped: no pixel data")
    cut = next(r for r in _manifest(out) if r["source"] == f"{archive}/cut/truncated.dcm")
    index_cut = by_path[f"{archive}/cut/truncated.dcm"]
    assert (cut["status"], cut["error"]) == ("error", index_cut["error"])
    assert index_cut["error"].startswith("truncated DICOM file: it ends inside")
    # with workers: the same table
    again = tmp_path / "t2.csv"
    assert main(["index", str(archive), "-o", str(again), "-q", "-j", "2"]) == 1
    assert _table(again) == rows


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_index_applies_max_inflate_to_members(tmp_path: Path, kind: str) -> None:
    ct = pydicom_file("CT_small.dcm").read_bytes()  # 39 KB
    build = _zip if kind == "zip" else _tgz
    archive = build(tmp_path / f"a.{kind}", [("ct.dcm", ct)])
    table = tmp_path / "t.csv"
    assert main(["index", str(archive), "-o", str(table), "-q", "--max-inflate", "10K"]) == 1
    (row,) = _table(table)
    assert row["status"] == "error" and "--max-inflate" in row["error"]
    out = tmp_path / "out"
    assert main(["convert", str(archive), "-o", str(out), "-q", "--max-inflate", "10K"]) == 1
    assert _manifest(out)[0]["error"] == row["error"]
    assert main(["index", str(archive), "-o", str(table), "-q"]) == 0  # the default lets it in
    assert _table(table)[0]["status"] == "ok"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_repeated_member_name_is_an_input_of_its_own(tmp_path: Path, kind: str) -> None:
    ct = pydicom_file("CT_small.dcm").read_bytes()  # 128 x 128
    mr = pydicom_file("MR_small.dcm").read_bytes()  # 64 x 64
    build = _zip if kind == "zip" else _tgz
    with (
        pytest.warns(UserWarning, match="Duplicate name")
        if kind == "zip"
        else contextlib.nullcontext()
    ):
        archive = build(tmp_path / f"a.{kind}", [("x.dcm", ct), ("x.dcm", mr)])
    out = tmp_path / "out"
    assert main(["convert", str(archive), "-o", str(out), "-q"]) == 0
    rows = _manifest(out)
    assert [(r["source"], r["output"], r["status"]) for r in rows] == [
        (f"{archive}/x.dcm", "x.png", "ok"),
        (f"{archive}/x.dcm (copy 2)", "x_2.png", "ok"),
    ]
    assert "copy 2 of a member name the archive repeats" in rows[1]["note"]
    for output, data in (("x.png", ct), ("x_2.png", mr)):
        ds = pydicom.dcmread(io.BytesIO(data))
        assert np.asarray(Image.open(out / output)).shape == (ds.Rows, ds.Columns)
    # a rerun finds both up to date (each copy has its own resume key)
    assert main(["convert", str(archive), "-o", str(out), "-q"]) == 0
    assert [r["output"] for r in _manifest(out)] == ["x.png", "x_2.png"]
    table = tmp_path / "t.csv"
    assert main(["index", str(archive), "-o", str(table), "-q", "-j", "1"]) == 0
    indexed = _table(table)
    assert [(r["path"], r["Modality"]) for r in indexed] == [
        (f"{archive}/x.dcm", "CT"),
        (f"{archive}/x.dcm (copy 2)", "MR"),
    ]
    assert [r["SOPInstanceUID"] for r in indexed] == [
        pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID for d in (ct, mr)
    ]


def test_a_repeated_member_in_a_zip_object_is_an_input_of_its_own(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    from dcmexport.engine.batch import convert

    ct = pydicom_file("CT_small.dcm").read_bytes()
    mr = pydicom_file("MR_small.dcm").read_bytes()
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("x.dcm", ct)
        zf.writestr("x.dcm", mr)
    fsspec.filesystem("memory").pipe_file("/h3/a.zip", buffer.getvalue())
    out = tmp_path / "out"
    summary = convert(["memory://h3/"], out, jobs=1)
    assert (summary.converted, summary.failed) == (2, 0)
    rows = _manifest(out)
    assert [(r["source"], r["output"]) for r in rows] == [
        ("memory://h3/a.zip/x.dcm", "a/x.png"),
        ("memory://h3/a.zip/x.dcm (copy 2)", "a/x_2.png"),
    ]
    assert np.asarray(Image.open(out / "a/x_2.png")).shape == (64, 64)  # the MR


# --- -j 1 in one guarded worker -------------------------------------------------------------


def _faulty_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit of work hangs on ``hang.dcm`` and kills its process on ``crash.dcm`` (as a
    decoder's endless loop or segfault would); the worker is forked, so it has this too."""
    from dcmexport.engine import work

    convert = work.convert_one  # every input's way, the general path's or the replay's

    def faulty(item: Any, *args: Any) -> Any:
        if item.source.endswith("hang.dcm"):
            time.sleep(120)
        if item.source.endswith("crash.dcm"):
            faulthandler.disable()  # pytest's dump of the worker's stack: noise here
            os.kill(os.getpid(), signal.SIGSEGV)
        return convert(item, *args)

    monkeypatch.setattr(work, "convert_one", faulty)


def test_j1_stops_a_hanging_input_and_survives_a_crash(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = sample_set
    src = tmp_path / "in"
    src.mkdir()
    ct = sorted((root / "CT").rglob("*.dcm"))[:4]
    for i, path in enumerate(ct):
        (src / f"{i}.dcm").write_bytes(path.read_bytes())
    (src / "crash.dcm").write_bytes(ct[0].read_bytes())
    (src / "hang.dcm").write_bytes(ct[0].read_bytes())
    _faulty_convert(monkeypatch)
    out = tmp_path / "out"
    started = time.monotonic()
    code = main(["convert", str(src), "-o", str(out), "-q", "-j", "1", "--timeout", "2"])
    assert code == 1
    assert time.monotonic() - started < 30
    rows = {Path(r["source"]).name: r for r in _manifest(out)}
    assert rows["hang.dcm"]["status"] == "error"
    assert rows["hang.dcm"]["error"].startswith("timed out after 2 s")
    assert rows["crash.dcm"]["status"] == "error"
    assert rows["crash.dcm"]["error"].startswith("the worker process died")
    assert all(rows[f"{i}.dcm"]["status"] == "ok" for i in range(4))
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i}.png" for i in range(4)]
    # the manifest keeps discovery order
    assert [Path(r["source"]).name for r in _manifest(out)] == sorted(rows)


def test_index_table_keeps_input_order_after_a_worker_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dcmexport.index import read

    header = read.read_header

    def crashing(path: Any, columns: Any) -> Any:
        if str(path).endswith("crash.dcm"):
            os.kill(os.getpid(), signal.SIGKILL)
        return header(path, columns)

    monkeypatch.setattr(read, "read_header", crashing)
    src = tmp_path / "in"
    src.mkdir()
    ct = pydicom_file("CT_small.dcm").read_bytes()
    names = sorted([*(f"{i:03d}.dcm" for i in range(150)), "100crash.dcm"])
    for name in names:
        (src / name).write_bytes(ct)
    table = tmp_path / "t.csv"
    assert main(["index", str(src), "-o", str(table), "-q", "-j", "2"]) == 1
    rows = _table(table)
    assert [Path(r["path"]).name for r in rows] == names  # input order, the retried included
    failed = [r for r in rows if r["status"] != "ok"]
    assert [Path(r["path"]).name for r in failed] == ["100crash.dcm"]
    assert failed[0]["error"].startswith("the worker process died")
