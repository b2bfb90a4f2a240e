"""What every output store offers the engine and the exporters: the `Store` protocol.

An output goes to a local folder (`LocalStore`) or to an object store (`ObjectStore`: S3,
GCS, Azure or any fsspec URL). Either way an output appears under its final name whole or
not at all, nothing is written outside OUT, and dcmexport's own files (resume state, lock,
temporary files) live in a local folder. Imports nothing of ours but `errors`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

#: A URL as fsspec reads it: a scheme of two or more letters, then ``://`` (a Windows
#: drive letter is one letter, so ``C://x`` stays a path).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
#: Schemes that name a server rather than storage (DICOMweb, DIMSE): never an fsspec URL.
SERVER_SCHEMES = frozenset({"http", "https", "dicom"})


def url_scheme(text: str | os.PathLike[str]) -> str | None:
    """The scheme of an object-store URL (``s3``, ``gs``, ``memory``...), else None."""
    if not isinstance(text, str):
        return None
    match = _URL.match(text)
    if match is None or match.group(1).lower() in SERVER_SCHEMES:
        return None
    return match.group(1).lower()


def is_url(text: str | os.PathLike[str]) -> bool:
    """True for an object-store URL (``s3://bucket/prefix/``), False for a local path."""
    return url_scheme(text) is not None


class Store(Protocol):
    """Where the outputs of one run go. Picklable: the same store travels to every worker.

    Paths handed in (`rel`) are relative to OUT with forward slashes; anything that would
    leave OUT raises `OutsideOutputError`. `put` and `open_atomic` are the only ways to
    write, and neither ever leaves a partial output under its final name.
    """

    @property
    def location(self) -> str:
        """OUT as messages name it (a path or a URL; never credentials)."""
        ...

    @property
    def state_dir(self) -> Path:
        """A local folder for dcmexport's own files: resume state and the lock."""
        ...

    @property
    def temp_dir(self) -> Path:
        """A local folder for temporary files (cleared at the start of a run)."""
        ...

    def clear_temp(self) -> None:
        """Remove what a killed run left half-written."""
        ...

    def put(self, rel: PurePosixPath | str, data: bytes) -> str:
        """Write one output whole; its name relative to OUT, as the manifest records it."""
        ...

    def open_atomic(self, rel: PurePosixPath | str) -> contextlib.AbstractContextManager[Path]:
        """A local temporary file to stream an output into (video); in place when the block
        succeeds, dropped when it fails."""
        ...

    def output_name(self, rel: PurePosixPath | str) -> str:
        """The manifest's name for `rel`, refused if it would leave OUT."""
        ...

    def stat(self, rel: str) -> tuple[int, int] | None:
        """A pair that changes when the output is replaced, or None if it does not exist."""
        ...

    def remove(self, rel: str) -> None:
        """Delete an output (an orphan of an earlier run); missing is fine."""
        ...

    def for_workers(self) -> Store:
        """The store as workers get it (independent of this process' working folder)."""
        ...


def cache_home() -> Path:
    """The user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def default_state_dir(url: str) -> Path:
    """The local state folder of an object-store OUT: named after a hash of its URL, so
    every run into the same OUT finds the same state (and no two OUTs share one)."""
    canonical = url.rstrip("/")
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    scheme = url_scheme(url) or "url"
    return cache_home() / "dcmexport" / f"{scheme}-{digest}"


def store_for(
    output: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Store:
    """The store for `output`: an `ObjectStore` for a URL (``file://`` is a local folder),
    else a `LocalStore`. `state_dir` overrides where the resume state is kept."""
    from .local import LocalStore

    scheme = url_scheme(output)
    if scheme is None or scheme == "file":
        root = str(output)[len("file://") :] if scheme == "file" else output
        return LocalStore(root, state_dir=state_dir)
    from .objectstore import ObjectStore

    return ObjectStore(str(output), storage_options, state_dir=state_dir)
