"""The one naming authority: mirror names, ``--layout`` templates, safe path components, and the
`NameRegistry` that every output name is claimed from, so two outputs never share a name.

A template names the output base, relative to OUT and without extension, from tag values:
``{Keyword}`` or ``{Keyword:spec}`` (a Python format spec, e.g. ``{InstanceNumber:04d}``), and
the derived fields ``{stem}`` (the input's name without ``.dcm``/``.dicom``/``.dic``/``.ima``),
``{index}`` (the input's 1-based position in discovery order) and ``{frame}`` (the 1-based frame
number of a still from a multi-frame input; empty otherwise — separators next to it are then
dropped, so ``{stem}_{frame}`` names the video ``x.mp4`` and the stills ``x_1.png`` — and a folder
level that renders empty only because of it is left out). The template's own ``/`` (or ``\\``)
separate folders; tag values never add folders. Presets (`LAYOUT_PRESETS`):

- ``study``: ``{PatientID}/{StudyDate}/{SeriesNumber}/{InstanceNumber}``
- ``series``: ``{StudyInstanceUID}/{SeriesNumber}/{InstanceNumber:04d}``
- ``flat``: ``{SeriesNumber:03d}_{InstanceNumber:04d}_{stem}``

Rendering rules:

- values come decoded with the file's Specific Character Set, so non-ASCII names stay readable;
- a missing or empty value becomes `MISSING` (``unknown``);
- a format spec applies to numbers (IS, DS, US, ... and numeric text); a spec that does not fit
  the value (``:04d`` on ``ABC``) falls back to the plain text instead of failing;
- multiple values are joined with ``-``; a person name keeps its non-empty component groups
  (alphabetic, ideographic, phonetic) joined with ``=``, and its ``^`` become ``_``
  (``Doe^John`` → ``Doe_John``), because ``^`` is special in Windows ``cmd`` and some shells;
- every folder level and the file name go through `sanitize_component`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any, Protocol

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from .dicom import tags
from .errors import UsageError

#: Extensions stripped from input names; any other name is kept whole (`1.2.3` → `1.2.3.png`).
STRIPPED_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})

#: Named templates accepted by ``--layout`` besides ``mirror`` and a literal template.
LAYOUT_PRESETS: dict[str, str] = {
    "study": "{PatientID}/{StudyDate}/{SeriesNumber}/{InstanceNumber}",
    "series": "{StudyInstanceUID}/{SeriesNumber}/{InstanceNumber:04d}",
    "flat": "{SeriesNumber:03d}_{InstanceNumber:04d}_{stem}",
}

#: Fields computed by dcmexport rather than read from the dataset.
DERIVED_FIELDS = frozenset({"stem", "index", "frame"})

#: What a missing or empty tag value renders as; stable, so reruns land on the same names.
MISSING = "unknown"

#: Bound on one path component in UTF-8 bytes. File systems allow 255 (bytes on Linux, UTF-16
#: units on Windows and macOS); 150 leaves room for a collision suffix (``_12``), an extension
#: (``.json``) and macOS's decomposed storage of accented letters.
MAX_COMPONENT_BYTES = 150

#: Windows device names, reserved with any extension (``con.txt``) and in any case.
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in "0123456789¹²³"}
)

_FORBIDDEN = frozenset('<>:"/\\|?*')
#: Unicode categories replaced in names: controls (C0, DEL, C1), format characters (bidi
#: overrides can disguise an extension), lone surrogates, line and paragraph separators.
_REPLACED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UN", "OB or OW"})
_INT_TYPES = frozenset("bcdoxXn")
_TRAILING_DOTS_SPACES = re.compile(r"[\s.]+\Z")


@dataclasses.dataclass(frozen=True)
class Field:
    """One ``{name:spec}`` replacement field of a template."""

    name: str
    spec: str = ""


Part = str | Field


@dataclasses.dataclass(frozen=True)
class Layout:
    """A parsed, validated output-name template; picklable, so it travels to workers.

    `components` holds one tuple of parts (literal text or `Field`) per folder level, the
    last one being the file name.
    """

    template: str
    components: tuple[tuple[Part, ...], ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """The DICOM keywords the template reads, in order, for ``dcmread(specific_tags=...)``."""
        names: dict[str, None] = {}
        for component in self.components:
            for part in component:
                if isinstance(part, Field) and part.name not in DERIVED_FIELDS:
                    names[part.name] = None
        return tuple(names)

    @property
    def uses_frame(self) -> bool:
        """True if stills of one input are told apart by ``{frame}`` in the template itself."""
        return any(
            isinstance(part, Field) and part.name == "frame"
            for component in self.components
            for part in component
        )

    def render(
        self, ds: Dataset, *, stem: str, index: int, frame: int | None = None
    ) -> PurePosixPath:
        """The output base for one input (or one of its frames), relative to OUT."""
        derived: dict[str, Any] = {"stem": stem, "index": index, "frame": frame}
        rendered: list[str] = []
        for component in self.components:
            text = "".join(_render_part(part, ds, derived) for part in component)
            if frame is None and _has_frame(component):
                text = text.strip("_-. ")  # `{stem}_{frame}` names the video `{stem}`
            if not text and _only_frame(component) and frame is None:
                continue
            rendered.append(sanitize_component(text))
        return PurePosixPath(*rendered) if rendered else PurePosixPath(MISSING)


def parse_layout(text: str) -> Layout | None:
    """``None`` for ``mirror``, else the `Layout` of a preset name or a template.

    Everything that can be checked without a file is checked here, so a typo fails before
    the first input is read: unknown keywords, malformed braces, empty or absolute templates,
    ``.``/``..`` folder levels and format specs that fit neither a number nor text.
    """
    text = text.strip()
    if text == "mirror":
        return None
    template = LAYOUT_PRESETS.get(text, text)
    if not template:
        raise UsageError("--layout: the template is empty")
    if template[0] in "/\\" or re.match(r"[A-Za-z]:", template):
        raise UsageError(f"--layout: the template must be relative to OUT, not {template!r}")
    components: list[list[Part]] = [[]]
    for literal, name, spec, conversion in _parse_braces(template):
        pieces = re.split(r"[/\\]", literal)
        _append_literal(components[-1], pieces[0])
        for piece in pieces[1:]:
            components.append([])
            _append_literal(components[-1], piece)
        if name is not None:
            components[-1].append(_check_field(name, spec or "", conversion))
    if not any(isinstance(part, Field) for component in components for part in component):
        raise UsageError(
            f"--layout: {template!r} is neither 'mirror', a preset "
            f"({', '.join(LAYOUT_PRESETS)}) nor a template with {{Keyword}} fields"
        )
    for component in components:
        literal_only = all(isinstance(part, str) for part in component)
        if not component or (literal_only and "".join(map(str, component)).strip() in {".", ".."}):
            raise UsageError(f"--layout: empty, '.' or '..' folder level in {template!r}")
    return Layout(template, tuple(tuple(c) for c in components))


def sanitize_component(text: str, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """`text` as one path component that is valid and harmless on Linux, macOS and Windows.

    NFC; controls, separators and ``<>:"|?*`` become ``_``; surrounding whitespace and
    trailing dots go (Windows drops them silently); a leading dot becomes ``_`` (no hidden
    outputs); at most `max_bytes` UTF-8 bytes, cut on a character boundary; empty, ``.`` and
    ``..`` become ``_``; Windows device names (``CON``, ``com1.txt``, ``LPT¹``) get a ``_``
    prefix. The result never contains a separator, so it can never leave its folder.
    """
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        "_" if ch in _FORBIDDEN or unicodedata.category(ch) in _REPLACED_CATEGORIES else ch
        for ch in text
    )
    text = _TRAILING_DOTS_SPACES.sub("", text.lstrip())
    if text.startswith("."):
        text = "_" + text[1:]
    text = _truncate(text, max_bytes)
    if text.split(".", 1)[0].rstrip().casefold() in WINDOWS_RESERVED:
        text = _truncate("_" + text, max_bytes)
    return text or "_"


def _truncate(text: str, max_bytes: int) -> str:
    """At most `max_bytes` UTF-8 bytes, cut between characters, no trailing dot or space."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return _TRAILING_DOTS_SPACES.sub("", encoded[:max_bytes].decode("utf-8", "ignore"))


def input_stem(name: str) -> str:
    """An input's file name without the DICOM extensions that mirror naming strips too."""
    path = PurePosixPath(name.replace("\\", "/")).name
    suffix = PurePosixPath(path).suffix
    return path[: -len(suffix)] if suffix and suffix.lower() in STRIPPED_SUFFIXES else path


def value_text(value: Any, spec: str = "") -> str:
    """A tag value as text for a name: formatted, multiple values joined with ``-``.

    Returns `MISSING` for a missing or empty value.
    """
    if value is None:
        return MISSING
    if isinstance(value, (list, tuple, MultiValue)):
        items = [_item_text(item, spec) for item in value]
        items = [item for item in items if item]
        return "-".join(items) if items else MISSING
    return _item_text(value, spec) or MISSING


def _item_text(value: Any, spec: str) -> str:
    if isinstance(value, PersonName):
        groups = ("_".join(c for c in g.split("^") if c.strip()) for g in value.components)
        value = "=".join(g for g in groups if g)
    elif isinstance(value, bytes):
        value = value.decode("latin-1").strip("\x00 ")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return ""
    if not spec:
        return str(value)
    candidates: list[Any] = [value]
    if isinstance(value, str) and _number(value) is not None:
        candidates.insert(0, _number(value))
    if isinstance(value, float) and value.is_integer() and spec[-1] in _INT_TYPES:
        candidates.insert(0, int(value))
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            return format(candidate, spec)
        except (ValueError, TypeError):
            continue
    return str(value)


