"""A file's metadata for ``dcmexport info``: text dump, selected tags, search and DICOM JSON.

Pure functions over a pydicom `Dataset` (read it with `decoding.read_dataset`); the CLI prints.
Every walk fetches elements one at a time and falls back to the raw bytes when pydicom cannot
convert one (a broken value must not hide the rest of the file), and it never reads a value
that `read_dataset` left on disk unless that value is to be shown.

The JSON is the DICOM JSON Model (PS3.18 F.2) as DCMTK's ``dcm2json`` writes it, except where
noted in `to_json_model`; ``tests/test_metadata.py`` compares the two element by element.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.datadict import (
    dictionary_VR,
    private_dictionary_description,
)
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID
from pydicom.valuerep import STANDARD_VR

from .decoding import transfer_syntax
from .tags import parse_tag

log = logging.getLogger(__name__)

__all__ = [
    "BULK_VRS",
    "PIXEL_DATA_TAGS",
    "dump_lines",
    "element_lines",
    "find_elements",
    "format_value",
    "parse_tag",
    "select_elements",
    "to_json_model",
]

#: VRs whose values are bulk data in the JSON Model (InlineBinary / BulkDataURI).
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Pixel Data, Float Pixel Data and Double Float Pixel Data: bulk data whatever their VR.
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

#: Bytes per word of the binary VRs, to give InlineBinary in little endian as PS3.18 F.2.7 wants.
_WORD_SIZES = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
#: VRs that are JSON Numbers in the JSON Model (PS3.18 Table F.2.3-1).
_INTEGER_VRS = frozenset({"SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
#: Text VRs whose leading spaces are padding, not content (PS3.5 Table 6.2-1).
_LEADING_SPACE_PADDED = frozenset({"AE", "CS", "LO", "SH"})
_MAX_EXACT_JSON_INTEGER = 2**53
_MAX_DS_LENGTH = 16  # bytes, PS3.5 Table 6.2-1
#: VRs whose values the dump shows without quotes.
_UNQUOTED_VRS = _INTEGER_VRS | _FLOAT_VRS | {"AT", "IS", "DS"}
#: The VR an element keeps when pydicom could not resolve an ambiguous one (no Pixel
#: Representation / Bits Allocated in reach): the first choice the standard lists.
_AMBIGUOUS_VR_FALLBACK = {
    "OB or OW": "OB",
    "US or SS": "US",
    "US or OW": "US",
    "US or SS or OW": "OW",
}
#: "OB or OW" elements that are OW in implicit VR (PS3.5 A.1): pixel, overlay, waveform data.
_IMPLICIT_OW = frozenset({0x7FE00010, 0x54001010})
#: LUT Descriptors: entries and bit depth are unsigned whatever the Pixel Representation
#: (PS3.3 C.7.6.3.1.5, C.11.1.1.1); pydicom reads them as SS in signed images, DCMTK as US.
_LUT_DESCRIPTORS = frozenset(
    {0x00281101, 0x00281102, 0x00281103, 0x00281104, 0x00283002}
    | {0x00281111, 0x00281112, 0x00281113}
)
#: Bytes values up to this length are shown in the dump; longer ones only as "<N bytes>".
_MAX_BYTES_SHOWN = 16
_VR_COLUMN = 49  # where the VR starts in a dump line at least (as in pydicom's str(ds)) ...
_MAX_VR_COLUMN = 60  # ... and at most: a longer name pushes its own VR to the right
_INDENT = "    "  # one sequence level in the dump; item headers sit half-way
_META_HEADER = f"{'File Meta Information ':-<49}"
_META_RULE = "-" * 49

# --- fetching elements without letting one bad element stop the walk --------------------


@dataclass(frozen=True)
class _Entry:
    """One element of a dataset as the walks see it."""

    tag: BaseTag
    vr: str
    element: DataElement | None  # None: the value is still on disk (deferred read)
    length: int  # the value's length in the file, for deferred values


def _entries(ds: Dataset, *, load_deferred: bool) -> Iterator[_Entry]:
    for tag in sorted(ds.keys()):
        yield _entry(ds, Tag(tag), load_deferred=load_deferred)


def _entry(ds: Dataset, tag: BaseTag, *, load_deferred: bool) -> _Entry:
    raw = ds.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None and raw.length and not load_deferred:
        vr = _resolve_vr(raw.VR or _dictionary_vr(tag), tag)
        return _Entry(tag, vr, None, raw.length)
    try:
        element = ds[tag]
    except Exception as exc:  # pydicom raises many types for one malformed value
        log.debug("cannot convert %s, showing its raw value: %s", tag, exc)
        raw = ds.get_item(tag, keep_deferred=True)
        element = _from_raw(raw) if isinstance(raw, RawDataElement) else raw
    element = _disambiguated(element)
    return _Entry(tag, _resolve_vr(element.VR, tag), element, 0)


def _disambiguated(element: DataElement) -> DataElement:
    """An element whose VR pydicom left ambiguous, or resolved against the standard, as
    ``dcm2json`` has it: numbers of an unresolved "US or SS" read from its bytes (implicit VR
    is always little endian), LUT Descriptors unsigned."""
    vr, value = str(element.VR), element.value
    resolved = _resolve_vr(vr, element.tag)
    if resolved in ("US", "SS") and vr != resolved and isinstance(value, (bytes, bytearray)):
        words = np.frombuffer(bytes(value)[: len(value) // 2 * 2], dtype="<u2").tolist()
        return DataElement(element.tag, "US", words[0] if len(words) == 1 else words)
    if element.tag in _LUT_DESCRIPTORS and vr == "SS":
        words = [int(v) % 65536 for v in _values(element)]
        return DataElement(element.tag, "US", words[0] if len(words) == 1 else words)
    return element


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _resolve_vr(vr: str | None, tag: int = 0) -> str:
    vr = str(vr or "UN")
    if vr == "OB or OW" and (tag in _IMPLICIT_OW or tag >> 16 & 0xFF00 == 0x6000):
        return "OW"
    return _AMBIGUOUS_VR_FALLBACK.get(vr, vr)


def _from_raw(raw: RawDataElement) -> DataElement:
    """A stand-in for an element pydicom cannot convert: text VRs as text, others as bytes.

    An unknown VR code in the file gives way to the dictionary's VR (then UN).
    """
    vr = _resolve_vr(raw.VR if raw.VR in STANDARD_VR else _dictionary_vr(raw.tag), raw.tag)
    data = raw.value or b""
    if vr in BULK_VRS or vr in _INTEGER_VRS | _FLOAT_VRS | {"AT", "SQ"}:
        return DataElement(raw.tag, "UN", data, already_converted=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    values = [v.strip(" \x00") for v in text.split("\\")]
    value: Any = values[0] if len(values) == 1 else values
    return DataElement(raw.tag, vr, value, already_converted=True)


def _values(element: DataElement) -> list[Any]:
    """The element's values as a list (empty when it has none)."""
    value = element.value
    if value is None or (isinstance(value, (str, bytes)) and not value):
        return []
    if isinstance(value, (list, tuple, MultiValue, Sequence)):
        return list(value)
    return [value]


# --- text dump --------------------------------------------------------------------------


def dump_lines(ds: Dataset, *, full: bool = False, max_value_length: int = 80) -> list[str]:
    """The whole file as lines of ``(GGGG,EEEE) Name  VR: value``, file meta first.

    Sequences are nested under "Item i of n" headers, private elements carry their private
    creator, and long values are shortened (saying how long they are) unless `full`. The VR
    column is aligned over the whole dump, as in pydicom's ``str(ds)``, but names are never
    cut short (private names are long).
    """
    rows: list[_Row] = []
    meta = getattr(ds, "file_meta", None)
    if meta:
        rows.append((_META_HEADER, None))
        rows += _dataset_rows(meta, 0, full=full, max_value_length=max_value_length)
        rows.append((_META_RULE, None))
    rows += _dataset_rows(ds, 0, full=full, max_value_length=max_value_length)
    return _aligned(rows)


def element_lines(
    element: DataElement, *, full: bool = False, max_value_length: int = 80
) -> list[str]:
    """One element as dump lines: one line, or a sequence with its items nested below."""
    entry = _Entry(element.tag, _resolve_vr(element.VR, element.tag), element, 0)
    return _aligned(_entry_rows(entry, 0, full=full, max_value_length=max_value_length))


#: A dump line before alignment: (tag and name, "VR: value"), or (whole line, None).
_Row = tuple[str, str | None]


def _aligned(rows: list[_Row]) -> list[str]:
    widths = [len(head) for head, tail in rows if tail is not None]
    column = max(_VR_COLUMN, min(max(widths, default=0) + 2, _MAX_VR_COLUMN))
    return [
        head if tail is None else f"{head}{' ' * max(column - len(head), 2)}{tail}"
        for head, tail in rows
    ]


def _dataset_rows(ds: Dataset, depth: int, *, full: bool, max_value_length: int) -> list[_Row]:
    rows: list[_Row] = []
    for entry in _entries(ds, load_deferred=full):
        rows += _entry_rows(entry, depth, full=full, max_value_length=max_value_length)
    return rows


def _entry_rows(entry: _Entry, depth: int, *, full: bool, max_value_length: int) -> list[_Row]:
    indent = _INDENT * depth
    name = _element_name(entry.element) if entry.element is not None else _tag_name(entry.tag)
    if entry.element is None:
        value = f"<{entry.length} bytes>"
    else:
        value = format_value(entry.element, full=full, max_value_length=max_value_length)
    rows: list[_Row] = [(f"{indent}{entry.tag} {name}", f"{entry.vr}: {value}")]
    if entry.vr == "SQ" and entry.element is not None:
        items = _values(entry.element)
        for number, item in enumerate(items, start=1):
            empty = "" if len(item) else " (empty)"
            rows.append((f"{indent}{_INDENT[:2]}Item {number} of {len(items)}{empty}", None))
            rows += _dataset_rows(item, depth + 1, full=full, max_value_length=max_value_length)
    return rows


def _tag_name(tag: BaseTag) -> str:
    return _element_name(DataElement(tag, "UN", b""))


def _element_name(element: DataElement) -> str:
    """Dictionary name; private elements as ``[creator] name`` so the block is never lost."""
    tag = element.tag
    creator = getattr(element, "private_creator", None)
    if tag.is_private and creator and tag.element >= 0x0100:
        try:
            description = private_dictionary_description(tag, creator)
        except KeyError:
            description = "Private tag data"
        return f"[{creator}] {description}"
    return element.name or "Unknown"


def format_value(element: DataElement, *, full: bool = False, max_value_length: int = 80) -> str:
    """The value as the dump shows it after ``VR: `` (``--tag`` prints the same).

    As in pydicom's ``str(ds)`` text is quoted and several values are a list; numbers (IS
    and DS included) are bare, UIDs add their name, a sequence is its item count. Unless
    `full`, bytes longer than 16 and values longer than `max_value_length` are shortened,
    saying how long they are.
    """
    vr = _resolve_vr(element.VR, element.tag)
    if vr == "SQ":
        count = len(_values(element))
        return f"{count} item" if count == 1 else f"{count} items"
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        if full or len(value) <= _MAX_BYTES_SHOWN:
            return repr(bytes(value))
        return f"<{len(value)} bytes>"
    values = _values(element)
    if not values:
        return "(no value)" if vr in _UNQUOTED_VRS - {"IS", "DS"} else "''"
    shown = [_format_one(v, vr) for v in values]
    text = shown[0] if len(shown) == 1 else f"[{', '.join(shown)}]"
    if full or len(text) <= max_value_length:
        return text
    if len(values) > 1:
        return f"{text[: max_value_length - 4]}...] <{len(values)} values>"
    quote = text[-1] if text[-1] in "'\"" else ""
    return f"{text[: max_value_length - 4]}...{quote} <{len(str(values[0]))} chars>"


def _format_one(value: Any, vr: str) -> str:
    if value is None or value == "":
        return "''"
    if vr == "UI":
        uid = UID(str(value))
        return f"{uid} ({uid.name})" if uid.name != str(uid) else str(uid)
    if vr == "AT":
        return str(Tag(value))
    if vr in ("IS", "DS"):
        return str(getattr(value, "original_string", None) or value).strip()
    if vr in _UNQUOTED_VRS:
        return repr(value)
    return repr(str(value))


# --- selecting and finding --------------------------------------------------------------


def select_elements(
    ds: Dataset, tags: Iterable[BaseTag | int]
) -> list[tuple[BaseTag, DataElement | None]]:
    """For ``--tag``: each tag with its top-level element (file meta for group 0002), or None.

    A tag the file lacks is reported as None rather than raised, so one missing tag does not
    hide the others.
    """
    meta = getattr(ds, "file_meta", None) or Dataset()
    selected: list[tuple[BaseTag, DataElement | None]] = []
    for tag in map(Tag, tags):
        source = meta if tag.group == 0x0002 and tag in meta else ds
        element = _entry(source, tag, load_deferred=True).element if tag in source else None
        selected.append((tag, element))
    return selected


def find_elements(ds: Dataset, text: str) -> list[DataElement]:
    """For ``--find``: file meta and top-level elements whose keyword or name contains `text`.

    Case-insensitive, like pydicom's ``Dataset.dir("pat")``, but private elements match on
    their private dictionary name or creator too (``[GEMS_PATI_01] Patient Status``).
    """
    needle = text.lower()
    found = []
    for source in (getattr(ds, "file_meta", None) or Dataset(), ds):
        for entry in _entries(source, load_deferred=False):
            element = entry.element
            if element is None:  # a large value left on disk: read it only when it matches
                element = DataElement(entry.tag, entry.vr, b"")
                if not _matches(element, needle):
                    continue
                element = _entry(source, entry.tag, load_deferred=True).element
            if element is not None and _matches(element, needle):
                found.append(element)
    return found


def find_lines(ds: Dataset, text: str, *, full: bool = False) -> list[str]:
    """``--find``'s lines: each matching element, its keyword at the end of its first line
    (``# PatientName``, as dcmdump shows it), ready to pass to ``--tag``."""
    lines = []
    for element in find_elements(ds, text):
        found = element_lines(element, full=full)
        if found and element.keyword:
            found[0] += f"  # {element.keyword}"
        lines += found
    return lines


def value_lines(element: DataElement) -> list[str]:
    """``--value``: an element's value(s) alone, one per line; a sequence as its item count,
    binary data as its length (nothing a script could mistake for text)."""
    value = element.value
    if element.VR == "SQ":
        return [str(len(value or []))]
    if isinstance(value, (bytes, bytearray)):
        return [f"{len(value)} bytes"]
    if value is None:
        return [""]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _matches(element: DataElement, needle: str) -> bool:
    return needle in element.keyword.lower() or needle in _element_name(element).lower()


# --- DICOM JSON Model -------------------------------------------------------------------


def to_json_model(ds: Dataset, *, bulk: bool = False) -> dict[str, Any]:
    """The dataset as the DICOM JSON Model (PS3.18 F.2), ready for `json.dumps`.

    Written here rather than with pydicom's ``Dataset.to_json_dict``, which drops a whole
    sequence when one value in it is invalid (its ``suppress_invalid_tags`` switches on strict
    reading) or else raises, keeps group lengths, writes empty values of multi-valued
    elements as ``""`` instead of null and ``^^^^`` as a name. What we do, as ``dcm2json``:

    - File meta (group 0002) and group lengths (gggg,0000) are left out.
    - IS, DS and the binary numbers are JSON numbers; a value its VR does not allow (IS
      ``1A`` or ``1.0``, DS over 16 characters) stays the string it is, SV/UV beyond ±2^53
      are strings, and FL/FD NaN or infinity become the strings ``"NaN"``, ``"Infinity"``,
      ``"-Infinity"`` (JSON has no such numbers).
    - Leading spaces are padding in CS, SH, LO and AE (and PN), so they go, as trailing ones
      do everywhere; an unresolved "US or SS" is read as US numbers, LUT Descriptors as US.
    - PN values are ``{"Alphabetic", "Ideographic", "Phonetic"}`` objects without trailing
      ``^`` and without empty groups; an empty value among several is null; an empty
      element has no ``"Value"``.

    Where we differ on purpose:

    - Bulk data (VR OB, OD, OF, OL, OV, OW, UN and the pixel data elements) is listed with
      its VR but no value unless `bulk`; then it is ``InlineBinary``: base64 of the value in
      little endian (words of big endian files swapped, as ``dcm2json`` does); encapsulated
      pixel data as stored, with its item framing (``dcm2json`` refuses those files).
      Without `bulk` an element shown without value may still have one in the file.
    - Specific Character Set keeps the file's value (``dcm2json`` rewrites it to
      ``ISO_IR 192``); the JSON text is Unicode either way, and CP-2518 lets the attribute
      record the original character set.
    """
    swap = bulk and not transfer_syntax(ds).is_little_endian
    return _json_dataset(ds, bulk=bulk, swap=swap, top_level=True)


def _json_dataset(
    ds: Dataset, *, bulk: bool, swap: bool, top_level: bool = False
) -> dict[str, Any]:
    model: dict[str, Any] = {}
    for entry in _entries(ds, load_deferred=bulk):
        if entry.tag.element == 0 or (top_level and entry.tag.group == 0x0002):
            continue
        model[f"{entry.tag:08X}"] = _json_element(entry, bulk=bulk, swap=swap)
    return model


def _json_element(entry: _Entry, *, bulk: bool, swap: bool) -> dict[str, Any]:
    vr, element = entry.vr, entry.element
    out: dict[str, Any] = {"vr": vr}
    if element is None:  # deferred, so bulk is False
        return out
    if vr in BULK_VRS or entry.tag in PIXEL_DATA_TAGS or isinstance(element.value, bytes):
        if bulk and element.value:
            data = bytes(element.value)
            if swap:
                data = _little_endian(data, _WORD_SIZES.get(vr, 1))
            out["InlineBinary"] = base64.b64encode(data).decode("ascii")
        return out
    values = _values(element)
    if vr == "SQ":
        converted: list[Any] = [_json_dataset(item, bulk=bulk, swap=swap) for item in values]
    elif vr == "PN":
        converted = [_json_person_name(v) for v in values]
    elif vr == "AT":
        converted = [f"{Tag(v):08X}" for v in values]
    elif vr in ("IS", "DS"):
        converted = [_json_decimal(v, vr) for v in values]
    elif vr in _INTEGER_VRS:
        converted = [_json_integer(int(v)) for v in values]
    elif vr in _FLOAT_VRS:
        converted = [_json_float(float(v)) for v in values]
    else:
        converted = [_json_text(v, vr) for v in values]
    if any(v is not None for v in converted):
        out["Value"] = converted
    return out


def _little_endian(data: bytes, word_size: int) -> bytes:
    if word_size == 1 or len(data) % word_size:
        return data
    return np.frombuffer(data, dtype=f">u{word_size}").astype(f"<u{word_size}").tobytes()


def _json_text(value: Any, vr: str) -> str | None:
    """Text without padding: trailing spaces always, leading ones where PS3.5 Table 6.2-1
    calls them insignificant (CS, SH, LO, AE); LT, ST, UT and UC keep them."""
    text = str(value)
    text = text.strip(" \x00") if vr in _LEADING_SPACE_PADDED else text.rstrip(" \x00")
    return text or None


def _json_person_name(value: Any) -> dict[str, str] | None:
    groups = [group.strip(" ").rstrip("^ ") for group in str(value).split("=")]
    names = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))
    return {key: name for key, name in names.items() if name} or None


def _json_integer(number: int) -> int | str:
    """A JSON number, or a string beyond ±2^53 where JSON readers lose digits (SV, UV)."""
    return number if abs(number) <= _MAX_EXACT_JSON_INTEGER else str(number)


def _json_decimal(value: Any, vr: str) -> int | float | str | None:
    """IS/DS as a JSON number: integers stay integers, ``5.000000`` is 5.0.

    A value the VR does not allow stays the string the file has, as ``dcm2json`` writes it
    (PS3.18 F.2.3.1): IS that is not a 32-bit integer (``1A``, ``1.0``, ``4294967296``),
    DS over 16 characters or not a finite number.
    """
    text = str(getattr(value, "original_string", None) or value).strip()
    if not text:
        return None
    if vr == "IS":
        try:
            number = int(text)
        except ValueError:
            return text
        return number if -(2**31) <= number < 2**31 else text
    if len(text) > _MAX_DS_LENGTH:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        real = float(text)
    except ValueError:
        return text  # not a number (IS "1A"): keep what the file says
    if not math.isfinite(real):
        return text
    return real


def _json_float(number: float) -> float | str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number
