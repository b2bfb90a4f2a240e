"""Where inputs come from: files, folders, archives, DICOMDIR sets, object storage (fsspec
URLs), DICOMweb and DIMSE servers.

`discover` turns the user's inputs into `InputRef`s; the registry `SOURCES` says how each
kind of reference is opened and fingerprinted. Sources hand over raw names: naming
sanitises them. Never imports render, exporters, engine, index or report.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from .base import InputKind, InputRef, Source, as_server_input
from .discovery import count_files, discover
from .files import FileSource, MemberSource

if TYPE_CHECKING:
    from .remote import ServerSource
    from .servers import ServerInput
    from .urls import UrlMemberSource, UrlRef, UrlSource, discover_url, header_source

#: Sources made on first use, so that their modules (and the client libraries those import)
#: load only for a run that meets such an input: kind -> class (its module: `_LATER_NAMES`).
_LATER = {
    InputKind.SERVER: "ServerSource",
    InputKind.URL: "UrlSource",
    InputKind.URL_MEMBER: "UrlMemberSource",
}
#: Names this package offers from those modules (PEP 562): name -> module.
_LATER_NAMES = {
    "ServerSource": "remote",
    "ServerInput": "servers",
    "UrlMemberSource": "urls",
    "UrlRef": "urls",
    "UrlSource": "urls",
    "discover_url": "urls",
    "header_source": "urls",
}


class _Sources(dict[InputKind, Source]):
    """The source registry: a kind's source, made when first asked for (`_LATER`)."""

    def __missing__(self, kind: InputKind) -> Source:
        source: Source = __getattr__(_LATER[kind])()
        self[kind] = source
        return source


#: How each kind of input is read; a new kind of source registers here.
SOURCES: dict[InputKind, Source] = _Sources(
    {InputKind.FILE: FileSource(), InputKind.MEMBER: MemberSource()}
)


def __getattr__(name: str) -> Any:
    module = _LATER_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def open_input(ref: InputRef) -> bytes | str:
    """The input's bytes, or a local path to read it from."""
    return SOURCES[ref.kind].open(ref)


@contextlib.contextmanager
def prefetched(refs: Sequence[InputRef]) -> Iterator[None]:
    """Let each source fetch a chunk's inputs together before they are opened one by one
    (a source with a `prefetch(refs)` / `release(refs)` pair: DIMSE servers)."""
    kinds = dict.fromkeys(ref.kind for ref in refs)  # in the chunk's order
    hooked = [
        (SOURCES[kind], [ref for ref in refs if ref.kind is kind])
        for kind in kinds
        if hasattr(SOURCES[kind], "prefetch")
    ]
    try:
        for source, mine in hooked:
            source.prefetch(mine)  # type: ignore[attr-defined]
        yield
    finally:
        for source, mine in hooked:
            source.release(mine)  # type: ignore[attr-defined]


@contextlib.contextmanager
def open_header(ref: InputRef) -> Iterator[bytes | str | IO[bytes]]:
    """What a header-only read of the input reads from: as `open_input`, except that an
    object in object storage is opened with a small block size (never fetched whole)."""
    if ref.kind in (InputKind.URL, InputKind.URL_MEMBER):
        from .urls import header_source

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
    "ServerSource",
    "Source",
    "UrlMemberSource",
    "UrlRef",
    "UrlSource",
    "as_server_input",
    "count_files",
    "discover",
    "discover_url",
    "fingerprint",
    "header_source",
    "open_header",
    "open_input",
    "prefetched",
]