def _number(text: str) -> int | float | None:
    """Numeric text (``"7"``, ``" 2.5"``) as a number, so a numeric format spec fits it."""
    try:
        number = float(text)
    except ValueError:
        return None
    return (
        int(number)
        if number.is_integer() and "." not in text and "e" not in text.lower()
        else number
    )


def _render_part(part: Part, ds: Dataset, derived: dict[str, Any]) -> str:
    if isinstance(part, str):
        return part
    if part.name in DERIVED_FIELDS:
        value = derived[part.name]
        if part.name == "frame" and value is None:
            return ""
        return _item_text(value, part.spec) or MISSING
    try:
        value = ds.get(part.name)
    except Exception:  # a malformed value pydicom cannot convert
        value = None
    return value_text(value, part.spec)


def _has_frame(component: tuple[Part, ...]) -> bool:
    return any(isinstance(part, Field) and part.name == "frame" for part in component)


def _only_frame(component: tuple[Part, ...]) -> bool:
    fields = [p for p in component if isinstance(p, Field)]
    return bool(fields) and all(f.name == "frame" for f in fields)


def _parse_braces(template: str) -> Iterable[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"--layout: malformed braces in {template!r} ({exc})") from None


def _append_literal(component: list[Part], literal: str) -> None:
    if literal:
        component.append(literal)


def _check_field(name: str, spec: str, conversion: str | None) -> Field:
    if not name:
        raise UsageError("--layout: empty {} field; write a keyword such as {PatientID}")
    if conversion:
        raise UsageError(f"--layout: conversions like {{{name}!{conversion}}} are not supported")
    if "{" in spec or "}" in spec:
        raise UsageError(f"--layout: nested fields in {{{name}:{spec}}} are not supported")
    if name not in DERIVED_FIELDS:
        tag = tags.keyword_tag(name)
        if tag is None:
            close = tags.close_keywords(name, DERIVED_FIELDS)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"--layout: unknown field {{{name}}}: not a DICOM keyword{hint}")
        vr = dictionary_VR(tag)
        if vr in _BINARY_VRS:
            raise UsageError(f"--layout: {{{name}}} holds {vr} data, which cannot name a file")
    if spec:
        for sample in (1, "text"):
            try:
                format(sample, spec)
                break
            except (ValueError, TypeError):
                continue
        else:
            raise UsageError(f"--layout: invalid format spec in {{{name}:{spec}}}")
    return Field(name, spec)


# --------------------------------------------------------------------------- mirror names


def mirror_base(parts: Sequence[str], *, foreign: bool = False) -> PurePosixPath:
    """The output path, relative to OUT and without extension, that mirrors an input.

    `parts` are the input's path components below the input folder (or just its name).
    `foreign` names (archive members, object keys, anything not already a file name on this
    system) are made safe component by component; names read from the local file system are
    kept exactly, so outputs mirror the tree.
    """
    if foreign:
        parts = [sanitize_component(p) for p in parts]
    rel = PurePosixPath(*parts) if parts else PurePosixPath("_")
    if rel.suffix.lower() in STRIPPED_SUFFIXES:
        rel = rel.with_suffix("")
    return rel


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text (for SQLite, Parquet, messages): bytes of a file name that
    are not UTF-8 (surrogates in Python) are spelled out as backslash escapes."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ClaimedNames(Protocol):
    """Where a `NameRegistry` keeps the (casefolded) names it handed out: in memory
    (`MemoryClaims`), or for a batch of any size in a file (`engine.scratch`), since one
    entry per output would otherwise grow the main process without bound."""

    def is_base(self, key: str) -> bool | None:
        """True if `key` is a claimed base, False if only a folder above one, None if free."""
        ...

    def take(self, key: str, folders: Sequence[str]) -> bool:
        """Claim `key` as a base if it is neither a base nor a folder yet (and note the
        `folders` above it); False if it was taken."""
        ...


