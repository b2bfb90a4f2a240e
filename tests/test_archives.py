"""Tests for `dcmexport.sources.archives`: zip and tar members, hostile ones refused."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest

from dcmexport.errors import InputReadError
from dcmexport.sources.archives import (
    Member,
    archive_kind,
    is_archive,
    iter_members,
    member_path,
    read_member,
)

from .conftest import pydicom_file

HOSTILE_NAMES = ["../evil.dcm", "/abs/evil.dcm", "..\\evil.dcm", "a/../../evil.dcm", "C:/evil.dcm"]


@pytest.fixture(scope="module")
def ct() -> bytes:
    return pydicom_file("CT_small.dcm").read_bytes()


@pytest.fixture(scope="module")
def mr() -> bytes:
    return pydicom_file("MR_small.dcm").read_bytes()


def snapshot(root: Path) -> dict[str, int]:
    """Every path under `root` with its size, to prove nothing was written."""
    return {
        os.path.relpath(os.path.join(folder, name), root): os.lstat(
            os.path.join(folder, name)
        ).st_size
        for folder, dirs, files in os.walk(root)
        for name in dirs + files
    }


def zip_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def build_zip(path: Path, ct: bytes, mr: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("study/", b"")
        zf.writestr("study/CT_small.dcm", ct)
        zf.writestr("./study\\MR_small.dcm", mr)
        for name in HOSTILE_NAMES:
            zf.writestr(name, ct)
        zip_symlink(zf, "link_passwd", "/etc/passwd")
        zip_symlink(zf, "link_up", "../x")
        zf.writestr("secret.dcm", ct)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name"
            zf.writestr("study/CT_small.dcm", mr)
    mark_encrypted(path, "secret.dcm")
    return path


def mark_encrypted(path: Path, name: str) -> None:
    """Set the 'encrypted' flag of one member in its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo(name).header_offset
    data[offset + 6] |= 0x1
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    data[central + 8] |= 0x1
    path.write_bytes(bytes(data))


