"""DICOMDIR file-sets (patient CDs): which files a DICOMDIR references, found robustly.

pydicom's `FileSet` reads the set first, and every reference it resolves is taken from it. It
is not enough on its own for real media, so the directory records are also walked here:

- a referenced file that is absent, or whose name differs in case (CD copies that went all
  lower-case), is dropped by `FileSet` with only a warning; we look each path component up
  case-insensitively, ignoring an ISO 9660 version suffix (``IM1;1``) and a trailing dot,
  and report what is still missing as a problem;
- one ReferencedFileID with ``..`` or an absolute path makes `FileSet` refuse the whole set
  (PermissionError), as does a malformed record (ValueError); we refuse only that reference;
- `FileSet` needs the DICOMDIR on disk, so a DICOMDIR inside an archive is walked here alone.

A record whose file is itself a DICOMDIR (Philips ``DIRFILE``) is followed, once: its
references are resolved from the file-set root, as the standard says, or else from the
nested file's own folder. Each referenced file is listed once, in the DICOMDIR's own order.
Descriptions name the record type, file ID, instance and series numbers; never patient data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import MediaStorageDirectoryStorage

from ..dicom.decoding import read_dataset
from ..errors import DcmExportError, NotDicomError
from .archives import member_path

log = logging.getLogger(__name__)

T = TypeVar("T")

_FIRST = "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"
_NEXT = "OffsetOfTheNextDirectoryRecord"
_LOWER = "OffsetOfReferencedLowerLevelDirectoryEntity"
#: Names under which a file-set directory appears inside another (Philips, some CD writers).
_DIRECTORY_NAMES = frozenset({"dicomdir", "dirfile"})
_ISO9660_VERSION = re.compile(r";\d*\Z")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A file a DICOMDIR references: the existing `path`, or None and a one-line `problem`."""

    path: Path | None
    file_id: str
    record: str
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ArchiveReference:
    """A member a DICOMDIR inside an archive references (`member` as `Member.name` gives it)."""

    member: str | None
    file_id: str
    record: str
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class _FileRecord:
    file_id: tuple[str, ...]
    record: str
    is_directory: bool


@dataclasses.dataclass(frozen=True)
class _Found(Generic[T]):
    target: T | None
    file_id: str
    record: str
    problem: str = ""


def is_dicomdir(source: Dataset | bytes | str | os.PathLike[str]) -> bool:
    """True if `source` (a dataset, file bytes or a path) is a DICOMDIR, judged by content.

    The Media Storage SOP Class in the file meta decides; without file meta, a Directory
    Record Sequence or root-record offset does. Unreadable or non-DICOM input is not one.
    """
    if isinstance(source, Dataset):
        meta = getattr(source, "file_meta", None)
        sop_class = meta.get("MediaStorageSOPClassUID") if meta is not None else None
        if sop_class:
            return str(sop_class) == MediaStorageDirectoryStorage
        return "DirectoryRecordSequence" in source or _FIRST in source
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        ds = pydicom.dcmread(
            fp, force=True, stop_before_pixels=True, specific_tags=[0x00041200, 0x00041220]
        )
    except Exception:  # pydicom raises many types on junk input
        return False
    return is_dicomdir(ds)


def is_dicomdir_name(name: str) -> bool:
    """True for a file or member named like a DICOMDIR (``DICOMDIR``, ``dicomdir``,
    ``DICOMDIR;1``, ``a/b/DicomDir``); the content still has to agree (`is_dicomdir`)."""
    return _fold(PurePosixPath(name.replace("\\", "/")).name) == "dicomdir"


def find_dicomdir(folder: str | os.PathLike[str]) -> Path | None:
    """The DICOMDIR directly in `folder` (name in any case, ISO 9660 suffix allowed), or None.

    Only the name is checked; `references` checks the content.
    """
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if is_dicomdir_name(e.name) and e.is_file())
    except OSError:
        return None
    return Path(folder, names[0]) if names else None


