"""Find input files: files and folders (recursive) in any mix, streamed in a stable order.

Nothing here opens a file: whether something is DICOM is decided by content when it is read,
so every file found gets a manifest row (converted, skipped with a reason, or an error).
Folders are read with `os.scandir`, whose entries know their type without a `stat` per file,
and walked lazily: a million files never sit in memory at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UsageError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Found:
    """A file to convert; `root` is the input folder it was found under (None if given)."""

    path: Path
    root: Path | None = None


def discover(
    inputs: Iterable[str | os.PathLike[str]], exclude: Iterable[Path] = ()
) -> Iterator[Found]:
    """Yield every file under `inputs`, sorted by name per folder, skipping `exclude` folders.

    Symlinked folders are not followed, so a link loop cannot trap the walk; symlinked files
    are. A missing input is a `UsageError`.
    """
    excluded = {p.resolve() for p in exclude}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for file_path in _walk(path, excluded):
                yield Found(file_path, path)
        elif path.is_file():
            yield Found(path)
        else:
            raise UsageError(f"input not found: {path}")


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text (for SQLite, Parquet, messages): bytes of a file name that
    are not UTF-8 (surrogates in Python) are spelled out as backslash escapes."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def count_files(inputs: Iterable[str | os.PathLike[str]], exclude: Iterable[Path] = ()) -> int:
    """How many files `discover` will yield (for a progress bar's total), without keeping them."""
    excluded = {p.resolve() for p in exclude}
    total = 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            total += sum(1 for _ in _walk(path, excluded))
        elif path.is_file():
            total += 1
    return total


def _walk(root: Path, excluded: set[Path]) -> Iterator[Path]:
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
                yield from _walk(Path(entry.path), excluded)
            elif entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue
