"""Zip and tar inputs, read member by member and never extracted to disk.

An archive is recognised by name (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``, any case) and
confirmed by content: a ``.zip`` that is not a zip is an ordinary (non-DICOM) file.

Members are yielded in archive order. A hostile member is yielded with a `Member.problem` and
no bytes, so it gets a manifest row but nothing is read or written for it: an absolute path,
a ``..`` component (``\\`` counts as a separator, so ``..\\x`` is caught), a link, device or
FIFO member (links are never followed), an encrypted or undecodable zip member, and anything
over `MAX_MEMBER_BYTES`.

A repeated name (zip and tar allow it; which copy an extracting tool keeps differs) is no
reason to drop either copy: every member is an input of its own, told apart by `Member.copy`
(1 for the first of a name, 2 for the next ...), so the manifest shows all of them.

Zip bombs: a member's declared size must be within the limit, and it is read with that cap as
well (Python's zip reader stops at the declared size and checks the CRC). Zip members whose data
overlap another member's (the "overlapping files" bomb, many huge members from one small
kernel) are refused. Archives inside archives are not opened, so nested bombs stay inert.

Zip members are read later by random access (`read_member`, typically in a worker); tar
members, whose random access means decompressing again from the start, carry their bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from ..dicom import limits
from ..errors import InputReadError

if TYPE_CHECKING:
    import tarfile

#: Archive names we open, lower case; the content must agree.
ARCHIVE_SUFFIXES: dict[str, Literal["zip", "tar"]] = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
}

#: Largest member read (bytes, uncompressed). Tar members are held in memory whole, and a
#: DICOM file beyond this is far outside what we convert.
MAX_MEMBER_BYTES = 2 * 1024**3

#: Tar members up to this size travel with their reference (one pass over a .tar.gz); larger
#: ones are read again by the worker that converts them, so the main process never holds them.
TAR_CARRY_BYTES = 16 * 2**20

_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ZIP_LOCAL_HEADER = 30
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclasses.dataclass(frozen=True)
class Member:
    """One file in an archive.

    `name` is the member's path made safe (relative, ``/``-separated, no ``.`` or empty
    parts), or the raw name when `problem` says why the member is refused. `data` holds the
    bytes of an accepted tar member; zip members are read with `read_member`. `copy` counts
    the members of this name so far (1 for the first; an archive may repeat a name).
    """

    name: str
    size: int
    problem: str = ""
    data: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    copy: int = 1


def archive_kind(path: str | os.PathLike[str]) -> Literal["zip", "tar"] | None:
    """The kind of archive `path`'s name promises, or None."""
    name = os.fspath(path).lower()
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def archive_stem(name: str) -> str:
    """An archive's name without its archive suffix (``cd.tar.gz`` → ``cd``)."""
    lowered = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True if `path` is named like an archive and its content is one.

    An unreadable file is not an archive here; reading it as a file reports the error.
    """
    kind = archive_kind(path)
    try:
        if kind == "zip":
            return zipfile.is_zipfile(path)
        if kind == "tar":
            import tarfile  # 1.5 ms of every start otherwise; needed for tar inputs only

            return tarfile.is_tarfile(path)
    except OSError:
        return False
    return False


def member_path(raw: str) -> tuple[str, str]:
    """A member name as a safe relative POSIX path and ``""``, or the raw name and a problem."""
    text = raw.replace("\\", "/")
    if "\x00" in text:
        return raw, "NUL character in the name"
    if text.startswith("/") or _DRIVE.match(text):
        return raw, "absolute path"
    parts = [part for part in text.split("/") if part not in ("", ".")]
    # Windows drops trailing dots and spaces, so ".. " and "..." also climb out.
    if any(part.strip(". ") == "" for part in parts):
        return raw, "'..' in the path"
    if not parts:
        return raw, "empty name"
    return "/".join(parts), ""


def iter_members(
    path: str | os.PathLike[str],
    max_member_bytes: int = MAX_MEMBER_BYTES,
    *,
    read_data: bool = True,
) -> Iterator[Member]:
    """Yield the files of a zip or tar archive in archive order; directories are left out.

    With `read_data` False, tar members come without bytes too (a names-only first pass, e.g.
    to find a DICOMDIR and what it references). Raises `InputReadError` if the archive cannot
    be opened or breaks off midway (members yielded before stay valid).
    """
    if archive_kind(path) == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                yield from (member for _, member in _zip_members(zf, max_member_bytes))
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise InputReadError(f"cannot read the zip archive ({_reason(exc)})") from None
    else:
        yield from _tar_members(path, max_member_bytes, read_data=read_data)


def read_member(
    archive: str | os.PathLike[str],
    name: str,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    copy: int = 1,
) -> bytes:
    """The bytes of member `name` (as `Member.name` gives it; the `copy`-th of that name);
    `InputReadError` otherwise.

    For zip this is random access; the archive stays open per process (keyed by path,
    modification time and process id, so forked workers never share a file offset). For tar
    it scans from the start: use `Member.data` instead where possible.
    """
    if archive_kind(archive) != "zip":
        for member in _tar_members(archive, max_member_bytes, only=(name, copy)):
            if member.problem:
                raise InputReadError(f"archive member {name}: {member.problem}")
            assert member.data is not None
            return member.data
        raise InputReadError(f"no member {name} in the archive")
    try:
        st = os.stat(archive)
        zf, index = _open_zip(os.path.abspath(archive), st.st_mtime_ns, st.st_size, os.getpid())
        entry = index.get((name, copy))
        if entry is None:
            raise InputReadError(f"no member {name} in the archive")
        info, member = entry
        if member.problem:
            raise InputReadError(f"archive member {name}: {member.problem}")
        with zf.open(info) as f:
            data = f.read(max_member_bytes + 1)
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise InputReadError(f"cannot read archive member {name} ({_reason(exc)})") from None
    if len(data) > max_member_bytes:
        raise InputReadError(f"archive member {name} is larger than {max_member_bytes} bytes")
    return data


@functools.lru_cache(maxsize=4)
def _open_zip(
    path: str, mtime_ns: int, size: int, pid: int
) -> tuple[zipfile.ZipFile, dict[tuple[str, int], tuple[zipfile.ZipInfo, Member]]]:
    """An open zip and its members by (name, copy), parsed once per process."""
    zf = zipfile.ZipFile(path)
    return zf, zip_index(zf)


def zip_index(zf: zipfile.ZipFile) -> dict[tuple[str, int], tuple[zipfile.ZipInfo, Member]]:
    """A zip's members by (name, copy), in archive order."""
    return {(m.name, m.copy): (info, m) for info, m in _zip_members(zf, MAX_MEMBER_BYTES)}


