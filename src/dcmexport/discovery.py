"""Find input files: files and folders (recursive) in any mix, streamed in a stable order.

Nothing here opens a file: whether something is DICOM is decided by content when it is read,
so every file found gets a manifest row (converted, skipped with a reason, or an error).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UsageError


@dataclasses.dataclass(frozen=True)
class Found:
    """A file to convert; `root` is the input folder it was found under (None if given)."""

    path: Path
    root: Path | None = None


def discover(
    inputs: Iterable[str | os.PathLike[str]], exclude: Iterable[Path] = ()
) -> Iterator[Found]:
    """Yield every file under `inputs`, sorted per folder, skipping anything under `exclude`.

    Folders are walked lazily (a million files never sit in memory at once); symlinked
    folders are not followed, so a link loop cannot trap the walk. A missing input is a
    `UsageError`.
    """
    excluded = [p.resolve() for p in exclude]
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from _walk(path, excluded)
        elif path.is_file():
            yield Found(path)
        else:
            raise UsageError(f"input not found: {path}")


def _walk(root: Path, excluded: list[Path]) -> Iterator[Found]:
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        resolved = here.resolve()
        if any(resolved == ex or ex in resolved.parents for ex in excluded):
            dirnames.clear()
            continue
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            if path.is_file():
                yield Found(path, root)
