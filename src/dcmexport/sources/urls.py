"""Inputs in object storage: ``s3://bucket/prefix/`` and any other fsspec URL (``gs://``,
``az://``, ``file://``, ``memory://``).

A prefix is listed recursively, one "folder" (delimiter listing) at a time, entries sorted by
name as a local walk sorts them, so the listing streams and a rerun sees the same order. Each
listing entry's size and ETag are kept as the input's fingerprint, so a resume costs no HEAD
per input. Object names are foreign: they travel as raw parts and naming sanitises them.

Reading happens in the worker. `UrlSource.open` fetches the object with one GET; an object
over `SNIFF_ABOVE` bytes is first recognised by content from a ranged read of its first
bytes, so a large non-DICOM object is never downloaded. `header_source` opens the object
with a small block size, so a header-only read (`index`, layout templates) fetches a few
kilobytes, never the pixel data. A ``.zip`` object is read member by member with range
requests (the central directory, then each member's bytes). Not yet: ``.tar`` objects (a tar
has no index; each becomes an error row saying so) and the missing-file rows of a DICOMDIR
in a bucket (the listing finds every existing image anyway; the DICOMDIR object itself is
an ordinary input).

Only the URL, the key and the storage options travel to a worker; each process opens its
own fsspec file system. Storage options (credentials) never appear in a `repr` or message.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import InputReadError, NotDicomError, UsageError
from ..store import filesystem, is_url, redact, version_stamp
from . import archives
from .base import InputKind, InputRef, copy_suffix

log = logging.getLogger(__name__)

#: Objects above this size are recognised from their first bytes before the whole GET.
SNIFF_ABOVE = 4 * 1024**2
#: Bytes read to recognise DICOM: the preamble, ``DICM`` and the first elements.
SNIFF_BYTES = 4096
#: Block size of a header-only read: one range request covers a typical header.
HEADER_BLOCK = 16 * 1024
#: Block size for reading a zip in a bucket (central directory and members).
ZIP_BLOCK = 1024**2
#: Zip archives kept open per process (their central directories parsed once).
_OPEN_ZIPS = 4


@dataclasses.dataclass(frozen=True)
class UrlRef(InputRef):
    """An object (or a zip member inside one) in object storage.

    `path` is the object's path inside its file system (bucket/key), `url` the object's
    URL as the manifest names it, `member_parts` its key below the input prefix (foreign
    names, sanitised by naming). `stamp` is (size, ETag digest) from the listing.
    """

    url: str = ""
    storage_options: dict[str, Any] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )
    stamp: tuple[int, int] | None = None

    @property
    def kind(self) -> InputKind:
        return InputKind.URL_MEMBER if self.member else InputKind.URL

    @property
    def source(self) -> str:
        return f"{self.url}/{self.member}{copy_suffix(self.copy)}" if self.member else self.url

    @property
    def name(self) -> str:
        return PurePosixPath(self.member or self.url).name

    @property
    def trusted_parts(self) -> tuple[str, ...]:
        return ()

    def absolute(self) -> UrlRef:
        return self


def looks_like_dicom(head: bytes) -> bool:
    """True if the first bytes of an object may start a DICOM file: the Part 10 ``DICM``
    marker, or (no preamble) a first element in groups 0002-0028 in either byte order."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    return 0x0002 <= little <= 0x0028 or 0x0002 <= big <= 0x0028


def _join(url: str, rel: str) -> str:
    return f"{url.rstrip('/')}/{rel}" if rel else url.rstrip("/")


def discover_url(
    url: str, storage_options: dict[str, Any] | None = None, exclude: Iterable[str] = ()
) -> Iterator[InputRef]:
    """Every object under `url` (a prefix, listed recursively, or one object), in name
    order per folder; prefixes under an `exclude` URL (the run's own OUT) are left out."""
    options = dict(storage_options or {})
    fs, root = filesystem(url, options)
    skip = {filesystem(e, options)[1] for e in exclude if is_url(e)}
    try:
        info = fs.info(root)
    except FileNotFoundError:
        raise UsageError(f"input not found: {redact(url)}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {redact(url)} ({_reason(exc)})") from None
    if info.get("type") != "directory":  # one object
        yield from _object_refs(fs, url, root, (PurePosixPath(root).name,), info, options)
        return
    for path, entry in _walk(fs, root, skip):
        rel = path[len(root) :].lstrip("/")
        yield from _object_refs(fs, _join(url, rel), path, tuple(rel.split("/")), entry, options)


