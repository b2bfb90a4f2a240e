"""An output folder in object storage (S3, GCS, Azure, MinIO, any fsspec URL).

Object stores have no rename, so nothing is staged under a final key: every output is ONE
upload to its final key (a single PUT; for a large video s3fs's multipart upload, whose
parts become visible only when it completes). A reader therefore sees an output whole or
not at all, as with `LocalStore`'s rename. Keys never leave the prefix: a relative path
with an empty, ``.`` or ``..`` part, a backslash or a NUL is refused, and keys are always
joined under the one bucket and prefix of the URL.

The resume state and the lock stay on local disk (SQLite needs a file system; an object
store has no locks): `--state-dir`, by default a cache folder named after the URL. The lock
therefore keeps two runs on one machine apart, not two machines writing one prefix.

The store pickles as its URL, storage options and state folder: a worker opens its own
fsspec file system (no client or connection is ever pickled). Credentials in the storage
options are never part of its `repr`, `location` or any message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import OutsideOutputError, UsageError
from .base import default_state_dir, url_scheme

log = logging.getLogger(__name__)

#: Parts a key may never have (they climb out of, or hide in, the prefix).
_BAD_PARTS = frozenset({"", ".", ".."})


def filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """The fsspec file system for `url` and the path inside it (bucket/prefix, no scheme).

    `UsageError` when fsspec or the scheme's package is missing, with what to install.
    """
    try:
        import fsspec
    except ImportError:
        scheme = url_scheme(url)
        raise UsageError(f"{scheme}:// needs fsspec: pip install 'dcmexport[s3]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        raise UsageError(
            f"{url_scheme(url)}:// needs a package fsspec could not import ({exc.name}): "
            "pip install 'dcmexport[s3]' for s3://"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot use {redact(url)} ({type(exc).__name__})") from None
    return fs, str(path).rstrip("/")


def redact(url: str) -> str:
    """`url` without a ``user:password@`` part (a URL may carry credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, slash, tail = rest.partition("/")
    return f"{scheme}://{head.rpartition('@')[2]}{slash}{tail}"


def checked_key(rel: PurePosixPath | str) -> str:
    """`rel` as a key below the prefix; `OutsideOutputError` if it could leave it."""
    text = str(rel)
    parts = text.split("/")
    if "\\" in text or "\x00" in text or any(part in _BAD_PARTS for part in parts):
        raise OutsideOutputError(f"refusing to write outside the output prefix: {text!r}")
    return text


def version_stamp(info: dict[str, Any]) -> tuple[int, int]:
    """(size, a number from the ETag or modification time) of an object's listing entry or
    HEAD: the pair changes when the object is replaced."""
    size = int(info.get("size") or info.get("Size") or 0)
    tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
    text = str(tag if tag is not None else "").strip('"')
    return size, int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


class ObjectStore:
    """An output prefix in object storage; see the module docstring for the guarantees."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.storage_options = dict(storage_options or {})
        self._state_dir = Path(state_dir) if state_dir is not None else default_state_dir(url)
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:  # never the storage options: they may hold credentials
        return f"ObjectStore({self.location!r})"

    def __getstate__(self) -> dict[str, object]:
        return {"url": self.url, "options": self.storage_options, "state": self._state_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url = state["url"]
        self.storage_options = state["options"]
        self._state_dir = state["state"]
        self._fs = None
        self._root = ""

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def temp_dir(self) -> Path:
        return self._state_dir / "tmp"

    def clear_temp(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def for_workers(self) -> ObjectStore:
        return self

    @property
    def fs(self) -> Any:
        """This process' fsspec file system (opened on first use, never pickled)."""
        if self._fs is None:
            self._fs, self._root = filesystem(self.url, self.storage_options)
        return self._fs

    def _key(self, rel: PurePosixPath | str) -> str:
        """The full path (bucket/prefix/rel) of an output; `rel` checked first."""
        checked = checked_key(rel)
        if self._fs is None:
            self._fs, self._root = filesystem(self.url, self.storage_options)
        return f"{self._root}/{checked}" if self._root else checked

    def output_name(self, rel: PurePosixPath | str) -> str:
        return checked_key(rel)

    def put(self, rel: PurePosixPath | str, data: bytes) -> str:
        """One upload to the final key (s3fs: a PUT, or a multipart upload past 100 MB)."""
        key = self._key(rel)
        self.fs.pipe_file(key, data)
        return checked_key(rel)

    @contextlib.contextmanager
    def open_atomic(self, rel: PurePosixPath | str) -> Iterator[Path]:
        """A local temporary file to fill; uploaded to its final key (one PUT, or multipart
        for a large video) when the block succeeds, never otherwise."""
        key = self._key(rel)
        fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=PurePosixPath(str(rel)).suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            self.fs.put_file(str(tmp), key)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def stat(self, rel: str) -> tuple[int, int] | None:
        """(size, ETag digest) of an output from a HEAD, or None if there is none."""
        try:
            key = self._key(rel)
            self.fs.invalidate_cache(key)
            info = self.fs.info(key)
        except (FileNotFoundError, OutsideOutputError):
            return None
        if info.get("type") == "directory":
            return None
        return version_stamp(info)

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError, OutsideOutputError):
            self.fs.rm_file(self._key(rel))
