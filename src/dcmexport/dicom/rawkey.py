"""Caches keyed on the raw bytes of a dataset's elements, for what a series repeats.

The slices of a series share their Image Pixel module, rescale, windows and limits; working
those out through pydicom's attribute access costs more per slice than applying the lookup
table. A key is the raw (VR, bytes) of every element a computation reads, plus the
dataset's encoding: a slice whose bytes match reuses the answer. Elements pydicom (or a
check) has already converted count only when their value is exactly the file's (strings and
integers); anything else gives no key, and the caller computes as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

T = TypeVar("T")

CACHE_SIZE = 256  # distinct series (or window changes) remembered per worker

#: VRs whose converted values are exactly what the file says (no number parsing): pydicom
#: converts Specific Character Set on reading, the limit checks the Image Pixel counts.
_EXACT_VRS = frozenset(("CS", "US", "SS", "UL", "SL"))


def raw_key(ds: Dataset, tags: tuple[BaseTag, ...]) -> tuple[Any, ...] | None:
    """The raw (VR, bytes) of each element, None for an absent one; None overall when one has
    already been converted or changed (then its bytes may not be what it holds)."""
    elements = ds._dict
    key: list[Any] = [getattr(ds, "original_encoding", None)]
    for tag in tags:
        element = elements.get(tag)
        if element is None:
            key.append(None)
        elif isinstance(element, RawDataElement):
            key.append((element.VR, element.value))
        elif element.VR in _EXACT_VRS and (value := _exact(element.value)) is not None:
            key.append((element.VR, "value", value))  # converted already (pydicom, limits)
        else:
            return None
    return tuple(key)


def _exact(value: object) -> tuple[object, ...] | None:
    """A converted value as a hashable key: strings and ints only (else None)."""
    items: tuple[object, ...] = (
        tuple(value) if isinstance(value, (list, tuple, MultiValue)) else (value,)
    )
    return items if all(type(v) in (str, int) for v in items) else None


def cached(cache: dict[Hashable, T], key: Hashable | None, make: Callable[[], T]) -> T:
    """`make()`, remembered in `cache` under `key` (None: not cacheable, always made). A
    `make` that raises caches nothing."""
    if key is None:
        return make()
    found = cache.get(key)
    if found is None:
        found = make()
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = found
    return found