def references(dicomdir: str | os.PathLike[str]) -> list[Reference]:
    """Every file the DICOMDIR references, each once, resolved relative to its folder.

    Raises `NotDicomError` if the file is not a DICOMDIR and `InputReadError` if it cannot
    be read; a referenced file that is missing or outside the folder is a `Reference` with a
    problem instead.
    """
    path = Path(dicomdir)
    ds = _read_dicomdir(path)
    if ds is None:
        raise NotDicomError(f"not a DICOMDIR: {path}")
    root = path.parent
    resolved_root = root.resolve()
    from_fileset = _fileset_ids(ds)
    listings: dict[Path, dict[str, str]] = {}

    def locate(parts: tuple[str, ...]) -> tuple[Path | None, str]:
        if parts in from_fileset:
            found: Path | None = root.joinpath(*parts)
        else:
            found = _find_folded(root, parts, listings)
        if found is None:
            return None, ""
        if not found.resolve().is_relative_to(resolved_root):
            return None, "outside the DICOMDIR's folder (a link)"
        return found, ""

    def nested(target: Path) -> Dataset | None:
        try:
            return _read_dicomdir(target)
        except DcmExportError:  # unreadable: listed as a plain file, its read will fail
            return None

    def key(target: Path) -> object:
        return target.resolve()

    found = _resolve_set(ds, locate, nested, key, key(path))
    return [Reference(f.target, f.file_id, f.record, f.problem) for f in found]


def references_in_archive(
    dicomdir_bytes: bytes,
    dicomdir_member: str,
    member_names: Iterable[str],
    read: Callable[[str], bytes] | None = None,
) -> list[ArchiveReference]:
    """The members a DICOMDIR inside an archive references, each once, matched like on disk.

    `member_names` are the archive's accepted member names (`Member.name`); `read` returns a
    member's bytes and is needed only to follow nested DICOMDIRs. Raises `NotDicomError` if
    `dicomdir_bytes` is not a DICOMDIR.
    """
    ds = _parse_dicomdir(dicomdir_bytes)
    if ds is None:
        raise NotDicomError(f"not a DICOMDIR: {dicomdir_member}")
    root = PurePosixPath(dicomdir_member).parent.parts
    exact = set(member_names)
    folded: dict[str, str] = {}
    for name in sorted(exact):
        folded.setdefault(_fold_path(name), name)

    def locate(parts: tuple[str, ...]) -> tuple[str | None, str]:
        name = "/".join((*root, *parts))
        return (name if name in exact else folded.get(_fold_path(name))), ""

    def nested(target: str) -> Dataset | None:
        if read is None:
            return None
        try:
            return _parse_dicomdir(read(target))
        except DcmExportError:
            return None

    found = _resolve_set(ds, locate, nested, lambda name: name, dicomdir_member)
    return [ArchiveReference(f.target, f.file_id, f.record, f.problem) for f in found]


def _resolve_set(
    ds: Dataset,
    locate: Callable[[tuple[str, ...]], tuple[T | None, str]],
    nested: Callable[[T], Dataset | None],
    key: Callable[[T], object],
    top: object,
) -> list[_Found[T]]:
    """The walk shared by folders and archives; `locate` takes parts relative to the root."""
    results: list[_Found[T]] = []
    seen_files: set[object] = set()
    seen_problems: set[tuple[str, str]] = set()
    seen_sets = {top}
    pending: list[tuple[Dataset, tuple[tuple[str, ...], ...]]] = [(ds, ((),))]
    while pending:
        current, bases = pending.pop(0)
        for record in _file_records(current):
            file_id = _printable("/".join(record.file_id))
            safe, problem = member_path("/".join(record.file_id))
            target: T | None = None
            matched: tuple[str, ...] = ()
            if not problem:
                for base in bases:
                    matched = base + tuple(safe.split("/"))
                    target, problem = locate(matched)
                    if target is not None or problem:
                        break
            if target is None:
                problem = f"referenced file {file_id} " + (
                    f"refused: {problem}" if problem else "is missing"
                )
                if (file_id, problem) not in seen_problems:
                    seen_problems.add((file_id, problem))
                    results.append(_Found(None, file_id, record.record, problem))
                continue
            if record.is_directory and (inner := nested(target)) is not None:
                if key(target) not in seen_sets:
                    seen_sets.add(key(target))
                    folder = matched[:-1]
                    pending.append((inner, ((), folder) if folder else ((),)))
                continue
            if key(target) not in seen_files:
                seen_files.add(key(target))
                results.append(_Found(target, file_id, record.record))
    return results


def _file_records(ds: Dataset) -> Iterator[_FileRecord]:
    """Records with a ReferencedFileID in hierarchy order (as `FileSet` orders them), then
    records outside the hierarchy in file order. Offsets that lead nowhere or loop are
    tolerated."""
    records = list(ds.get("DirectoryRecordSequence") or [])
    by_offset = {r.seq_item_tell: r for r in records if getattr(r, "seq_item_tell", None)}
    parent_of: dict[int, Dataset | None] = {}
    ordered: list[Dataset] = []
    stack: list[tuple[int, Dataset | None]] = [(int(ds.get(_FIRST) or 0), None)]
    while stack:
        offset, parent = stack.pop()
        record = by_offset.get(offset)
        if record is None or id(record) in parent_of:
            continue
        parent_of[id(record)] = parent
        ordered.append(record)
        stack.append((int(record.get(_NEXT) or 0), parent))
        stack.append((int(record.get(_LOWER) or 0), record))
    ordered += [r for r in records if id(r) not in parent_of]
    for record in ordered:
        file_id = _file_id_parts(record)
        if file_id:
            yield _FileRecord(file_id, _describe(record, file_id, parent_of), _is_set(record))