def _zip_members(
    zf: zipfile.ZipFile, max_member_bytes: int
) -> list[tuple[zipfile.ZipInfo, Member]]:
    infos = [info for info in zf.infolist() if not info.is_dir()]
    overlapping = _overlapping(infos)
    seen: collections.Counter[str] = collections.Counter()
    members = []
    for info in infos:
        name, problem = member_path(info.filename)
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        if problem:
            pass
        elif stat.S_ISLNK(mode):
            problem = "symbolic link member, not followed"
        elif stat.S_ISDIR(mode):
            continue
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            problem = "special file member (device, FIFO or socket)"
        elif info.flag_bits & 0x1:
            problem = "encrypted member"
        elif info.compress_type not in _ZIP_METHODS:
            problem = f"unsupported zip compression method {info.compress_type}"
        elif info.file_size > max_member_bytes:
            problem = f"member larger than {max_member_bytes} bytes"
        elif info.file_size > limits.inflate_limit(info.compress_size):
            refusal = limits.inflate_refusal("the member", info.file_size, info.compress_size)
            problem = str(refusal).removeprefix("refused: ")
        elif id(info) in overlapping:
            problem = "member data overlaps another member (zip bomb?)"
        seen[name] += 1
        members.append((info, Member(name, info.file_size, problem, copy=seen[name])))
    return members


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[int]:
    """Members whose stored data runs into the next member's header (ids of their ZipInfo).

    A genuine member needs its local header (at least 30 bytes) plus its compressed data
    before the next member begins.
    """
    ordered = sorted(infos, key=lambda info: info.header_offset)
    bad: set[int] = set()
    for a, b in itertools.pairwise(ordered):
        if b.header_offset < a.header_offset + _ZIP_LOCAL_HEADER + a.compress_size:
            bad.update((id(a), id(b)))
    return bad


def _tar_members(
    path: str | os.PathLike[str],
    max_member_bytes: int,
    only: tuple[str, int] | None = None,
    read_data: bool = True,
) -> Iterator[Member]:
    """Tar members in stream mode: one pass, no seeking back (cheap for .tar.gz); with
    `only`, just that (name, copy)."""
    import tarfile

    seen: collections.Counter[str] = collections.Counter()
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for info in tf:
                if info.isdir():
                    continue
                name, problem = member_path(info.name)
                seen[name] += 1
                if only is not None and (name, seen[name]) != only:
                    continue
                problem = problem or _tar_problem(info, max_member_bytes)
                data = None
                # a large member is read later by the worker that converts it, not held here
                carry = only is not None or info.size <= TAR_CARRY_BYTES
                if not problem and read_data and carry:
                    f = tf.extractfile(info)
                    data = f.read(max_member_bytes + 1) if f is not None else b""
                    if len(data) > max_member_bytes:
                        problem, data = f"member larger than {max_member_bytes} bytes", None
                yield Member(name, info.size, problem, data, seen[name])
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise InputReadError(f"cannot read the tar archive ({_reason(exc)})") from None


def _tar_problem(info: tarfile.TarInfo, max_member_bytes: int) -> str:
    if info.issym():
        return "symbolic link member, not followed"
    if info.islnk():
        return "hard link member, not followed"
    if info.ischr() or info.isblk():
        return "device member"
    if info.isfifo():
        return "FIFO member"
    if not info.isreg():
        return "unsupported member type"
    if info.size > max_member_bytes:
        return f"member larger than {max_member_bytes} bytes"
    if info.size > limits.current().max_inflate:
        return str(limits.inflate_refusal("the member", info.size, None)).removeprefix("refused: ")
    return ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
