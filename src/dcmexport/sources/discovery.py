"""Find inputs: files, folders (recursive), DICOMDIRs and zip/tar archives in any mix, streamed.

Whether a file is DICOM is decided by content when it is read, so every file found gets a
manifest row (converted, skipped with a reason, or an error). Folders are read with
`os.scandir`, whose entries know their type without a `stat` per file, and walked lazily: a
million files never sit in memory at once.

A DICOMDIR (a patient CD) in a folder adds what the walk cannot see — the records whose file
is missing, each an error row — while the walk finds every existing image exactly once. A
DICOMDIR given as the input converts the files it references. Archives are read member by
member, never unpacked; refused members (``..``, absolute paths, links) are error rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..dicom.faults import PASS_THROUGH, plain_reason
from ..errors import DcmExportError, UsageError
from ..store import is_url
from . import archives
from .base import InputRef, as_server_input

if TYPE_CHECKING:  # servers, object storage and DICOMDIRs load when an input needs them
    from .servers import ServerInput

log = logging.getLogger(__name__)


def discover(
    inputs: Iterable[str | os.PathLike[str] | ServerInput],
    exclude: Iterable[str | os.PathLike[str]] = (),
    storage_options: dict[str, Any] | None = None,
) -> Iterator[InputRef]:
    """Yield every file under `inputs`, sorted by name per folder, skipping `exclude` folders.

    Symlinked folders are not followed, so a link loop cannot trap the walk; symlinked files
    are. A missing input is a `UsageError`. A SERVER input (a `ServerInput`, or an
    ``http(s)://`` / ``dicom://`` string) yields its matching instances (`remote`).
    Object-store URLs (`urls`) are listed with `storage_options`; an `exclude` URL leaves
    out that prefix.
    """
    exclude = list(exclude)
    excluded = {Path(p).resolve() for p in exclude if not is_url(p)}
    for item in inputs:
        server = as_server_input(item)
        if server is not None:
            from . import remote

            yield from remote.take_inputs(server)
            continue
        assert isinstance(item, (str, os.PathLike))
        if is_url(item):
            from . import urls

            yield from urls.discover_url(str(item), storage_options, [str(e) for e in exclude])
            continue
        path = Path(item)
        if path.is_dir():
            for file_path in walk(path, excluded):
                yield from _contained(_found_in_folder(file_path, path), file_path, path)
        elif path.is_file():
            yield from _contained(_found_as_input(path), path, None)
        else:
            raise UsageError(f"input not found: {path}")


def _found_as_input(path: Path) -> Iterator[InputRef]:
    """A file given as an input: itself, an archive's members, or a DICOMDIR's files."""
    if archives.is_archive(path):
        yield from _archive(path, ())
    elif "dicomdir" in path.name.casefold() and _is_dicomdir(path):
        refs = list(_dicomdir_references(path, path.parent, missing_only=False))
        yield from _with_dicomdir_row(path, None, refs)
    else:
        yield InputRef(path)


def _contained(found: Iterator[InputRef], path: Path, root: Path | None) -> Iterator[InputRef]:
    """`found`, and if reading the container (a DICOMDIR, an archive) fails on hostile data,
    one error row for it instead of an exception: discovery never stops for a bad input."""
    try:
        yield from found
    except PASS_THROUGH:
        raise
    except BaseException as exc:
        log.debug("cannot read %s", path, exc_info=True)
        yield InputRef(path, root, problem=f"cannot read the file's contents: {plain_reason(exc)}")


class _BrokenDicomdir(Exception):
    """A DICOMDIR whose records cannot be walked; the reason is its manifest row."""


def _found_in_folder(path: Path, root: Path) -> Iterator[InputRef]:
    """A file met in a folder walk: itself, an archive's members, or a DICOMDIR's gaps."""
    if _is_fileset_root(path.name):
        refs = list(_dicomdir_references(path, root, missing_only=True))
        yield from _with_dicomdir_row(path, root, refs)
    elif archives.archive_kind(path) and archives.is_archive(path):
        rel = path.parent.relative_to(root) / archives.archive_stem(path.name)
        yield from _archive(path, rel.parts)
    else:
        yield InputRef(path, root)


def _with_dicomdir_row(
    path: Path, root: Path | None, refs: list[InputRef | _BrokenDicomdir]
) -> Iterator[InputRef]:
    """The DICOMDIR's own row first (an error if its records are broken), then its refs."""
    broken = [r for r in refs if isinstance(r, _BrokenDicomdir)]
    yield InputRef(path, root, problem=str(broken[0]) if broken else "")
    yield from (r for r in refs if isinstance(r, InputRef))


def _dicomdir_references(
    path: Path, root: Path, *, missing_only: bool
) -> Iterator[InputRef | _BrokenDicomdir]:
    """The files a DICOMDIR references (or only the missing ones, as error rows)."""
    from . import dicomdir

    try:
        refs = dicomdir.references(path)
    except DcmExportError as exc:
        log.info("cannot read DICOMDIR %s (%s)", path, exc)
        return
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # malformed records: pydicom raises many types
        log.debug("cannot walk DICOMDIR %s", path, exc_info=True)
        yield _BrokenDicomdir(f"cannot read the DICOMDIR's records: {plain_reason(exc)}")
        return
    for ref in refs:
        if ref.problem or ref.path is None:
            expected = path.parent.joinpath(*ref.file_id.split("/"))
            yield InputRef(expected, root, problem=f"DICOMDIR {ref.record}: {ref.problem}")
        elif not missing_only:
            yield InputRef(ref.path, root)


def _archive(path: Path, prefix: tuple[str, ...]) -> Iterator[InputRef]:
    """Every member of a zip or tar archive (DICOMDIRs inside honoured), mirrored under
    `prefix`; a tar's bytes come along, a zip's are read by the worker."""
    try:
        listing = list(archives.iter_members(path, read_data=False))
        names = [m.name for m in listing if not m.problem]
        for member in listing:
            if not member.problem and _is_fileset_root(PurePosixPath(member.name).name):
                yield from _archive_dicomdir_gaps(path, member.name, names)
        members = listing if archives.archive_kind(path) == "zip" else archives.iter_members(path)
        for member in members:
            if member.problem:
                problem = f"archive member refused: {member.problem}"
                yield InputRef(path, member=member.name, problem=problem, copy=member.copy)
                continue
            parts = tuple(member.name.split("/"))
            yield InputRef(
                path,
                member=member.name,
                prefix=prefix,
                member_parts=parts,
                data=member.data,
                copy=member.copy,
            )
    except DcmExportError as exc:
        yield InputRef(path, problem=str(exc))


def _is_dicomdir(path: Path) -> bool:
    """A file named and made like a DICOMDIR (`dicomdir`, which loads only then)."""
    from . import dicomdir

    return dicomdir.is_dicomdir_name(path.name) and dicomdir.is_dicomdir(path)


def _is_fileset_root(name: str) -> bool:
    """A file named DICOMDIR, in any case (nested DIRFILEs are followed from their root)."""
    return name.casefold() == "dicomdir"


def _archive_dicomdir_gaps(path: Path, member: str, names: list[str]) -> Iterator[InputRef]:
    """Error rows for the records of a DICOMDIR inside an archive whose member is missing."""

    from . import dicomdir

    def read(name: str) -> bytes:
        return archives.read_member(path, name)

    try:
        found = dicomdir.references_in_archive(read(member), member, names, read)
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # malformed records, an unreadable member: one row, go on
        reason = exc if isinstance(exc, DcmExportError) else plain_reason(exc)
        yield InputRef(path, member=member, problem=f"cannot read the DICOMDIR's records: {reason}")
        return
    for ref in found:
        if ref.problem or ref.member is None:
            expected = str(PurePosixPath(member).parent / ref.file_id)
            yield InputRef(path, member=expected, problem=f"DICOMDIR {ref.record}: {ref.problem}")


def count_files(
    inputs: Iterable[str | os.PathLike[str] | ServerInput],
    exclude: Iterable[str | os.PathLike[str]] = (),
    storage_options: dict[str, Any] | None = None,
) -> int:
    """How many files `discover` will yield (for a progress bar's total), without keeping them
    (a server's instances are listed here once; `discover` reuses that listing)."""
    exclude = list(exclude)
    excluded = {Path(p).resolve() for p in exclude if not is_url(p)}
    total = 0
    for item in inputs:
        server = as_server_input(item)
        if server is not None:
            from . import remote

            total += len(remote.list_inputs(server))
            continue
        assert isinstance(item, (str, os.PathLike))
        if is_url(item):
            from . import urls

            total += urls.count_url(str(item), storage_options, [str(e) for e in exclude])
            continue
        path = Path(item)
        if path.is_dir():
            total += sum(1 for _ in walk(path, excluded))
        elif path.is_file():
            total += 1
    return total


def walk(root: Path, excluded: set[Path]) -> Iterator[Path]:
    """Files under `root`, depth first, each folder's entries in name order."""
    if root.resolve() in excluded:
        return
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot read folder %s (%s): skipped", root, exc.strerror or exc)
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path), excluded)
            elif entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue
