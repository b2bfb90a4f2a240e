"""Where outputs go: mirror naming (CONTRACT.md), collision suffixes, and the OUT boundary."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .errors import OutsideOutputError

if TYPE_CHECKING:
    from .discovery import Found

#: Extensions stripped from input names; any other name is kept whole (`1.2.3` → `1.2.3.png`).
STRIPPED_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})


def mirror_base(found: Found) -> PurePosixPath:
    """The output path, relative to OUT and without extension, that mirrors an input."""
    if found.rel is not None:
        rel = found.rel
    elif found.root:
        rel = found.path.relative_to(found.root)
    else:
        rel = PurePosixPath(found.path.name)
    rel = PurePosixPath(*Path(rel).parts)
    if rel.suffix.lower() in STRIPPED_SUFFIXES:
        rel = rel.with_suffix("")
    return rel


class NameRegistry:
    """Hands out output bases so that two inputs never write to one name.

    A base claims its own name and everything below it (multi-frame stills go in a folder
    named after the base), compared case-insensitively so the result survives a copy to a
    case-insensitive file system. A later claim that overlaps gets `_2`, `_3`, ... on the
    part that collides: the file name, or the folder that is already another input's base
    (`x.dcm` and `x/y.dcm` become `x.png` and `x_2/y.png`). The manifest and dcmexport's
    own folder are reserved.
    """

    RESERVED = ("manifest.csv", ".dcmexport")

    def __init__(self) -> None:
        self._bases: set[str] = {name.casefold() for name in self.RESERVED}
        self._prefixes: set[str] = set()

    def _conflict(self, parts: list[str]) -> int | None:
        """The index of the first part that collides with an earlier claim, or None."""
        keys = ["/".join(parts[: i + 1]).casefold() for i in range(len(parts))]
        for i, key in enumerate(keys[:-1]):
            if key in self._bases:
                return i
        if keys[-1] in self._bases or keys[-1] in self._prefixes:
            return len(parts) - 1
        return None

    def claim(self, base: PurePosixPath) -> tuple[PurePosixPath, str]:
        """A free base derived from `base`, and a note for the manifest if it had to change."""
        original = list(base.parts)
        parts = list(original)
        counters: dict[int, int] = {}
        while (index := self._conflict(parts)) is not None:
            counters[index] = counters.get(index, 1) + 1
            parts[index] = f"{original[index]}_{counters[index]}"
        candidate = PurePosixPath(*parts)
        key = str(candidate).casefold()
        self._bases.add(key)
        key_parts = key.split("/")
        self._prefixes.update("/".join(key_parts[:i]) for i in range(1, len(key_parts)))
        note = "" if parts == original else f"name collision: {base} taken, wrote {candidate}"
        return candidate, note


def inside_output(out_root: Path, rel: PurePosixPath | str) -> Path:
    """`out_root / rel`, refusing any path that resolves outside `out_root` (links included)."""
    root = out_root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise OutsideOutputError(f"refusing to write outside the output folder: {rel}")
    return target


def relative_to_output(out_root: Path, path: Path) -> str:
    """A written path as the manifest records it: relative to OUT, with forward slashes."""
    return Path(os.path.relpath(path, out_root.resolve())).as_posix()