class MemoryClaims:
    """`ClaimedNames` in two in-memory sets (a library call, a test, a small run)."""

    def __init__(self) -> None:
        self._bases: set[str] = set()
        self._folders: set[str] = set()

    def is_base(self, key: str) -> bool | None:
        if key in self._bases:
            return True
        return False if key in self._folders else None

    def take(self, key: str, folders: Sequence[str]) -> bool:
        if key in self._bases or key in self._folders:
            return False
        self._bases.add(key)
        self._folders.update(folders)
        return True


class NameRegistry:
    """Hands out output bases so that two outputs never write to one name.

    Every output name of a run is claimed here — an input's base, each still a ``{frame}``
    template names, a series video — so this is the one place collisions are resolved.
    A base claims its own name and everything below it (multi-frame stills go in a folder
    named after the base), compared case-insensitively so the result survives a copy to a
    case-insensitive file system. A later claim that overlaps gets `_2`, `_3`, ... on the
    part that collides: the file name, or the folder that is already another input's base
    (`x.dcm` and `x/y.dcm` become `x.png` and `x_2/y.png`). The manifest and dcmexport's
    own folder are reserved. The claimed names are kept in `claimed` (default: in memory).
    """

    RESERVED = ("manifest.csv", ".dcmexport", "report_assets", "contact_sheets")

    def __init__(self, claimed: ClaimedNames | None = None) -> None:
        self._claimed = claimed if claimed is not None else MemoryClaims()
        for name in self.RESERVED:
            self._claimed.take(name.casefold(), ())

    def _conflict(self, keys: list[str]) -> int | None:
        """The index of the first folder level that is an earlier claim's base, or None."""
        for i, key in enumerate(keys[:-1]):
            if self._claimed.is_base(key):
                return i
        return None

    def claim(self, base: PurePosixPath) -> tuple[PurePosixPath, str]:
        """A free base derived from `base`, and a note for the manifest if it had to change."""
        original = list(base.parts)
        parts = list(original)
        counters: dict[int, int] = {}
        while True:
            keys = list(itertools.accumulate((p.casefold() for p in parts), _join_key))
            index = self._conflict(keys)
            if index is None:
                if self._claimed.take(keys[-1], keys[:-1]):
                    break
                index = len(parts) - 1
            counters[index] = counters.get(index, 1) + 1
            parts[index] = f"{original[index]}_{counters[index]}"
        candidate = PurePosixPath(*parts)
        note = "" if parts == original else f"name collision: {base} taken, wrote {candidate}"
        return candidate, note


def _join_key(folder: str, part: str) -> str:
    return f"{folder}/{part}"


# --------------------------------------------------------------------------- the HTML report

#: The HTML report's own folder inside OUT (pages, thumbnails, previews), and its contact
#: sheets' folder; reserved above, so no input's output lands in them.
REPORT_ASSETS_DIR = "report_assets"
CONTACT_SHEETS_DIR = "contact_sheets"
#: Still thumbnails: written by the thumbnail exporter during `convert --html`, else made by
#: the report; both find them by `thumbnail_name`.
THUMBNAILS_DIR = f"{REPORT_ASSETS_DIR}/thumbs"
#: The longer side of a thumbnail, in pixels.
THUMBNAIL_MAX = 160
#: An 8-bit PNG or JPEG still up to this size is its own thumbnail (shown at <= 160 px and
#: loaded lazily): a thumbnail file would cost about as much to write as the still did.
OWN_THUMBNAIL_MAX = 256


def asset_digest(output: str, size: int, mtime_ns: int) -> str:
    """A PHI-free name part for a report asset of the output `output` (relative to OUT), as
    written (size and modification time): a rewritten output gets a new one, so a stale
    asset is never shown, and a layout that put a Patient ID in `output` leaks nothing."""
    key = f"{output}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:24]


def needs_thumbnail(width: int, height: int, *, browser_native: bool) -> bool:
    """True if a still gets a thumbnail file: it is larger than `OWN_THUMBNAIL_MAX`, or a
    browser cannot show it as it is (TIFF, 16-bit PNG)."""
    return not browser_native or max(width, height) > OWN_THUMBNAIL_MAX


def thumbnail_name(output: str, size: int, mtime_ns: int) -> str:
    """Where the thumbnail of the still `output` goes, relative to OUT (a JPEG)."""
    return f"{THUMBNAILS_DIR}/{asset_digest(output, size, mtime_ns)}.jpg"