def tar_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def build_tar(path: Path, ct: bytes, mr: bytes, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        tf.addfile(tar_info("study", tarfile.DIRTYPE))
        for name, data in [("study/CT_small.dcm", ct), ("./study/MR_small.dcm", mr)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name in HOSTILE_NAMES:
            info = tarfile.TarInfo(name)
            info.size = len(ct)
            tf.addfile(info, io.BytesIO(ct))
        tf.addfile(tar_info("link_passwd", tarfile.SYMTYPE, "/etc/passwd"))
        tf.addfile(tar_info("link_up", tarfile.SYMTYPE, "../x"))
        tf.addfile(tar_info("hard", tarfile.LNKTYPE, "/etc/passwd"))
        tf.addfile(tar_info("hard_inside", tarfile.LNKTYPE, "study/CT_small.dcm"))
        tf.addfile(tar_info("fifo", tarfile.FIFOTYPE))
        tf.addfile(tar_info("tty", tarfile.CHRTYPE))
        info = tarfile.TarInfo("study/CT_small.dcm")
        info.size = len(mr)
        tf.addfile(info, io.BytesIO(mr))
    return path


EXPECTED_PROBLEMS = {
    "../evil.dcm": "'..'",
    "/abs/evil.dcm": "absolute",
    "..\\evil.dcm": "'..'",
    "a/../../evil.dcm": "'..'",
    "C:/evil.dcm": "absolute",
    "link_passwd": "symbolic link",
    "link_up": "symbolic link",
}


def check_members(members: list[Member], ct: bytes, mr: bytes, *, tar: bool) -> None:
    by_name = {m.name: m for m in members if not m.problem and m.copy == 1}
    assert list(by_name) == ["study/CT_small.dcm", "study/MR_small.dcm"]
    problems = {m.name: m.problem for m in members if m.problem}
    for name, reason in EXPECTED_PROBLEMS.items():
        assert reason in problems[name], name
    assert all(m.data is None for m in members if m.problem)
    # a repeated name is a member of its own (copy 2), never dropped
    repeated = [m for m in members if m.name == "study/CT_small.dcm"]
    assert [(m.copy, m.problem) for m in repeated] == [(1, ""), (2, "")]
    assert repeated[1].data == (mr if tar else None)
    if tar:
        assert by_name["study/CT_small.dcm"].data == ct
        assert by_name["study/MR_small.dcm"].data == mr
        assert "hard link" in problems["hard"] and "hard link" in problems["hard_inside"]
        assert "FIFO" in problems["fifo"] and "device" in problems["tty"]
    else:
        assert all(m.data is None for m in members)
        assert "encrypted" in problems["secret.dcm"]
    assert by_name["study/CT_small.dcm"].size == len(ct)


@pytest.mark.parametrize(
    ("name", "mode"),
    [("in.tar", "w"), ("in.tar.gz", "w:gz"), ("in.TGZ", "w:gz")],
)
def test_tar_members(tmp_path: Path, ct: bytes, mr: bytes, name: str, mode: str) -> None:
    archive = build_tar(tmp_path / name, ct, mr, mode)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = snapshot(tmp_path)
    old_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        assert is_archive(archive)
        members = list(iter_members(archive))
    finally:
        os.chdir(old_cwd)
    check_members(members, ct, mr, tar=True)
    assert snapshot(tmp_path) == before
    ds = pydicom.dcmread(io.BytesIO(members[0].data or b""))
    assert ds.Modality == "CT"


def test_zip_members(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    archive = build_zip(tmp_path / "in.zip", ct, mr)
    before = snapshot(tmp_path)
    assert is_archive(archive)
    members = list(iter_members(archive))
    check_members(members, ct, mr, tar=False)
    assert read_member(archive, "study/CT_small.dcm") == ct  # the first of the repeated names
    assert read_member(archive, "study/CT_small.dcm", copy=2) == mr  # and the second
    assert read_member(archive, "study/MR_small.dcm") == mr  # stored as ./study\MR_small.dcm
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["../evil.dcm", "link_passwd", "secret.dcm", "nothing.dcm"])
def test_read_member_refuses_problem_and_unknown_members(
    tmp_path: Path, ct: bytes, mr: bytes, name: str
) -> None:
    archive = build_zip(tmp_path / "in.zip", ct, mr)
    with pytest.raises(InputReadError):
        read_member(archive, name)


def test_names_only_pass(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    archive = build_tar(tmp_path / "in.tgz", ct, mr, "w:gz")
    full = list(iter_members(archive))
    names_only = list(iter_members(archive, read_data=False))
    assert names_only == full  # data is not compared
    assert all(m.data is None for m in names_only)
    assert any(m.data for m in full)


def test_read_member_from_tar(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    archive = build_tar(tmp_path / "in.tar.gz", ct, mr, "w:gz")
    assert read_member(archive, "study/MR_small.dcm") == mr
    assert read_member(archive, "study/CT_small.dcm", copy=2) == mr  # a repeated name
    for name in ("link_passwd", "missing.dcm"):
        with pytest.raises(InputReadError):
            read_member(archive, name)


def test_read_member_sees_a_rewritten_zip(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.dcm", ct)
    assert read_member(archive, "x.dcm") == ct
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.dcm", mr)
        zf.writestr("padding", b"changes the size")
    assert read_member(archive, "x.dcm") == mr


def test_size_limit(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    limit = len(mr) + 1  # MR_small fits, CT_small does not
    assert len(ct) > limit
    for archive in (build_zip(tmp_path / "a.zip", ct, mr), build_tar(tmp_path / "a.tar", ct, mr)):
        members: dict[str, Member] = {}
        for member in iter_members(archive, max_member_bytes=limit):
            members.setdefault(member.name, member)
        assert "larger than" in members["study/CT_small.dcm"].problem
        assert members["study/CT_small.dcm"].data is None
        assert not members["study/MR_small.dcm"].problem
    with pytest.raises(InputReadError, match="larger than"):
        read_member(tmp_path / "a.zip", "study/CT_small.dcm", max_member_bytes=limit)


def test_overlapping_zip_members_are_refused(tmp_path: Path, ct: bytes) -> None:
    """Two central-directory entries pointing at one stored file (the overlap bomb's trick)."""
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", ct)
    data = plain.getvalue()
    eocd = data.rindex(b"PK\x05\x06")
    (cd_size, cd_offset) = struct.unpack("<II", data[eocd + 12 : eocd + 20])
    entry = data[cd_offset : cd_offset + cd_size]
    twin = entry.replace(b"a.dcm", b"b.dcm")
    end = bytearray(data[eocd:])
    struct.pack_into("<HHI", end, 8, 2, 2, cd_size * 2)
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(data[:cd_offset] + entry + twin + bytes(end))
    members = list(iter_members(archive))
    assert [m.name for m in members] == ["a.dcm", "b.dcm"]
    assert all("overlaps" in m.problem for m in members)


def test_not_an_archive(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    fake = tmp_path / "scan.zip"
    fake.write_bytes(ct)
    assert not is_archive(fake)
    zip_named_tar = tmp_path / "x.tar"
    zip_named_tar.write_bytes(build_zip(tmp_path / "real.zip", ct, mr).read_bytes())
    assert not is_archive(zip_named_tar)
    assert not is_archive(pydicom_file("CT_small.dcm"))
    assert not is_archive(tmp_path / "missing.zip")
    assert archive_kind("A.Tar.Gz") == "tar" and archive_kind("a.ZIP") == "zip"
    assert archive_kind("a.gz") is None


def test_truncated_archives_raise_input_read_error(tmp_path: Path, ct: bytes, mr: bytes) -> None:
    tgz = build_tar(tmp_path / "t.tar.gz", ct, mr, "w:gz")
    tgz.write_bytes(tgz.read_bytes()[: len(tgz.read_bytes()) // 2])
    with pytest.raises(InputReadError):
        list(iter_members(tgz))
    broken = tmp_path / "b.zip"
    broken.write_bytes(build_zip(tmp_path / "z.zip", ct, mr).read_bytes()[:-30])
    with pytest.raises(InputReadError):
        list(iter_members(broken))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.dcm", ("a/b.dcm", "")),
        ("./a//b.dcm", ("a/b.dcm", "")),
        ("a\\b.dcm", ("a/b.dcm", "")),
        ("a/./b.dcm", ("a/b.dcm", "")),
        ("..", ("..", "'..' in the path")),
        ("a/.. /b", ("a/.. /b", "'..' in the path")),
        ("a/.../b", ("a/.../b", "'..' in the path")),
        ("\\\\server\\share\\x", ("\\\\server\\share\\x", "absolute path")),
        ("c:x.dcm", ("c:x.dcm", "absolute path")),
        ("a\x00b", ("a\x00b", "NUL character in the name")),
        ("..data/x", ("..data/x", "")),
    ],
)
def test_member_path(raw: str, expected: tuple[str, str]) -> None:
    assert member_path(raw) == expected