def _file_id_parts(record: Dataset) -> tuple[str, ...]:
    try:
        return _id_parts(record.get("ReferencedFileID"))
    except Exception:  # a value pydicom cannot decode
        return ()


def _id_parts(value: object) -> tuple[str, ...]:
    """A ReferencedFileID value (one string or several) as a tuple of components."""
    if value is None or value == "":
        return ()
    values = [value] if isinstance(value, (str, bytes)) else list(value)  # type: ignore[call-overload]
    return tuple(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values)


def _describe(
    record: Dataset, file_id: tuple[str, ...], parent_of: dict[int, Dataset | None]
) -> str:
    """E.g. ``IMAGE record 77654033/CR1/6154 (instance 1 of series 1)``; no patient data."""
    record_type = _printable(str(record.get("DirectoryRecordType", "") or "").strip())
    instance = str(record.get("InstanceNumber", "") or "").strip()
    series = ""
    ancestor = parent_of.get(id(record))
    while ancestor is not None:
        if ancestor.get("DirectoryRecordType") == "SERIES":
            series = str(ancestor.get("SeriesNumber", "") or "").strip()
            break
        ancestor = parent_of.get(id(ancestor))
    details = [f"instance {instance}"] if instance else []
    if series:
        details.append(f"series {series}")
    detail = f" ({' of '.join(details)})" if details else ""
    return _printable(f"{record_type or 'untyped'} record {'/'.join(file_id)}{detail}")


def _is_set(record: Dataset) -> bool:
    """Whether the record may reference another DICOMDIR (the content decides later)."""
    sop_class = str(record.get("ReferencedSOPClassUIDInFile", "") or "")
    name = _file_id_parts(record)[-1:]
    return sop_class == MediaStorageDirectoryStorage or bool(
        name and _fold(name[0]) in _DIRECTORY_NAMES
    )


def _fileset_ids(ds: Dataset) -> set[tuple[str, ...]]:
    """The ReferencedFileIDs pydicom's `FileSet` resolves to existing files; empty if it
    refuses the set."""
    try:
        with _quiet_pydicom():
            return {_id_parts(instance.ReferencedFileID) for instance in FileSet(ds)}
    except Exception as exc:  # PermissionError on '..', ValueError on malformed records, ...
        log.debug("pydicom FileSet refused the DICOMDIR (%s); walking its records", exc)
        return set()


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence `FileSet`'s per-file warnings: we report those references ourselves."""
    logger = logging.getLogger("pydicom")

    def mute(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(mute)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(mute)


def _read_dicomdir(path: Path) -> Dataset | None:
    """The DICOMDIR at `path`, or None if it is something else; `InputReadError` if unreadable."""
    try:
        ds = read_dataset(path)
    except NotDicomError:
        return None
    return ds if is_dicomdir(ds) else None


def _parse_dicomdir(data: bytes) -> Dataset | None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # pydicom raises many types on junk input
        return None
    return ds if is_dicomdir(ds) and "DirectoryRecordSequence" in ds else None


def _find_folded(
    root: Path, parts: tuple[str, ...], listings: dict[Path, dict[str, str]]
) -> Path | None:
    """`root/parts`, each component matched exactly or else by `_fold` (first name wins)."""
    current = root
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        if current not in listings:
            try:
                with os.scandir(current) as it:
                    names = sorted(entry.name for entry in it)
            except OSError:
                return None
            listings[current] = {}
            for name in names:
                listings[current].setdefault(_fold(name), name)
        match = listings[current].get(_fold(part))
        if match is None:
            return None
        current = current / match
    return current if current.is_file() else None


def _fold(name: str) -> str:
    """A name as CD copies may alter it: any case, ``;1`` version suffix, trailing dot."""
    return _ISO9660_VERSION.sub("", name).rstrip(".").casefold()


def _fold_path(name: str) -> str:
    return "/".join(_fold(part) for part in name.split("/"))


def _printable(text: str) -> str:
    """Text for a message: control characters shown as ``?``."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
