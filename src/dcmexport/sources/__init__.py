"""Where inputs come from: files, folders, archives, DICOMDIR sets, object storage (fsspec
URLs), DICOMweb and DIMSE servers.

`discover` turns the user's inputs into `InputRef`s; the registry `SOURCES` says how each
kind of reference is opened and fingerprinted. Sources hand over raw names: naming
sanitises them. Never imports render, exporters, engine, index or report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import IO

from .base import InputKind, InputRef, Source
from .discovery import count_files, discover
from .files import FileSource, MemberSource
from .remote import ServerSource
from .servers import ServerInput, as_server_input
from .urls import UrlMemberSource, UrlRef, UrlSource, discover_url, header_source

#: How each kind of input is read; a new kind of source registers here.
SOURCES: dict[InputKind, Source] = {
    InputKind.FILE: FileSource(),
    InputKind.MEMBER: MemberSource(),
    InputKind.SERVER: ServerSource(),
    InputKind.URL: UrlSource(),
    InputKind.URL_MEMBER: UrlMemberSource(),
}


def open_input(ref: InputRef) -> bytes | str:
    """The input's bytes, or a local path to read it from."""
    return SOURCES[ref.kind].open(ref)


@contextlib.contextmanager
def prefetched(refs: Sequence[InputRef]) -> Iterator[None]:
    """Let each source fetch a chunk's inputs together before they are opened one by one
    (a source with a `prefetch(refs)` / `release(refs)` pair: DIMSE servers)."""
    hooked = [
        (source, [ref for ref in refs if ref.kind is kind])
        for kind, source in SOURCES.items()
        if hasattr(source, "prefetch") and any(ref.kind is kind for ref in refs)
    ]
    try:
        for source, mine in hooked:
            source.prefetch(mine)
        yield
    finally:
        for source, mine in hooked:
            source.release(mine)  # type: ignore[attr-defined]


@contextlib.contextmanager
def open_header(ref: InputRef) -> Iterator[bytes | str | IO[bytes]]:
    """What a header-only read of the input reads from: as `open_input`, except that an
    object in object storage is opened with a small block size (never fetched whole)."""
    if isinstance(ref, UrlRef):
        with header_source(ref) as source:
            yield source
    else:
        yield open_input(ref)


def fingerprint(ref: InputRef) -> tuple[int, int] | None:
    """What changes when the input does (size and modification time for files)."""
    return SOURCES[ref.kind].fingerprint(ref)


__all__ = [
    "SOURCES",
    "InputKind",
    "InputRef",
    "ServerInput",
    "Source",
    "UrlRef",
    "as_server_input",
    "count_files",
    "discover",
    "discover_url",
    "fingerprint",
    "open_header",
    "open_input",
    "prefetched",
]
