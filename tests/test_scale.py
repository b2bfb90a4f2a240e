"""The run's per-input sets kept off the heap (engine.scratch) and the streamed manifest give
exactly what the in-memory versions gave (benchmarks/scaling.py measures the memory)."""

from __future__ import annotations

import random
from pathlib import Path, PurePosixPath

import pytest

from dcmexport.engine.plan import first_time_in_memory
from dcmexport.engine.scratch import Scratch
from dcmexport.manifest import Kind, ManifestRow, Status, manifest_bytes, write_manifest_file
from dcmexport.naming import MemoryClaims, NameRegistry


class ReferenceRegistry:
    """`NameRegistry` as it was before its names moved behind `ClaimedNames` (two sets):
    the oracle that the refactored registry hands out the very same names."""

    def __init__(self) -> None:
        self._bases = {name.casefold() for name in NameRegistry.RESERVED}
        self._prefixes: set[str] = set()

    def _conflict(self, parts: list[str]) -> int | None:
        keys = ["/".join(parts[: i + 1]).casefold() for i in range(len(parts))]
        for i, key in enumerate(keys[:-1]):
            if key in self._bases:
                return i
        if keys[-1] in self._bases or keys[-1] in self._prefixes:
            return len(parts) - 1
        return None

    def claim(self, base: PurePosixPath) -> tuple[PurePosixPath, str]:
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


def _colliding_bases(seed: int, count: int) -> list[PurePosixPath]:
    """Bases drawn from a tiny alphabet, so they collide every way: same name, other case,
    a base that is another's folder and the reverse, ß (casefolds to ss), reserved names."""
    rng = random.Random(seed)
    names = ["x", "X", "y", "x_2", "ss", "ß", "Manifest.csv", ".dcmexport", "a", "\udcff", "\udcfe"]
    return [
        PurePosixPath(*(rng.choice(names) for _ in range(rng.randint(1, 3)))) for _ in range(count)
    ]


@pytest.mark.parametrize("seed", range(4))
def test_registry_names_are_the_same_in_memory_in_sqlite_and_as_before(seed: int) -> None:
    bases = _colliding_bases(seed, 400)
    reference = ReferenceRegistry()
    memory = NameRegistry(MemoryClaims())
    with Scratch() as scratch:
        on_disk = NameRegistry(scratch.claims())
        for base in bases:
            expected = reference.claim(base)
            assert memory.claim(base) == expected
            assert on_disk.claim(base) == expected


def test_registry_documented_collisions() -> None:
    with Scratch() as scratch:
        registry = NameRegistry(scratch.claims())
        assert registry.claim(PurePosixPath("x"))[0] == PurePosixPath("x")
        assert registry.claim(PurePosixPath("x/y"))[0] == PurePosixPath("x_2/y")
        # case-insensitive: X is x, and x_2 is already the folder of x/y
        assert registry.claim(PurePosixPath("X"))[0] == PurePosixPath("X_3")
        assert registry.claim(PurePosixPath("manifest.csv"))[0] == PurePosixPath("manifest.csv_2")


def test_seen_keys_match_a_set() -> None:
    # a NUL (a repeated archive member's copy), undecodable bytes of a file name (surrogates)
    odd = [
        "/in/a\x002",
        "/in/a",
        "/in/\udcff.dcm",
        "/in/\udcfe.dcm",
        "/in/\ud800",
        "/in/\udcff.dcm",
    ]
    keys = [f"/in/{k % 37}.dcm" for k in range(200)] + odd
    in_memory = first_time_in_memory()
    with Scratch() as scratch:
        on_disk = scratch.seen().first_time
        assert [on_disk(k) for k in keys] == [in_memory(k) for k in keys]


def test_streamed_manifest_is_byte_identical(tmp_path: Path) -> None:
    rows = [
        ManifestRow("a.dcm", None, "a.png", Status.OK, window_center=40.0, kind=Kind.IMAGE),
        ManifestRow("b\udcff.dcm", 3, "b/3.png", Status.OK, rescale_slope=0.1, kind=Kind.IMAGE),
        ManifestRow("c.dcm", status=Status.ERROR, error='bad "value"\rline, two\nlines'),
        ManifestRow("d é.dcm", status=Status.SKIPPED, note="not an image"),
    ]
    path = tmp_path / "manifest.csv"
    write_manifest_file(path, iter(rows))
    assert path.read_bytes() == manifest_bytes(rows)
