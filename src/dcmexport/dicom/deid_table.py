"""PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes) as data.

Why a module of its own: the de-identification engine must be driven by the standard's table,
not by a hand-written list, so the table is loaded once from package data and turned into
lookups that small code can read.

Provenance of ``deid_table.json``: a byte-for-byte copy of DICOM PS3.15 Table E.1-1, edition
2026d, as machine-readable JSON from PyMedPhys (https://github.com/pymedphys/pymedphys,
Apache-2.0), file ``lib/pymedphys/_dicom/deidentify/_standard/e1_1.json`` at commit
``339bb77aa5c6f03f2b0c576d2ba025fbf709e738``. The table content is "DICOM PS3.15 2026d,
© NEMA" (the file's ``acknowledgement`` field). sha256 of the file:
``0d8b617257fb9e2e32184e2a9f8008da9bf6e539e4fda4e988b93d8f87f4b410``.

Schema (``pymedphys-deid-table/1``): 657 ``rows``, each ``name``, ``tag`` (``"(GGGG,EEEE)"``;
repeating groups ``(50xx,xxxx)``, ``(60xx,3000)``, ``(60xx,4000)``; one row
``"(gggg,eeee) where gggg is odd"`` for private attributes), ``retired``, ``in_standard_iod``,
``basic_profile`` (action code) and ``options`` (option column key → action code, only the
filled cells).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from pydicom.datadict import dictionary_VR, keyword_for_tag

TABLE_RESOURCE = "deid_table.json"
TABLE_SHA256 = "0d8b617257fb9e2e32184e2a9f8008da9bf6e539e4fda4e988b93d8f87f4b410"


class OptionColumn(enum.Enum):
    """The option columns of Table E.1-1, in the standard's column order (JSON keys)."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


class Action(enum.Enum):
    """The single action codes of PS3.15 E.1.1 (a compound code is a tuple of these)."""

    REMOVE = "X"
    ZERO = "Z"
    DUMMY = "D"
    UID = "U"
    UID_REFERENCES = "U*"
    KEEP = "K"
    CLEAN = "C"


class RowKind(enum.Enum):
    """How a row's tag is matched: one tag, a repeating group, or every private element."""

    TAG = "tag"
    CURVE_GROUP = "50xx"
    OVERLAY_DATA = "60xx,3000"
    OVERLAY_COMMENTS = "60xx,4000"
    PRIVATE = "private"


# Attributes of the 2026d table that pydicom 3.0.2's data dictionary does not know yet. The VR
# is only used to plant test values and for a dummy when the element arrives as UN; it is read
# from the attribute's name (…Sequence → SQ, …DateTime → DT, …Comment → UT, …Reference → UR).
SUPPLEMENT_VR: Mapping[int, str] = {
    0x0040B034: "DT",  # Annotation DateTime
    0x0040E012: "UR",  # Display URI
    0x3004007F: "LO",  # Dose Calculation Model Name
    0x0040A034: "DT",  # Effective Start DateTime
    0x0040A035: "DT",  # Effective Stop DateTime
    0x00102162: "UC",  # Ethnic Groups
    0x00100044: "SQ",  # Gender Identity Code Sequence
    0x00100045: "UT",  # Gender Identity Comment
    0x00100041: "SQ",  # Gender Identity Sequence
    0x00081304: "SQ",  # Histological Diagnoses Code Sequence
    0x0040B03F: "LO",  # Montage Channel Label
    0x0040B03B: "LO",  # Montage Name
    0x00100012: "PN",  # Name to Use
    0x00100013: "UT",  # Name to Use Comment
    0x00100011: "SQ",  # Person Names to Use Sequence
    0x00081302: "SQ",  # Primary Diagnosis Code Sequence
    0x00081301: "SQ",  # Principal Diagnosis Code Sequence
    0x00081303: "SQ",  # Secondary Diagnoses Code Sequence
    0x00100015: "SQ",  # Pronoun Code Sequence
    0x00100016: "UT",  # Pronoun Comment
    0x0040B036: "DT",  # Segment Definition DateTime
    0x00100046: "SQ",  # Sex Parameters for Clinical Use Category Code Sequence
    0x00100042: "UT",  # Sex Parameters for Clinical Use Category Comment
    0x00100047: "UR",  # Sex Parameters for Clinical Use Category Reference
    0x00100043: "SQ",  # Sex Parameters for Clinical Use Category Sequence
    0x00100014: "SQ",  # Third Person Pronouns Sequence
}


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1: the Basic Profile action and the option cells."""

    name: str
    tag_text: str
    kind: RowKind
    tag: int | None
    retired: bool
    in_standard_iod: bool
    basic_profile: tuple[Action, ...]
    options: Mapping[OptionColumn, Action]

    @property
    def keyword(self) -> str:
        """pydicom's keyword, or the name without spaces for attributes it does not know."""
        if self.tag is not None:
            keyword = keyword_for_tag(self.tag)
            if keyword:
                return keyword
        return "".join(ch for ch in self.name.title() if ch.isalnum())

    @property
    def vr(self) -> str | None:
        """The attribute's VR from the data dictionary (None for group and private rows)."""
        if self.tag is None:
            return None
        try:
            return str(dictionary_VR(self.tag))
        except KeyError:
            return SUPPLEMENT_VR.get(self.tag)


