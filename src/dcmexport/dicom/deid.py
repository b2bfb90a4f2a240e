"""De-identification of DICOM instances by PS3.15 Annex E (Basic Profile and its options).

Why our own engine: the tools we tried leak with their defaults (kept institution names,
deleted instance UIDs, missed private tags and nested sequences, time-of-day shifts). This
engine is driven by the standard's Table E.1-1 (``deid_table``), applies every action code
through ``deid_actions.ACTIONS`` and makes keyed pseudonyms (``pseudonyms``), so a set of
files de-identified with one key stays one set: same patient, same study, references resolve.

Public API (pure; never mutates its input, never logs patient data)::

    options = DeidOptions(key=random_key())          # or key_from_text(os.environ[...])
    result = deidentify(dataset, options)             # -> DeidResult
    data = write_deidentified(result.dataset)         # -> bytes of a PS3.10 file
    name = result.output_name                         # "<new SOP Instance UID>.dcm"
    rows = [entry.as_row() for entry in result.map_entries]   # for --map
    reason = result.burned_in                         # None or why pixels may carry text

Default: the Basic Profile with Retain Longitudinal Temporal Information with Modified
Dates (one whole-day shift per patient, from HMAC(key, original Patient ID)).
"""

from __future__ import annotations

import enum
import functools
import io
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import DeidentificationError, UsageError
from . import pseudonyms
from .deid_actions import (
    ACTIONS,
    FREE_TEXT_VRS,
    Context,
    DateHandling,
    TextMode,
    choose_action,
    unlisted,
)
from .deid_table import Action, OptionColumn, RowKind, TableRow, rows_by_kind, rows_by_tag
from .pseudonyms import key_from_text, random_key

__all__ = [
    "DateHandling",
    "DeidOptions",
    "DeidResult",
    "KeepOption",
    "MapEntry",
    "MapKind",
    "burned_in_risk",
    "deidentified_path",
    "deidentify",
    "instance_uid",
    "key_from_text",
    "random_key",
    "save_deidentified",
    "write_deidentified",
]

logger = logging.getLogger(__name__)


class KeepOption(enum.Enum):
    """``--keep`` values (docs/cli.md `anonymize`): what a PS3.15 option column retains."""

    UIDS = "uids"
    DATES = "dates"
    DEVICE = "device"
    INSTITUTION = "institution"
    PATIENT_CHARACTERISTICS = "patient-characteristics"
    SAFE_PRIVATE = "safe-private"
    DESCRIPTORS = "descriptors"
    STRUCTURED_CONTENT = "structured-content"
    GRAPHICS = "graphics"


KEEP_COLUMNS: Mapping[KeepOption, OptionColumn] = {
    KeepOption.UIDS: OptionColumn.RETAIN_UIDS,
    KeepOption.DATES: OptionColumn.RETAIN_LONGITUDINAL_FULL_DATES,
    KeepOption.DEVICE: OptionColumn.RETAIN_DEVICE_IDENTITY,
    KeepOption.INSTITUTION: OptionColumn.RETAIN_INSTITUTION_IDENTITY,
    KeepOption.PATIENT_CHARACTERISTICS: OptionColumn.RETAIN_PATIENT_CHARACTERISTICS,
    KeepOption.SAFE_PRIVATE: OptionColumn.RETAIN_SAFE_PRIVATE,
    KeepOption.DESCRIPTORS: OptionColumn.CLEAN_DESCRIPTORS,
    KeepOption.STRUCTURED_CONTENT: OptionColumn.CLEAN_STRUCTURED_CONTENT,
    KeepOption.GRAPHICS: OptionColumn.CLEAN_GRAPHICS,
}

# CID 7050 De-identification Methods (checked against pydicom.sr.codedict in the tests).
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES: Mapping[OptionColumn, tuple[str, str]] = {
    OptionColumn.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    OptionColumn.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    OptionColumn.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    OptionColumn.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    OptionColumn.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    OptionColumn.RETAIN_PATIENT_CHARACTERISTICS: (
        "113108",
        "Retain Patient Characteristics Option",
    ),
    OptionColumn.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    OptionColumn.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    OptionColumn.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    OptionColumn.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}
