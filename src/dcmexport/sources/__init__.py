"""Where inputs come from: files, folders, archives, DICOMDIR sets, DICOMweb and DIMSE servers.

`discover` turns the user's inputs into `InputRef`s; the registry `SOURCES` says how each
kind of reference is opened and fingerprinted. Sources hand over raw names: naming
sanitises them. Never imports render, exporters, engine, index or report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from .base import InputKind, InputRef, Source
from .discovery import count_files, discover
from .files import FileSource, MemberSource
from .remote import ServerSource
from .servers import ServerInput, as_server_input

#: How each kind of input is read; a new kind of source registers here.
SOURCES: dict[InputKind, Source] = {
    InputKind.FILE: FileSource(),
    InputKind.MEMBER: MemberSource(),
    InputKind.SERVER: ServerSource(),
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


def fingerprint(ref: InputRef) -> tuple[int, int] | None:
    """What changes when the input does (size and modification time for files)."""
    return SOURCES[ref.kind].fingerprint(ref)


__all__ = [
    "SOURCES",
    "InputKind",
    "InputRef",
    "ServerInput",
    "Source",
    "as_server_input",
    "count_files",
    "discover",
    "fingerprint",
    "open_input",
    "prefetched",
]
