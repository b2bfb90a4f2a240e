"""A canary corpus for de-identification tests: pydicom's bundled files with identifying
strings planted in many places (every planted string contains ``CNRY``, every planted date is
one of ``PLANTED_DATES``), so a leak scan is a byte search."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from dcmexport.dicom.pseudonyms import is_well_known_uid

CANARY = b"CNRY"
PLANTED_DATES = ("19610203", "20110304", "20110305")
PATIENTS = {"A": ("CNRYALPHA^JOHN", "CNRYID01"), "B": ("CNRYBRAVO^JANE", "CNRYID02")}


@dataclass
class Planted:
    """A dataset of the corpus and the places where it carries a canary."""

    name: str
    dataset: Dataset
    places: list[str]


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _plant_common(ds: Dataset, patient: str, tag: str) -> list[str]:
    """Plant identifiers at the top level and in nested sequences; returns the places."""
    name, pid = PATIENTS[patient]
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = PLANTED_DATES[0]
    ds.StudyDate = PLANTED_DATES[1]
    ds.ContentDate = PLANTED_DATES[1]
    ds.AcquisitionDateTime = PLANTED_DATES[2] + "101112.5"
    ds.OtherPatientIDsSequence = Sequence(
        [
            _item(
                PatientID=f"CNRY{tag}OPID",
                IssuerOfPatientID=f"CNRY{tag}ISSUER",
                TypeOfPatientID="TEXT",
            )
        ]
    )
    ds.RequestAttributesSequence = Sequence(
        [
            _item(
                RequestedProcedureID=f"CNRY{tag}RPID",
                RequestedProcedureDescription=f"CNRY{tag} RP DESC",
                ScheduledProcedureStepID=f"CNRY{tag}SPS",
                AccessionNumber=f"CNRY{tag}ACC2",
                ScheduledProtocolCodeSequence=Sequence(
                    [
                        _item(
                            CodeValue="123",
                            CodingSchemeDesignator="99CNRY",
                            CodeMeaning=f"CNRY{tag} deep",
                        )
                    ]
                ),
            )
        ]
    )
    ds.PatientComments = f"CNRY{tag} patient comment"
    ds.ImageComments = f"CNRY{tag} image comment"
    ds.AdditionalPatientHistory = f"CNRY{tag} history"
    ds.ReferringPhysicianName = f"CNRY{tag}REF^DOC"
    ds.PerformingPhysicianName = f"CNRY{tag}PERF^DOC"
    ds.NameOfPhysiciansReadingStudy = f"CNRY{tag}READ^DOC"
    ds.OperatorsName = f"CNRY{tag}OP^TECH"
    ds.InstitutionName = f"CNRY{tag} HOSPITAL"
    ds.InstitutionAddress = f"CNRY{tag} street 1"
    ds.StationName = f"CNRY{tag}STN"
    ds.DeviceSerialNumber = f"CNRY{tag}SN"
    ds.AccessionNumber = f"CNRY{tag}ACC"
    ds.StudyID = f"CNRY{tag}SID"
    ds.StudyDescription = f"CNRY{tag} study"
    ds.SeriesDescription = f"CNRY{tag} series"
    ds.ProtocolName = f"CNRY{tag} protocol"
    ds.PatientAddress = f"CNRY{tag} home"
    ds.PatientTelephoneNumbers = f"CNRY{tag}TEL"
    ds.PatientMotherBirthName = f"CNRY{tag}MOTHER"
    ds.RequestingPhysician = f"CNRY{tag}REQ"
    ds.PerformedStationAETitle = f"CNRY{tag}AE"
    # private: a top-level block, a private element nested two levels deep, and a UN one
    block = ds.private_block(0x0011, f"CNRY{tag}VENDOR", create=True)
    block.add_new(0x01, "LO", f"CNRY{tag} private")
    block.add_new(0x02, "UN", f"CNRY{tag} unknown".encode().ljust(16))
    nested = ds.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0]
    nested_block = nested.private_block(0x0013, f"CNRY{tag}NESTED", create=True)
    nested_block.add_new(0x10, "SH", f"CNRY{tag}NPRIV")
    ds.file_meta.SourceApplicationEntityTitle = f"CNRY{tag}SRCAE"
    return [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDsSequence>PatientID",
        "OtherPatientIDsSequence>IssuerOfPatientID",
        "RequestAttributesSequence>RequestedProcedureID",
        "RequestAttributesSequence>RequestedProcedureDescription",
        "RequestAttributesSequence>ScheduledProcedureStepID",
        "RequestAttributesSequence>AccessionNumber",
        "RequestAttributesSequence>ScheduledProtocolCodeSequence>CodeMeaning",
        "PatientComments",
        "ImageComments",
        "AdditionalPatientHistory",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "DeviceSerialNumber",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientMotherBirthName",
        "RequestingPhysician",
        "PerformedStationAETitle",
        "private LO (0011,xx01) and its Private Creator",
        "private UN (0011,xx02)",
        "private SH nested 2 levels deep (0013,xx10)",
        "file meta Source Application Entity Title",
    ]


def _plant_overlay_text(ds: Dataset, tag: str) -> list[str]:
    ds.add(DataElement(0x60000022, "LO", f"CNRY{tag} overlay description"))
    ds.add(DataElement(0x60001500, "LO", f"CNRY{tag} overlay label"))
    ds.add(DataElement(0x50002500, "LO", f"CNRY{tag} curve label"))
    return [
        "Overlay Description (6000,0022)",
        "Overlay Label (6000,1500)",
        "Curve Label (5000,2500)",
    ]


def _plant_sr(ds: Dataset, tag: str) -> list[str]:
    content = ds.ContentSequence
    content.append(
        _item(RelationshipType="CONTAINS", ValueType="TEXT", TextValue=f"CNRY{tag} finding")
    )
    content.append(
        _item(RelationshipType="CONTAINS", ValueType="PNAME", PersonName=f"CNRY{tag}^SR")
    )
    content.append(_item(RelationshipType="CONTAINS", ValueType="DATE", Date=PLANTED_DATES[1]))
    ds.VerifyingObserverSequence = Sequence(
        [
            _item(
                VerifyingObserverName=f"CNRY{tag}VERIFIER",
                VerifyingOrganization=f"CNRY{tag} ORG",
                VerificationDateTime=PLANTED_DATES[2] + "080000",
            )
        ]
    )
    return [
        "ContentSequence>TextValue",
        "ContentSequence>PersonName",
        "ContentSequence>Date",
        "VerifyingObserverSequence>VerifyingObserverName",
    ]


def _plant_waveform(ds: Dataset, tag: str) -> list[str]:
    for item in ds.WaveformAnnotationSequence:
        if "UnformattedTextValue" in item:
            item.UnformattedTextValue = f"CNRY{tag} annotation"
    return ["WaveformAnnotationSequence>UnformattedTextValue"]


# name, pydicom file, patient, extra planting
CORPUS_FILES = (
    ("ct", "CT_small.dcm", "A", None),
    ("mr", "MR_small.dcm", "A", None),
    ("overlay", "examples_overlay.dcm", "B", _plant_overlay_text),
    ("sr", "test-SR.dcm", "B", _plant_sr),
    ("colour", "SC_rgb_small_odd.dcm", "B", None),
    ("ecg", "waveform_ecg.dcm", "A", _plant_waveform),
    ("rtplan", "rtplan.dcm", "B", None),
)


def build_corpus(files_dir: Path) -> list[Planted]:
    """The planted datasets (each read fresh from pydicom's test files)."""
    corpus = []
    for index, (name, filename, patient, extra) in enumerate(CORPUS_FILES):
        ds = dcmread(files_dir / filename, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        tag = f"{index:02d}"
        places = _plant_common(ds, patient, tag)
        if extra is not None:
            places += extra(ds, tag)
        corpus.append(Planted(name, ds, places))
    return corpus


def walk_uids(ds: Dataset) -> Iterator[str]:
    """Every UID value at any depth that names an instance (not a well-known UID)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk_uids(item)
        elif elem.VR == "UI" and elem.value:
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            for value in values:
                if not is_well_known_uid(str(value)):
                    yield str(value)
