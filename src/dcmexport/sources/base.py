"""What a source hands the engine: `InputRef`s, and the `Source` protocol that reads them.

A source knows where inputs come from (a folder, an archive, later a server or a bucket);
the engine only ever calls `open_input` and `fingerprint` on a reference, so a new kind of
input plugs in by registering a `Source`, without the engine or the exporters changing.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .servers import ServerInput

#: How a server input begins (`servers.is_server`); anything else is a path or a URL.
SERVER_SCHEMES = ("http://", "https://", "dicom://")


class InputKind(str, enum.Enum):
    """How an input is stored: the key of the source registry."""

    FILE = "file"  # a file on a local or mounted file system
    MEMBER = "member"  # a member of a zip or tar archive on such a file system
    SERVER = "server"  # an instance on a DICOMweb or DIMSE server, fetched by the worker
    URL = "url"  # an object in object storage (s3://, gs://, any fsspec URL)
    URL_MEMBER = "url-member"  # a member of a zip object in object storage


@dataclasses.dataclass(frozen=True)
class InputRef:
    """One input to convert, as a source found it; small and picklable.

    `path` is the file (or, for an archive member, the archive); `root` the input folder it
    was found under (None if given directly). `prefix` and `member_parts` say where it mirrors
    to: `prefix` are trusted local names (the archive's folder and stem), `member_parts` the
    member's own raw name parts, which naming sanitises. `data` holds a tar member's bytes;
    `problem` makes it an error row without a read. `copy` tells apart the members of an
    archive that repeats a name (zip and tar allow it): 1 for the first, 2 for the next...
    """

    path: Path
    root: Path | None = None
    member: str = ""
    prefix: tuple[str, ...] = ()
    member_parts: tuple[str, ...] = ()
    data: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    problem: str = ""
    #: a server instance: the server's URL without credentials (they stay in the source's
    #: configuration), and (Study, Series, SOP Instance, SOP Class UID)
    server: str = ""
    uids: tuple[str, ...] = ()
    copy: int = 1

    @property
    def kind(self) -> InputKind:
        if self.server:
            return InputKind.SERVER
        return InputKind.MEMBER if self.member else InputKind.FILE

    @property
    def source(self) -> str:
        """The input as the manifest names it: a path, ``archive/member``, or a server
        instance's WADO-RS style URL (``SERVER/studies/S/series/SE/instances/I``)."""
        if self.server:
            study, series, instance = (*self.uids, "", "", "")[:3]
            return f"{self.server}/studies/{study}/series/{series}/instances/{instance}"
        if self.member:
            return f"{self.path}/{self.member}{copy_suffix(self.copy)}"
        return str(self.path)

    @property
    def key(self) -> str:
        """What tells this input from every other: its `source`, and for a later copy of a
        repeated archive member also the copy's number after a NUL (no path holds one), so a
        member really named ``a.dcm (copy 2)`` is never taken for the second ``a.dcm``."""
        return f"{self.source}\x00{self.copy}" if self.copy > 1 else self.source

    @property
    def name(self) -> str:
        """The input's own file name (for ``{stem}``); a server instance's SOP Instance UID."""
        if self.server:
            return f"{self.uids[2]}.dcm"
        return PurePosixPath(self.member).name if self.member else self.path.name

    @property
    def trusted_parts(self) -> tuple[str, ...]:
        """Path components below the input folder that are real local names; for a server
        instance its checked UIDs (digits and dots): PHI-free ``Study/Series/SOPInstance``."""
        if self.server:
            return (self.uids[0], self.uids[1], f"{self.uids[2]}.dcm")
        if self.member:
            return self.prefix
        if self.root is not None:
            # per input in the main process: text, as `relative_to(root).parts` gives it
            # (both are Paths: no empty or "." components below a root such as "/" or "//")
            path, folder = os.fspath(self.path), os.fspath(self.root)
            folder = folder if folder.endswith(os.sep) else folder + os.sep
            if path.startswith(folder) and len(path) > len(folder):
                return tuple(path[len(folder) :].split(os.sep))
            return self.path.relative_to(self.root).parts
        return (self.path.name,)

    def absolute(self) -> InputRef:
        """The same input with an absolute path (a Dask worker's working folder is not ours);
        itself when its path already is (discovery under an absolute folder)."""
        if self.server:
            return self
        path = os.fspath(self.path)
        absolute = os.path.abspath(path)
        return self if absolute == path else dataclasses.replace(self, path=Path(absolute))


def copy_suffix(copy: int) -> str:
    """How a source names a later member of a repeated name: `` (copy 2)``; nothing for
    the first."""
    return f" (copy {copy})" if copy > 1 else ""


class Source(Protocol):
    """Reads the inputs of one `InputKind`.

    A source may also have ``prefetch(refs)`` and ``release(refs)``: the engine calls them
    around a chunk of inputs (`sources.prefetched`), so a server can be asked once per chunk.
    """

    kind: InputKind

    def open(self, ref: InputRef) -> bytes | str:
        """The input's bytes, or a local path to read it from (large pixel data streams)."""
        ...

    def fingerprint(self, ref: InputRef) -> tuple[int, int] | None:
        """(size, mtime_ns) or another pair that changes when the input does; None if unknown."""
        ...


def as_server_input(item: object) -> ServerInput | None:
    """`item` as a `servers.ServerInput` if it names a server, else None (a path or a URL).

    The servers' module (and what it imports) loads only for an input that can name one:
    a string with a server's scheme, or an object that is not a path.
    """
    if isinstance(item, str):
        if not item.lower().startswith(SERVER_SCHEMES):
            return None
    elif isinstance(item, os.PathLike):
        return None
    from .servers import as_server_input as named

    return named(item)
