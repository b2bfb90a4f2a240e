"""The action codes of PS3.15 E.1.1 as functions, and the choice within a compound code.

Why data + small code: every row of Table E.1-1 names an action code; this module maps each
code to one function (``ACTIONS``) and each option column's C (clean) to one cleaner
(``CLEANERS``), so the engine never needs an ``if`` ladder over attributes.

Choice within a compound code (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``), PS3.15 E.1.1:
"the first action unless IOD conformance requires the next one (Type 3 versus 2 versus 1)".
pydicom ships no IOD/module tables, so ``STRICTEST_TYPE`` records, for each attribute with a
compound code, the strictest Type it has in the IODs that use it (a conditional 1C/2C counts
as 1/2: the element is present, so its condition may hold). The rule:

- Type 1 → D (a dummy), else U*, else Z (its dummy form);
- Type 2 → Z (empty), else D, else U*;
- Type 3 or not listed → the first action (X: removed), which is always valid for Type 3.
- ``X/Z/U*`` (Referenced Image Sequence, Source Image Sequence) → U*: the sequence is kept
  and every instance UID inside is replaced by the same keyed function as everywhere else,
  so a de-identified set keeps its references (they are Type 1C in the IODs that need them).
- Instances of the enhanced multi-frame IODs (they carry a Shared Functional Groups
  Sequence) use the Enhanced General Equipment Module, where Device Serial Number is Type 1,
  and their image modules make Acquisition DateTime Type 1C; ``ENHANCED_TYPE`` holds those.

Being conservative only ever costs an empty or dummy value where removal was allowed; it
never keeps an original value. The outputs are checked with ``dciodvfy`` in the tests.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from . import pseudonyms
from .deid_table import Action, OptionColumn


class DateHandling(enum.Enum):
    """Longitudinal Temporal Information Modified (0028,0303) values: what happened to dates."""

    MODIFIED = "MODIFIED"
    UNMODIFIED = "UNMODIFIED"
    REMOVED = "REMOVED"


class TextMode(enum.Enum):
    """What happens to free text not named by the table inside a sequence being handled."""

    KEEP = "keep"
    SCRUB = "scrub"  # C on a sequence: remove the instance's identifying values from the text
    DUMMY = "dummy"  # D on a sequence: replace every free text value with a dummy


STRICTEST_TYPE: Mapping[str, int] = {
    # X/Z
    "AcquisitionContextSequence": 2,
    "AcquisitionDate": 3,
    "AcquisitionTime": 3,
    "BarcodeValue": 3,
    "LabelText": 3,
    "PatientSexNeutered": 2,
    "ReferencedStudySequence": 3,
    "RequestedProcedureDescription": 2,
    "ReviewerName": 2,
    "SourceSerialNumber": 3,
    "TreatmentMachineName": 2,
    # X/D
    "AcquisitionDeviceProcessingDescription": 3,
    "DetectorID": 3,
    "OperatorIdentificationSequence": 3,
    "ProtocolName": 3,
    "RTTreatmentApproachLabel": 3,
    "TreatmentSite": 3,
    "WaveformAnnotationSequence": 3,
    "InstanceCreationDate": 3,
    "SeriesDate": 3,
    "SeriesTime": 3,
    "DateOfLastDetectorCalibration": 3,
    "TimeOfLastDetectorCalibration": 3,
    "StartAcquisitionDateTime": 3,
    "EndAcquisitionDateTime": 3,
    "ObservationDateTime": 3,
    "FirstTreatmentDate": 3,
    "MostRecentTreatmentDate": 3,
    "IntendedPhaseStartDate": 3,
    "IntendedPhaseEndDate": 3,
    "RTPlanDate": 2,
    "RTPlanTime": 2,
    "TreatmentDate": 2,
    "TreatmentTime": 2,
    # Z/D
    "ContentCreatorName": 2,
    "ContrastBolusAgent": 2,
    "PatientID": 2,
    "ContentDate": 1,
    "ContentTime": 1,
    "InstructionPerformedDateTime": 2,
    # X/Z/D
    "AcquisitionDateTime": 3,
    "DeviceSerialNumber": 3,
    "InstanceCreationTime": 3,
    "InstitutionCodeSequence": 3,
    "InstitutionName": 3,
    "OperatorsName": 2,  # Type 2 in the RT Series Module
    "ReferencedPerformedProcedureStepSequence": 2,  # Type 2 in the SR Document Series
    "StationName": 3,
    # X/Z/U*
    "ReferencedImageSequence": 1,
    "SourceImageSequence": 1,
}

ENHANCED_TYPE: Mapping[str, int] = {"DeviceSerialNumber": 1, "AcquisitionDateTime": 1}

_TYPE_PREFERENCE: Mapping[int, tuple[Action, ...]] = {
    1: (Action.DUMMY, Action.UID_REFERENCES, Action.ZERO),
    2: (Action.ZERO, Action.DUMMY, Action.UID_REFERENCES),
}


def attribute_type(keyword: str, enhanced: bool) -> int:
    """The strictest Type of an attribute with a compound code (3 when unknown)."""
    if enhanced and keyword in ENHANCED_TYPE:
        return ENHANCED_TYPE[keyword]
    return STRICTEST_TYPE.get(keyword, 3)


def choose_action(choices: tuple[Action, ...], keyword: str, enhanced: bool) -> Action:
    """The one action of a (compound) code for this attribute (rule in the module docstring)."""
    if len(choices) == 1:
        return choices[0]
    for action in _TYPE_PREFERENCE.get(attribute_type(keyword, enhanced), ()):
        if action in choices:
            return action
    return choices[0]


# ----------------------------------------------------------------------------- dummy values

DUMMY_TEXT = "ANONYMIZED"
DUMMY_VALUES: Mapping[str, Any] = {
    "AE": DUMMY_TEXT,
    "AS": "000D",
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "TM": "000000",
    "UC": DUMMY_TEXT,
    "UR": "about:blank",
    "UT": DUMMY_TEXT,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OD": bytes(8),
    "OF": bytes(4),
    "OL": bytes(4),
    "OV": bytes(8),
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}
FREE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
DATE_VRS = frozenset({"DA", "DT"})
# ----------------------------------------------------------------------------- context


@dataclass
class Context:
    """Per-instance state of one de-identification (never shared between instances)."""

    key: bytes
    columns: frozenset[OptionColumn]
    date_handling: DateHandling
    date_offset: int
    identifiers: Callable[[], tuple[str, ...]]  # computed only when some text is cleaned
    pseudonym_values: Mapping[int, str]
    enhanced: bool
    recurse: Callable[[Dataset, Context, TextMode], Dataset]
    text_mode: TextMode = TextMode.KEEP
    _scrubber: re.Pattern[str] | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        """Remove every identifying value of the instance from a free text (case-insensitive)."""
        if self._scrubber is None:
            identifiers = self.identifiers()
            if not identifiers:
                return text
            alternatives = sorted(set(identifiers), key=len, reverse=True)
            pattern = "|".join(re.escape(value) for value in alternatives)
            self._scrubber = re.compile(pattern, re.IGNORECASE)
        return self._scrubber.sub("", text)

    def uid(self, value: str) -> str:
        return pseudonyms.keyed_uid(self.key, value)


Handler = Callable[[DataElement, Context, "OptionColumn | None"], "DataElement | None"]


def _values(elem: DataElement) -> list[Any]:
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [] if value is None or value == "" else [value]


def _with_values(elem: DataElement, values: list[Any]) -> DataElement:
    if not values:
        return DataElement(elem.tag, elem.VR, empty_value_for_VR(elem.VR))
    return DataElement(elem.tag, elem.VR, values if len(values) > 1 else values[0])


def _sequence(elem: DataElement, ctx: Context, mode: TextMode) -> DataElement:
    items = [ctx.recurse(item, ctx, mode) for item in elem.value or []]
    return DataElement(elem.tag, "SQ", Sequence(items))


# ----------------------------------------------------------------------------- the actions


def remove(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """X: the element is removed."""
    return None


def zero(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """Z: a zero-length value; for the patient's name and ID the allowed "dummy" form of Z,
    the keyed pseudonym, so one patient stays one patient across files."""
    if elem.tag in ctx.pseudonym_values:
        return DataElement(elem.tag, elem.VR, ctx.pseudonym_values[elem.tag])
    if elem.VR == "SQ":
        return DataElement(elem.tag, "SQ", Sequence())
    return DataElement(elem.tag, elem.VR, empty_value_for_VR(elem.VR))


def dummy(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """D: a non-zero-length dummy valid for the VR. UIDs get their keyed replacement (a valid
    dummy that keeps references consistent); a sequence keeps its items, processed by the
    profile, with every free text inside replaced by a dummy."""
    if elem.tag in ctx.pseudonym_values:
        return DataElement(elem.tag, elem.VR, ctx.pseudonym_values[elem.tag])
    if elem.VR == "SQ":
        return _sequence(elem, ctx, TextMode.DUMMY)
    if elem.VR == "UI":
        values = [ctx.uid(str(v)) for v in _values(elem)] or [ctx.uid(str(elem.tag))]
        return _with_values(elem, values)
    return DataElement(elem.tag, elem.VR, DUMMY_VALUES.get(elem.VR, b"\x00\x00"))


def replace_uid(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """U: every value replaced by the keyed UID (well-known UIDs stay)."""
    if elem.VR == "SQ":
        return _sequence(elem, ctx, ctx.text_mode)
    return _with_values(elem, [ctx.uid(str(v)) for v in _values(elem)])


def replace_referenced_uids(
    elem: DataElement, ctx: Context, column: OptionColumn | None
) -> DataElement | None:
    """U*: the sequence stays; the instance UIDs it contains are replaced (by their own rows
    or the rule for UIDs the table does not name)."""
    if elem.VR != "SQ":
        return replace_uid(elem, ctx, column)
    return _sequence(elem, ctx, ctx.text_mode)


def keep(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """K: unchanged; a sequence is kept and its items are processed by the profile."""
    if elem.VR == "SQ":
        return _sequence(elem, ctx, ctx.text_mode)
    return elem


def clean_temporal(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement:
    """C of Retain Longitudinal Temporal Information with Modified Dates: DA and the date part
    of DT move by the patient's whole-day offset; times of day (TM) stay; a value that is not
    a date is emptied rather than kept."""
    shifters = {"DA": pseudonyms.shift_da, "DT": pseudonyms.shift_dt}
    shift = shifters.get(elem.VR)
    if shift is None:
        return elem
    shifted = [shift(str(v), ctx.date_offset) for v in _values(elem)]
    return _with_values(elem, [v for v in shifted if v])


def clean_text(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement:
    """C of the descriptive options: free text keeps its meaning minus every identifying value
    of the instance (names, IDs, birth date, institution, …); a sequence is kept and processed
    by the profile with its free text cleaned the same way; other VRs stay."""
    if elem.VR == "SQ":
        return _sequence(elem, ctx, TextMode.SCRUB)
    if elem.VR in FREE_TEXT_VRS or elem.VR in ("AE", "UR"):
        return _with_values(elem, [ctx.scrub(str(v)) for v in _values(elem)])
    if elem.VR in DATE_VRS:
        return unlisted(elem, ctx, column) or elem
    return elem


def clean(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """C: the cleaner of the option column that asked for it."""
    cleaner = CLEANERS.get(column, clean_text) if column is not None else clean_text
    return cleaner(elem, ctx, column)


def unlisted(elem: DataElement, ctx: Context, column: OptionColumn | None) -> DataElement | None:
    """An attribute the table does not name: kept, except what would re-identify by itself.

    Sequences are processed item by item; UIDs are replaced (unless Retain UIDs) so that
    references the table does not list still resolve to the new UIDs; DA/DT follow the date
    handling (shifted, kept or emptied) so no true date survives by omission; free text inside
    a sequence being cleaned or dummied follows that sequence's text mode.
    """
    vr = elem.VR
    if vr == "SQ":
        return _sequence(elem, ctx, ctx.text_mode)
    if vr == "UI":
        if OptionColumn.RETAIN_UIDS in ctx.columns:
            return elem
        return replace_uid(elem, ctx, column)
    if vr in DATE_VRS:
        return DATE_HANDLERS[ctx.date_handling](elem, ctx, column)
    if vr in FREE_TEXT_VRS and ctx.text_mode is not TextMode.KEEP:
        if ctx.text_mode is TextMode.SCRUB:
            return clean_text(elem, ctx, column)
        # Dummy content keeps no text at all, coded entries included: a code can identify
        # too (Person Identification Code Sequence holds a person's code and name).
        if _values(elem):
            return DataElement(elem.tag, vr, DUMMY_VALUES[vr])
    return elem


ACTIONS: Mapping[Action, Handler] = {
    Action.REMOVE: remove,
    Action.ZERO: zero,
    Action.DUMMY: dummy,
    Action.UID: replace_uid,
    Action.UID_REFERENCES: replace_referenced_uids,
    Action.KEEP: keep,
    Action.CLEAN: clean,
}

CLEANERS: Mapping[OptionColumn | None, Handler] = {
    OptionColumn.RETAIN_LONGITUDINAL_MODIFIED_DATES: clean_temporal,
    OptionColumn.CLEAN_DESCRIPTORS: clean_text,
    OptionColumn.CLEAN_STRUCTURED_CONTENT: clean_text,
    OptionColumn.CLEAN_GRAPHICS: clean_text,
    OptionColumn.RETAIN_PATIENT_CHARACTERISTICS: clean_text,
    OptionColumn.RETAIN_DEVICE_IDENTITY: clean_text,
    OptionColumn.RETAIN_SAFE_PRIVATE: clean_text,
}

DATE_HANDLERS: Mapping[DateHandling, Handler] = {
    DateHandling.MODIFIED: clean_temporal,
    DateHandling.UNMODIFIED: keep,
    DateHandling.REMOVED: zero,
}