def _walk(fs: Any, folder: str, skip: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, listing entry) of every object under `folder`, depth first, name order."""
    if folder in skip:
        return
    try:
        entries = fs.ls(folder, detail=True, refresh=True)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot list %s (%s): skipped", folder, exc.strerror or type(exc).__name__)
        return
    finally:
        with contextlib.suppress(Exception):
            fs.invalidate_cache(folder)  # listings are not kept: memory stays bounded
    for entry in sorted(entries, key=lambda e: PurePosixPath(e["name"]).name):
        name = entry["name"].rstrip("/")
        if name == folder:
            continue
        if entry.get("type") == "directory":
            yield from _walk(fs, name, skip)
        else:
            yield name, entry


def _object_refs(
    fs: Any,
    url: str,
    path: str,
    parts: tuple[str, ...],
    info: dict[str, Any],
    options: dict[str, Any],
) -> Iterator[InputRef]:
    stamp = version_stamp(info)
    ref = UrlRef(Path(path), member_parts=parts, url=url, storage_options=options, stamp=stamp)
    kind = archives.archive_kind(parts[-1])
    if kind == "tar":
        yield dataclasses.replace(
            ref, problem="tar archives in object storage are not read yet (zip archives are)"
        )
    elif kind == "zip" and _is_zip(fs, path):
        prefix = (*parts[:-1], archives.archive_stem(parts[-1]))
        yield from _zip_refs(ref, prefix)
    else:
        yield ref


def _is_zip(fs: Any, path: str) -> bool:
    try:
        with fs.open(path, "rb", block_size=ZIP_BLOCK) as f:
            return zipfile.is_zipfile(f)
    except OSError:
        return False


def _zip_refs(ref: UrlRef, prefix: tuple[str, ...]) -> Iterator[InputRef]:
    """The members of a zip object, its central directory read with range requests."""
    try:
        _, index = _open_zip(ref)
    except InputReadError as exc:
        yield dataclasses.replace(ref, problem=str(exc))
        return
    for (name, copy), (_, member) in sorted(
        index.items(), key=lambda item: item[1][0].header_offset
    ):
        if member.problem:
            problem = f"archive member refused: {member.problem}"
            yield dataclasses.replace(ref, member=name, member_parts=(), problem=problem, copy=copy)
        else:
            parts = (*prefix, *name.split("/"))
            yield dataclasses.replace(ref, member=name, member_parts=parts, copy=copy)


_zips: collections.OrderedDict[
    tuple[str, tuple[int, int] | None, int],
    tuple[zipfile.ZipFile, dict[tuple[str, int], tuple[zipfile.ZipInfo, archives.Member]]],
] = collections.OrderedDict()


def _open_zip(
    ref: UrlRef,
) -> tuple[zipfile.ZipFile, dict[tuple[str, int], tuple[zipfile.ZipInfo, archives.Member]]]:
    """An open zip object and its members by name, parsed once per process (keyed by URL,
    version and process id, so forked workers never share a file position)."""
    key = (ref.url, ref.stamp, os.getpid())
    found = _zips.get(key)
    if found is not None:
        _zips.move_to_end(key)
        return found
    fs, path = filesystem(ref.url, ref.storage_options)
    try:
        f = fs.open(path, "rb", block_size=ZIP_BLOCK)
        zf = zipfile.ZipFile(f)
        index = archives.zip_index(zf)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputReadError(f"cannot read the zip archive ({_reason(exc)})") from None
    _zips[key] = (zf, index)
    while len(_zips) > _OPEN_ZIPS:
        _zips.popitem(last=False)[1][0].close()
    return zf, index


def _read_member(ref: UrlRef) -> bytes:
    zf, index = _open_zip(ref)
    entry = index.get((ref.member, ref.copy))
    if entry is None:
        raise InputReadError(f"no member {ref.member} in the archive")
    info, member = entry
    if member.problem:
        raise InputReadError(f"archive member {ref.member}: {member.problem}")
    limit = archives.MAX_MEMBER_BYTES
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise InputReadError(f"cannot read archive member {ref.member} ({_reason(exc)})") from None
    if len(data) > limit:
        raise InputReadError(f"archive member {ref.member} is larger than {limit} bytes")
    return data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _as_url_ref(ref: InputRef) -> UrlRef:
    if not isinstance(ref, UrlRef):
        raise TypeError(f"not an object-store input: {ref.kind}")
    return ref


class UrlSource:
    """An object read with one GET in the worker (after a ranged sniff if it is large)."""

    kind = InputKind.URL

    def open(self, ref: InputRef) -> bytes | str:
        ref = _as_url_ref(ref)
        fs, path = filesystem(ref.url, ref.storage_options)
        try:
            size = ref.stamp[0] if ref.stamp is not None else int(fs.info(path)["size"])
            if size > SNIFF_ABOVE and not looks_like_dicom(
                fs.cat_file(path, start=0, end=SNIFF_BYTES)
            ):
                raise NotDicomError("not a DICOM file")
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            raise InputReadError("cannot read the object (not found)") from None
        except OSError as exc:
            raise InputReadError(f"cannot read the object ({_reason(exc)})") from None

    def fingerprint(self, ref: InputRef) -> tuple[int, int] | None:
        ref = _as_url_ref(ref)
        if ref.stamp is not None:
            return ref.stamp
        try:
            fs, path = filesystem(ref.url, ref.storage_options)
            return version_stamp(fs.info(path))
        except OSError:
            return None


class UrlMemberSource(UrlSource):
    """A member of a zip object, read with range requests; its fingerprint is the zip's."""

    kind = InputKind.URL_MEMBER

    def open(self, ref: InputRef) -> bytes | str:
        return _read_member(_as_url_ref(ref))


@contextlib.contextmanager
def header_source(ref: InputRef) -> Iterator[bytes | IO[bytes]]:
    """What a header-only read of an object input reads from: a file opened with a small
    block size (a few range requests, never the whole object), or a zip member's bytes."""
    ref = _as_url_ref(ref)
    if ref.member:
        yield _read_member(ref)
        return
    fs, path = filesystem(ref.url, ref.storage_options)
    kwargs: dict[str, Any] = {"block_size": HEADER_BLOCK, "cache_type": "readahead"}
    if ref.stamp is not None and "s3" in _protocols(fs):
        kwargs["size"] = ref.stamp[0]  # no HEAD before the first range request
    try:
        f = fs.open(path, "rb", **kwargs)
    except FileNotFoundError:
        raise InputReadError("cannot read the object (not found)") from None
    except OSError as exc:
        raise InputReadError(f"cannot read the object ({_reason(exc)})") from None
    with f:
        yield f


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def count_url(url: str, storage_options: dict[str, Any] | None, exclude: Iterable[str]) -> int:
    """How many objects `discover_url` will list (for a progress bar's total)."""
    fs, root = filesystem(url, dict(storage_options or {}))
    skip = {filesystem(e, dict(storage_options or {}))[1] for e in exclude if is_url(e)}
    return sum(1 for _ in _walk(fs, root, skip))