METHOD_PREFIX = "dcmexport PS3.15 E.1-1 2026d"

PATIENT_NAME = BaseTag(0x00100010)
PATIENT_ID = BaseTag(0x00100020)
# Values removed from any free text that is cleaned (C) rather than removed.
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
    "AccessionNumber",
    "MedicalRecordLocator",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
)
MIN_IDENTIFIER_LENGTH = 3
# File meta elements that name the sending or receiving system.
META_REMOVED = frozenset(
    {
        0x00020016,  # Source Application Entity Title
        0x00020017,  # Sending Application Entity Title
        0x00020018,  # Receiving Application Entity Title
        0x00020100,  # Private Information Creator UID
        0x00020102,  # Private Information
    }
)
# Burned-in text: modalities and SOP classes that usually carry it (PS3.15 E.3.1 notes
# ultrasound; secondary capture, endoscopy, external camera and "other" are screens/photos).
RISKY_MODALITIES = frozenset({"US", "SC", "XC", "ES", "OT", "DOC"})
SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
SCREEN_CONVERSION_TYPES = frozenset({"WSD", "SD", "SI", "DRW"})


class MapKind(enum.Enum):
    """What one ``--map`` row re-links."""

    PATIENT_ID = "PatientID"
    STUDY_INSTANCE_UID = "StudyInstanceUID"
    SERIES_INSTANCE_UID = "SeriesInstanceUID"
    SOP_INSTANCE_UID = "SOPInstanceUID"
    FRAME_OF_REFERENCE_UID = "FrameOfReferenceUID"
    DATE_OFFSET_DAYS = "DateOffsetDays"


@dataclass(frozen=True)
class MapEntry:
    """One original → pseudonym pair (PHI: only ever written to ``--map``)."""

    kind: MapKind
    original: str
    pseudonym: str

    def as_row(self) -> tuple[str, str, str]:
        return (self.kind.value, self.original, self.pseudonym)


def _keep_option(value: KeepOption | str) -> KeepOption:
    try:
        return KeepOption(value)
    except ValueError:
        choices = ", ".join(option.value for option in KeepOption)
        raise UsageError(f"unknown --keep option {value!r}; choose from {choices}") from None


def _override(pair: tuple[str, str]) -> tuple[str, str]:
    keyword, value = pair
    if tag_for_keyword(keyword) is None:
        raise UsageError(f"--set {keyword}: not a DICOM keyword (e.g. PatientName)")
    return keyword, value


@dataclass(frozen=True)
class DeidOptions:
    """How to de-identify: the key, the retained options and the ``--set`` overrides. (What
    to do with images at risk of burned-in text is the batch's policy; `DeidResult.burned_in`
    is the verdict.)

    `shift_dates` False without ``KeepOption.DATES`` gives the Basic Profile alone: dates
    are removed or emptied as the table says (Longitudinal Temporal Information REMOVED).
    """

    key: bytes
    keep: frozenset[KeepOption] = frozenset()
    overrides: tuple[tuple[str, str], ...] = ()
    shift_dates: bool = True

    def __post_init__(self) -> None:
        if not self.key:
            raise UsageError("the de-identification key is empty; give --key or omit it")
        object.__setattr__(self, "keep", frozenset(_keep_option(k) for k in self.keep))
        object.__setattr__(self, "overrides", tuple(_override(p) for p in self.overrides))

    @property
    def date_handling(self) -> DateHandling:
        if KeepOption.DATES in self.keep:
            return DateHandling.UNMODIFIED
        return DateHandling.MODIFIED if self.shift_dates else DateHandling.REMOVED

    @property
    def columns(self) -> frozenset[OptionColumn]:
        """The option columns of Table E.1-1 in force."""
        columns = {KEEP_COLUMNS[option] for option in self.keep}
        if self.date_handling is DateHandling.MODIFIED:
            columns.add(OptionColumn.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        return frozenset(columns)


@dataclass(frozen=True)
class DeidResult:
    """A de-identified copy, its ``--map`` entries and the burned-in verdict."""

    dataset: Dataset
    map_entries: tuple[MapEntry, ...]
    burned_in: str | None
    date_offset_days: int

    @property
    def sop_instance_uid(self) -> str:
        """The new SOP Instance UID: the pseudonymous id to print in logs and progress."""
        return str(self.dataset.get("SOPInstanceUID", ""))

    @property
    def output_name(self) -> str:
        """A PHI-free file name derived from the new SOP Instance UID."""
        return f"{self.sop_instance_uid or 'instance'}.dcm"


# ----------------------------------------------------------------------------- resolution


def resolve_row(
    row: TableRow, columns: frozenset[OptionColumn]
) -> tuple[tuple[Action, ...], OptionColumn | None]:
    """The (compound) action of a row under the options in force, and the column it came from.

    An option cell replaces the Basic Profile action. When several options in force fill the
    row, C (clean) wins over K (keep), so e.g. a device date under Retain Device Identity and
    Modified Dates is still shifted; among equal codes the standard's column order decides.
    """
    cells = [
        (column, row.options[column])
        for column in OptionColumn
        if column in columns and column in row.options
    ]
    for wanted in (Action.CLEAN, Action.KEEP):
        for column, action in cells:
            if action is wanted:
                return (action,), column
    return row.basic_profile, None


@functools.cache
def _resolved(
    columns: frozenset[OptionColumn],
) -> Mapping[str, tuple[tuple[Action, ...], OptionColumn | None]]:
    rows = list(rows_by_tag().values()) + list(rows_by_kind().values())
    return {row.tag_text: resolve_row(row, columns) for row in rows}


def _row_for(tag: BaseTag) -> TableRow | None:
    group, element = tag >> 16, tag & 0xFFFF
    if 0x5000 <= group <= 0x501E and group % 2 == 0:
        return rows_by_kind()[RowKind.CURVE_GROUP]
    if 0x6000 <= group <= 0x601E and group % 2 == 0:
        kind = RowKind.OVERLAY_COMMENTS if element == 0x4000 else RowKind.OVERLAY_DATA
        # An overlay plane stands or falls with its data: its other elements follow the
        # Overlay Data row (removed with it; under Clean Graphics kept, text cleaned).
        return rows_by_kind()[kind]
    return rows_by_tag().get(int(tag))


# ----------------------------------------------------------------------------- private tags


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _safe_private_tags(ds: Dataset) -> frozenset[int]:
    """Private elements the instance itself declares non-identifying (PS3.3 C.12.1.1.7:
    Private Data Element Characteristics Sequence, Block Identifying Information Status SAFE,
    or MIXED with its Nonidentifying Private Elements), plus their Private Creator elements.

    PS3.15 Table E.3.10-1 (the vendor list of safe private attributes) is not part of the
    shipped table, so only this in-band declaration is trusted."""
    safe: set[int] = set()
    for item in ds.get("PrivateDataElementCharacteristicsSequence", None) or []:
        group = item.get("PrivateGroupReference")
        creator = str(item.get("PrivateCreatorReference", "")).strip()
        status = str(item.get("BlockIdentifyingInformationStatus", "")).strip().upper()
        if group is None or not creator or status not in ("SAFE", "MIXED"):
            continue
        for block in range(0x10, 0x100):
            creator_tag = (int(group) << 16) | block
            if creator_tag in ds and str(ds[creator_tag].value).strip() == creator:
                break
        else:
            continue
        safe.add(creator_tag)
        offsets = (
            range(0x100)
            if status == "SAFE"
            else _as_list(item.get("NonidentifyingPrivateElements"))
        )
        safe.update((int(group) << 16) | (block << 8) | (int(offset) & 0xFF) for offset in offsets)
    return frozenset(safe)


# ----------------------------------------------------------------------------- the walk


_MODE_ORDER = {TextMode.KEEP: 0, TextMode.SCRUB: 1, TextMode.DUMMY: 2}


def _recurse(item: Dataset, ctx: Context, mode: TextMode) -> Dataset:
    previous = ctx.text_mode
    if _MODE_ORDER[mode] > _MODE_ORDER[previous]:
        ctx.text_mode = mode
    try:
        return _deidentify_items(item, ctx)
    finally:
        ctx.text_mode = previous


def _element(
    elem: DataElement, ctx: Context, resolved: Mapping[str, Any], safe: frozenset[int]
) -> DataElement | None:
    tag = elem.tag
    if tag.is_private:
        if int(tag) not in safe:
            return None
        # The Private Attributes row: X, or under Retain Safe Private its C (clean).
        choices, column = resolved[rows_by_kind()[RowKind.PRIVATE].tag_text]
        return ACTIONS[choices[0]](elem, ctx, column)
    if tag.element == 0:  # group lengths are recomputed by the writer
        return None
    row = _row_for(tag)
    if row is None:
        return unlisted(elem, ctx, None)
    choices, column = resolved[row.tag_text]
    action = choose_action(choices, row.keyword if row.tag is not None else "", ctx.enhanced)
    return ACTIONS[action](elem, ctx, column)


def _detached(elem: DataElement) -> DataElement:
    """A new element with the same value, so that changing the output never changes the
    input (immutable values such as the pixel data bytes are shared, not copied)."""
    value = elem.value
    if isinstance(value, MultiValue):
        value = list(value)
    return DataElement(elem.tag, elem.VR, value, is_undefined_length=elem.is_undefined_length)


def _untouched(tag: BaseTag, raw: RawDataElement, ctx: Context) -> bool:
    """True for a still-undecoded element that the profile keeps byte for byte: no row of
    the table, not private, not a sequence, UID, date or free text being cleaned, and not UN
    (an explicit UN may hide a sequence). Such an element is copied raw (it is immutable),
    which is most of the speed: nothing is decoded or re-encoded."""
    if tag.is_private or tag.element == 0 or raw.VR == "UN":
        return False
    if _row_for(tag) is not None:
        return False
    vr = raw.VR or _dictionary_vr(int(tag))
    if vr in _DECODED_VRS:
        return False
    return ctx.text_mode is TextMode.KEEP or vr not in FREE_TEXT_VRS


@functools.cache
def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


_DECODED_VRS = frozenset({"SQ", "UI", "DA", "DT", "UN"})


def _deidentify_items(src: Dataset, ctx: Context) -> Dataset:
    resolved = _resolved(ctx.columns)
    safe = (
        _safe_private_tags(src) if OptionColumn.RETAIN_SAFE_PRIVATE in ctx.columns else frozenset()
    )
    out = Dataset()
    implicit, little = src.original_encoding
    if implicit is not None:
        out.set_original_encoding(implicit, little, src.original_character_set)
    for tag in src.keys():  # noqa: SIM118 (iterating a Dataset decodes every element)
        raw = src.get_item(tag)
        if isinstance(raw, RawDataElement) and _untouched(tag, raw, ctx):
            out[tag] = raw
            continue
        elem = src[tag]
        new = _element(elem, ctx, resolved, safe)
        if new is not None:
            out.add(_detached(new) if new is elem else new)
    return out


# ----------------------------------------------------------------------------- identity


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def patient_key(ds: Dataset) -> str:
    """What identifies the patient for pseudonyms and the date shift: Patient ID, else the
    name, else the study (so files of one unnamed study still share one shift)."""
    for keyword, prefix in (
        ("PatientID", ""),
        ("PatientName", "name:"),
        ("StudyInstanceUID", "study:"),
    ):
        value = _text(ds, keyword)
        if value:
            return prefix + value
    return ""


def _identifiers(ds: Dataset) -> tuple[str, ...]:
    """The instance's identifying values, for cleaning free text that is kept."""
    found: list[str] = []
    sources = [ds, *(ds.get("OtherPatientIDsSequence", None) or [])]
    for item in sources:
        for keyword in IDENTIFIER_KEYWORDS:
            value = item.get(keyword)
            if value is None:
                continue
            for one in _as_list(value):
                text = str(one).strip()
                found.append(text)
                found.extend(part for part in text.replace("=", "^").split("^"))
                found.append(" ".join(p for p in text.split("^") if p))
    return tuple(v for v in {v.strip() for v in found} if len(v) >= MIN_IDENTIFIER_LENGTH)


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.add(DataElement(0x00080100, "SH", value))
    item.add(DataElement(0x00080102, "SH", "DCM"))
    item.add(DataElement(0x00080104, "LO", meaning))
    return item


def _markers(out: Dataset, options: DeidOptions, burned_in: str | None) -> None:
    """Patient Identity Removed, the De-identification Method and its codes (CID 7050),
    Longitudinal Temporal Information Modified, and Burned In Annotation YES when at risk."""
    columns = options.columns
    codes = [BASIC_PROFILE_CODE] + [OPTION_CODES[c] for c in OptionColumn if c in columns]
    out.add(DataElement(0x00120062, "CS", "YES"))
    method = [METHOD_PREFIX, *(meaning[:64] for _, meaning in codes)]
    out.add(DataElement(0x00120063, "LO", method))
    items = [_code_item(value, meaning) for value, meaning in codes]
    out.add(DataElement(0x00120064, "SQ", Sequence(items)))
    out.add(DataElement(0x00280303, "CS", options.date_handling.value))
    if burned_in is not None:
        out.add(DataElement(0x00280301, "CS", "YES"))


def _apply_overrides(out: Dataset, overrides: Iterable[tuple[str, str]]) -> None:
    for keyword, text in overrides:
        tag = tag_for_keyword(keyword)
        assert tag is not None  # checked in DeidOptions
        vr = str(dictionary_VR(tag))
        parts = text.split("\\") if text else []
        converters = {
            "US": int,
            "SS": int,
            "UL": int,
            "SL": int,
            "UV": int,
            "SV": int,
            "FL": float,
            "FD": float,
        }
        convert = converters.get(vr)
        try:
            values: list[Any] = [convert(p) for p in parts] if convert else parts
        except ValueError:
            raise UsageError(f"--set {keyword}: the value is not a number ({vr})") from None
        value: Any = values[0] if len(values) == 1 else (values or "")
        out[tag] = DataElement(tag, vr, value)


def _transfer_syntax(src: Dataset) -> UID:
    """The transfer syntax the input was read in (for inputs without file meta)."""
    implicit, little = getattr(src, "original_encoding", (False, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def _file_meta(src: Dataset, out: Dataset) -> FileMetaDataset:
    """The input's file meta minus the AE titles and private information; the Media Storage
    SOP Class/Instance UIDs follow the new dataset (built when the input had no file meta)."""
    new = FileMetaDataset()
    for elem in getattr(src, "file_meta", None) or []:
        if int(elem.tag) not in META_REMOVED and elem.tag.element != 0:
            new.add(_detached(elem))
    if "TransferSyntaxUID" not in new:
        new.TransferSyntaxUID = _transfer_syntax(src)
    if "SOPInstanceUID" in out:
        new.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    if "SOPClassUID" in out:
        new.MediaStorageSOPClassUID = out.SOPClassUID
    return new


def _map_entries(
    src: Dataset, out: Dataset, offset: int, handling: DateHandling
) -> tuple[MapEntry, ...]:
    entries = []
    for kind in MapKind:
        if kind is MapKind.DATE_OFFSET_DAYS:
            continue
        original, new = _text(src, kind.value), _text(out, kind.value)
        if original:
            entries.append(MapEntry(kind, original, new))
    if handling is DateHandling.MODIFIED:
        entries.append(MapEntry(MapKind.DATE_OFFSET_DAYS, _text(src, "PatientID"), str(offset)))
    return tuple(entries)


# ----------------------------------------------------------------------------- public API


def burned_in_risk(ds: Dataset) -> str | None:
    """Why this image may carry burned-in identifying text, or None.

    Burned In Annotation (0028,0301) YES is a reason; NO is trusted; without the element an
    image of a kind prone to burned-in text (ultrasound, secondary capture, endoscopy,
    external camera, other; a screen capture or scanned document) is a reason too."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    declared = _text(ds, "BurnedInAnnotation").upper()
    if declared == "YES":
        return "Burned In Annotation is YES"
    if declared == "NO":
        return None
    modality = _text(ds, "Modality").upper()
    if modality in RISKY_MODALITIES:
        return f"modality {modality} often has burned-in text and Burned In Annotation is absent"
    if _text(ds, "SOPClassUID").startswith(SECONDARY_CAPTURE_ROOT):
        return "secondary capture image without Burned In Annotation"
    conversion = _text(ds, "ConversionType").upper()
    if conversion in SCREEN_CONVERSION_TYPES:
        return f"conversion type {conversion} (screen or document capture), no Burned In Annotation"
    return None


def deidentify(ds: Dataset, options: DeidOptions) -> DeidResult:
    """A de-identified copy of `ds` (never modified) by Table E.1-1 under `options`.

    Every element at every sequence depth gets its row's action; private elements are
    removed (``safe-private`` keeps the ones the instance declares safe); the file meta's
    Media Storage SOP Instance UID follows the new SOP Instance UID and the Application
    Entity Titles are removed; markers are added; ``--set`` overrides come last. Pixel data
    is the same bytes object as the input's (nothing is decoded).
    """
    key = options.key
    identity = patient_key(ds)
    offset = pseudonyms.date_offset_days(key, identity)
    pseudonym_values: dict[int, str] = {
        PATIENT_NAME: pseudonyms.patient_name_pseudonym(key, identity),
        PATIENT_ID: pseudonyms.patient_id_pseudonym(key, identity),
    }
    ctx = Context(
        key=key,
        columns=options.columns,
        date_handling=options.date_handling,
        date_offset=offset,
        identifiers=functools.partial(_identifiers, ds),
        pseudonym_values=pseudonym_values,
        enhanced="SharedFunctionalGroupsSequence" in ds,
        recurse=_recurse,
    )
    out = _deidentify_items(ds, ctx)
    burned_in = burned_in_risk(ds)
    _markers(out, options, burned_in)
    _apply_overrides(out, options.overrides)
    out.file_meta = _file_meta(ds, out)
    entries = _map_entries(ds, out, offset, options.date_handling)
    return DeidResult(
        dataset=out, map_entries=entries, burned_in=burned_in, date_offset_days=offset
    )


def instance_uid(ds: Dataset, keyword: str, options: DeidOptions) -> str:
    """The value `deidentify` gives the instance UID `keyword` (StudyInstanceUID,
    SeriesInstanceUID, SOPInstanceUID) from a header alone, without the whole walk: the
    batch names outputs with it before the instance is read in full."""
    overrides = dict(options.overrides)
    if keyword in overrides:
        return overrides[keyword]
    value = _text(ds, keyword)
    if KeepOption.UIDS in options.keep:
        return value
    return pseudonyms.keyed_uid(options.key, value)


#: Type 1 in every composite IOD: an instance without one is not storable (or was truncated)
STORABLE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def write_deidentified(ds: Dataset) -> bytes:
    """The bytes of a PS3.10 file (preamble, DICM, file meta) for a de-identified dataset;
    `DeidentificationError` for one without the UIDs every composite instance has."""
    buffer = io.BytesIO()
    save_deidentified(ds, buffer)
    return buffer.getvalue()


def save_deidentified(ds: Dataset, target: str | os.PathLike[str] | BinaryIO) -> None:
    """`write_deidentified` straight into a file: no in-memory copy of the pixel data."""
    missing = [k for k in STORABLE_UIDS if not _text(ds, k)]
    if missing:
        raise DeidentificationError(f"not a storable instance: no {' or '.join(missing)}")
    dcmwrite(target, ds, enforce_file_format=True)


def deidentified_path(ds: Dataset) -> PurePosixPath:
    """``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` from the
    de-identified values only (pseudonymous, so safe as folder and file names)."""
    parts = [
        _text(ds, k) or "unknown" for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
    ]
    safe = ["".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in p) for p in parts]
    return PurePosixPath(*safe, f"{_text(ds, 'SOPInstanceUID') or 'instance'}.dcm")