def parse_action_code(code: str) -> tuple[Action, ...]:
    """``"X/Z/U*"`` → (REMOVE, ZERO, UID_REFERENCES): the choices of a (compound) action code."""
    return tuple(Action(part) for part in code.split("/"))


def _row_kind(tag_text: str) -> tuple[RowKind, int | None]:
    kinds = {
        "(50xx,xxxx)": RowKind.CURVE_GROUP,
        "(60xx,3000)": RowKind.OVERLAY_DATA,
        "(60xx,4000)": RowKind.OVERLAY_COMMENTS,
    }
    if tag_text in kinds:
        return kinds[tag_text], None
    if tag_text.startswith("(gggg,eeee)"):
        return RowKind.PRIVATE, None
    return RowKind.TAG, int(tag_text[1:5] + tag_text[6:10], 16)


def _parse_row(raw: Mapping[str, object]) -> TableRow:
    tag_text = str(raw["tag"])
    kind, tag = _row_kind(tag_text)
    options = raw["options"]
    assert isinstance(options, dict)
    return TableRow(
        name=str(raw["name"]),
        tag_text=tag_text,
        kind=kind,
        tag=tag,
        retired=bool(raw["retired"]),
        in_standard_iod=bool(raw["in_standard_iod"]),
        basic_profile=parse_action_code(str(raw["basic_profile"])),
        options={OptionColumn(key): Action(code) for key, code in options.items()},
    )


def table_bytes() -> bytes:
    """The shipped JSON exactly as stored (for provenance checks)."""
    return resources.files(__package__).joinpath(TABLE_RESOURCE).read_bytes()


@functools.cache
def load_table() -> tuple[TableRow, ...]:
    """All 657 rows of Table E.1-1 2026d, in the table's order."""
    data = table_bytes()
    if hashlib.sha256(data).hexdigest() != TABLE_SHA256:
        raise RuntimeError(f"{TABLE_RESOURCE} is not the pinned copy of PS3.15 Table E.1-1")
    document = json.loads(data)
    return tuple(_parse_row(raw) for raw in document["rows"])


@functools.cache
def rows_by_tag() -> Mapping[int, TableRow]:
    """Rows with one fixed tag, keyed by tag."""
    return {row.tag: row for row in load_table() if row.tag is not None}


@functools.cache
def rows_by_kind() -> Mapping[RowKind, TableRow]:
    """The rows that match a group of tags (curves, overlay data/comments, private)."""
    return {row.kind: row for row in load_table() if row.kind is not RowKind.TAG}
