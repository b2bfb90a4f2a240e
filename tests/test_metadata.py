"""Tests for `dcmexport.dicom.metadata`, the library behind ``dcmexport info``.

The JSON Model is compared element by element with DCMTK's ``dcm2json`` for every DICOM file
bundled with pydicom that dcm2json reads (`compare_models` says how values are normalised);
`dcm2json_agreement()` gives the overall figure, and ``python -m tests.test_metadata`` prints
it with the per-file minimum.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dcmexport import errors
from dcmexport.dicom.decoding import read_dataset
from dcmexport.dicom.metadata import (
    dump_lines,
    element_lines,
    find_elements,
    format_value,
    parse_tag,
    select_elements,
    to_json_model,
)

from .conftest import dcmtk_tool, pydicom_file, pydicom_test_files_dir

DATA_ROOT = pydicom_test_files_dir().parent
#: Per-file and overall share of elements on which we must agree with dcm2json.
MIN_AGREEMENT = 0.98
#: Elements we write differently from dcm2json on purpose; left out of the agreement.
DELIBERATE = {
    "00080005": "Specific Character Set: we keep the file's value; dcm2json writes ISO_IR 192 "
    "for the UTF-8 it converted to (CP-2518 allows the original)",
}
#: Bundled files that are not DICOM, or too broken for anyone to read.
NOT_DICOM = {
    "test_files/README.txt": "text",
    "test_files/dicomdirtests/README.txt": "text",
    "charset_files/FileInfo.txt": "text",
    "test_files/crayons.icc": "ICC profile",
    "test_files/rtplan.dump": "dcmdump text",
    "test_files/test1.json": "JSON",
    "test_files/zipMR.gz": "gzip",
    "test_files/no_meta.dcm": "lacks its first byte: dcm2json rejects it too",
}


def _bundled_files() -> list[Path]:
    roots = (DATA_ROOT / "test_files", DATA_ROOT / "charset_files")
    return sorted(p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file())


def _name(path: Path) -> str:
    return path.relative_to(DATA_ROOT).as_posix()


@functools.cache
def _dicom_files() -> tuple[Path, ...]:
    found = []
    for path in _bundled_files():
        try:
            read_dataset(path, stop_before_pixels=True)
        except errors.NotDicomError:
            continue
        found.append(path)
    return tuple(found)


def _dicom_params() -> list[Any]:
    return [pytest.param(path, id=_name(path)) for path in _dicom_files()]


@pytest.fixture(scope="session")
def dcm2json() -> str:
    return dcmtk_tool("dcm2json")


# --- the differential test against dcm2json ---------------------------------------------


@dataclass
class Comparison:
    """How one file's JSON (or all files' together) compares with dcm2json's."""

    compared: int = 0
    agreed: int = 0
    un_reread: int = 0  # UN on one side, read with the other side's VR, then equal
    differences: list[str] = field(default_factory=list)
    deliberate: list[str] = field(default_factory=list)
    skipped: str | None = None  # why dcm2json gave nothing to compare with

    @property
    def ratio(self) -> float:
        return self.agreed / self.compared if self.compared else 1.0

    @property
    def strict_ratio(self) -> float:
        """Without the UN re-reading, and the deliberate differences counted as differences."""
        compared = self.compared + len(self.deliberate)
        return (self.agreed - self.un_reread) / compared if compared else 1.0

    def add(self, other: Comparison) -> None:
        self.compared += other.compared
        self.agreed += other.agreed
        self.un_reread += other.un_reread
        self.differences += other.differences
        self.deliberate += other.deliberate


def _run_dcm2json(path: Path) -> tuple[dict[str, Any] | None, str, bool]:
    """dcm2json's model of `path`: (model or None, why not, pixel data stripped).

    dcm2json 3.6.7 refuses encapsulated pixel data; for those files we compare the rest,
    with Pixel Data removed by ``dcmodify`` (which also drops Data Set Trailing Padding).
    """
    result = subprocess.run(["dcm2json", "-fc", str(path)], capture_output=True, timeout=60)
    stripped = False
    if result.returncode != 0 and b"compressed pixel data" in result.stderr:
        if shutil.which("dcmodify") is None:
            return None, "dcm2json refuses compressed pixel data and dcmodify is missing", False
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "copy.dcm"
            shutil.copyfile(path, copy)
            subprocess.run(["dcmodify", "-q", "-nb", "-ea", "(7fe0,0010)", str(copy)], check=True)
            result = subprocess.run(["dcm2json", "-fc", str(copy)], capture_output=True)
        stripped = True
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        return None, f"dcm2json cannot read it: {reason[-1][:150]}", stripped
    try:
        return json.loads(result.stdout.decode("utf-8")), "", stripped
    except UnicodeDecodeError:
        return None, "dcm2json wrote invalid UTF-8 (its character set conversion failed)", stripped


@functools.cache
def compare_file(path: Path) -> Comparison:
    """Our `to_json_model(bulk=True)` against ``dcm2json FILE``, element by element."""
    theirs, why_not, stripped = _run_dcm2json(path)
    if theirs is None:
        return Comparison(skipped=why_not)
    ours = to_json_model(read_dataset(path), bulk=True)
    if stripped:
        for key in ("7FE00010", "FFFCFFFC"):
            ours.pop(key, None)
    comparison = Comparison()
    compare_models(ours, theirs, comparison)
    return comparison


def compare_models(
    ours: dict[str, Any], theirs: dict[str, Any], result: Comparison, where: str = ""
) -> None:
    """Compare two JSON Model datasets, recursing into sequence items.

    Every element at every depth counts once (a sequence counts once for its VR and item
    count, and its items' elements count on their own). Normalisation: numbers compare as
    floats within 1e-6 relative; strings and person name groups are stripped; InlineBinary
    compares as the decoded bytes (DCMTK's NUL padding of an odd length ignored); where one
    side says UN and the other a real VR (pydicom and DCMTK know different private
    dictionaries, and pydicom replaces an explicit UN by the dictionary VR) the UN bytes are
    read with the other VR before comparing.
    """
    for key in sorted(set(ours) | set(theirs)):
        path = f"{where}{key}"
        if key in DELIBERATE:
            result.deliberate.append(path)
            continue
        result.compared += 1
        mine, other = ours.get(key), theirs.get(key)
        if mine is None or other is None:
            side = "ours" if mine is None else "dcm2json's"
            result.differences.append(f"{path}: missing from {side} ({mine or other})")
            continue
        if mine["vr"] != other["vr"] and "UN" in (mine["vr"], other["vr"]):
            if mine["vr"] == "UN":
                mine = _reread_un(key, mine, other["vr"])
            else:
                other = _reread_un(key, other, mine["vr"])
            result.un_reread += 1
        if mine["vr"] != other["vr"]:
            result.differences.append(f"{path}: VR {mine['vr']} vs dcm2json {other['vr']}")
        elif mine["vr"] == "SQ":
            items, their_items = mine.get("Value", []), other.get("Value", [])
            if len(items) != len(their_items):
                result.differences.append(f"{path}: {len(items)} vs {len(their_items)} items")
                continue
            result.agreed += 1
            for number, (item, their_item) in enumerate(zip(items, their_items, strict=True)):
                compare_models(item, their_item, result, f"{path}[{number}].")
        elif _same_value(mine, other):
            result.agreed += 1
        else:
            result.differences.append(f"{path}: {_short(mine)} vs dcm2json {_short(other)}")


def _reread_un(key: str, element: dict[str, Any], vr: str) -> dict[str, Any]:
    data = base64.b64decode(element.get("InlineBinary", ""))
    raw = RawDataElement(Tag(int(key, 16)), vr, len(data), data, 0, False, True)
    return to_json_model(Dataset({raw.tag: raw}), bulk=True)[key]


def _same_value(mine: dict[str, Any], other: dict[str, Any]) -> bool:
    if "InlineBinary" in mine or "InlineBinary" in other:
        data = base64.b64decode(mine.get("InlineBinary", ""))
        their_data = base64.b64decode(other.get("InlineBinary", ""))
        if len(data) % 2 and their_data == data + b"\x00":  # DCMTK pads odd lengths
            return True
        return data == their_data
    values, their_values = mine.get("Value", []), other.get("Value", [])
    return len(values) == len(their_values) and all(
        _same(_normalised(a), _normalised(b)) for a, b in zip(values, their_values, strict=True)
    )


def _normalised(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):  # a person name
        return {k: v.strip() for k, v in value.items() if v.strip()}
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return bool(a == b)


def _short(element: dict[str, Any]) -> str:
    text = json.dumps(element, ensure_ascii=False)
    return text if len(text) < 120 else text[:117] + "..."


def test_compare_models_finds_differences() -> None:
    """The comparison itself: equal after normalisation, and each kind of difference counted."""
    ours = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
        "00180050": {"vr": "DS", "Value": [5.0]},
        "00091001": {"vr": "LO", "Value": ["E25"]},
        "00101002": {"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "Value": ["A"]}}]},
        "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]},
    }
    theirs = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J "}]},
        "00180050": {"vr": "DS", "Value": [5.0000001]},
        "00091001": {"vr": "UN", "InlineBinary": base64.b64encode(b"E25 ").decode()},
        "00101002": {"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "Value": ["A"]}}]},
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
    }
    same = Comparison()
    compare_models(ours, theirs, same)
    assert (same.compared, same.agreed, same.un_reread, same.deliberate) == (5, 5, 1, ["00080005"])
    theirs["00180050"]["Value"] = [5.1]
    theirs["00101002"]["Value"][0]["00100020"]["Value"] = ["B"]
    theirs["00200013"] = {"vr": "IS", "Value": [1]}
    different = Comparison()
    compare_models(ours, theirs, different)
    assert (different.compared, different.agreed) == (6, 3)
    assert [d.split(":")[0] for d in different.differences] == [
        "00101002[0].00100020",
        "00180050",
        "00200013",
    ]


def dcm2json_agreement() -> tuple[Comparison, dict[str, Comparison]]:
    """The overall comparison over every bundled DICOM file dcm2json reads, and per file."""
    total, per_file = Comparison(), {}
    for path in _dicom_files():
        comparison = compare_file(path)
        per_file[_name(path)] = comparison
        if comparison.skipped is None:
            total.add(comparison)
    return total, per_file


def agreement_summary() -> str:
    total, per_file = dcm2json_agreement()
    compared = {name: c for name, c in per_file.items() if c.skipped is None}
    lowest = min(compared, key=lambda name: compared[name].ratio)
    strict_lowest = min(compared, key=lambda name: compared[name].strict_ratio)
    return (
        f"info --json vs dcm2json: {total.agreed}/{total.compared} elements agree "
        f"({100 * total.ratio:.2f} %) over {len(compared)} files "
        f"({len(per_file) - len(compared)} skipped: dcm2json cannot read them); "
        f"lowest file {lowest} {100 * compared[lowest].ratio:.2f} %; "
        f"{total.un_reread} UN elements re-read with the other side's VR; "
        f"{len(total.deliberate)} deliberate differences left out ({', '.join(DELIBERATE)}). "
        f"Strictly (UN vs VR and the deliberate ones counted as differences): "
        f"{100 * total.strict_ratio:.2f} %, lowest file {strict_lowest} "
        f"{100 * compared[strict_lowest].strict_ratio:.2f} %"
    )


@pytest.mark.dcmtk
@pytest.mark.parametrize("path", _dicom_params())
def test_json_agrees_with_dcm2json(path: Path, dcm2json: str) -> None:
    comparison = compare_file(path)
    if comparison.skipped:
        pytest.skip(comparison.skipped)
    assert comparison.compared > 0
    assert comparison.ratio >= MIN_AGREEMENT, "\n".join(comparison.differences)


@pytest.mark.dcmtk
def test_overall_agreement_with_dcm2json(dcm2json: str) -> None:
    total, per_file = dcm2json_agreement()
    print(agreement_summary())
    assert total.ratio >= MIN_AGREEMENT, "\n".join(total.differences)
    assert sum(c.skipped is None for c in per_file.values()) >= 100  # the comparison ran


# --- the JSON Model on hand-built datasets ----------------------------------------------


def _raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    """An element as read from an Explicit VR Little Endian file, not yet converted."""
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _dataset(*elements: RawDataElement) -> Dataset:
    return Dataset({element.tag: element for element in elements})


def test_json_value_types() -> None:
    ds = _dataset(
        _raw(0x00080000, "UL", (42).to_bytes(4, "little")),  # group length: left out
        _raw(0x00080008, "CS", b"ORIGINAL\\\\AXIAL "),
        _raw(0x00100010, "PN", b"Doe^John^^^"),
        _raw(0x00101001, "PN", b"A^B\\\\=Yamada"),
        _raw(0x00181150, "IS", b"1601"),
        _raw(0x00200032, "DS", b"-158.5\\5.000000\\1e3 "),
        _raw(0x00280008, "IS", b"1A"),
        _raw(0x00280009, "AT", bytes.fromhex("2800 1000")),
        _raw(0x00280010, "US", (128).to_bytes(2, "little")),
        _raw(0x00281052, "DS", b""),
        _raw(0x00431040, "FL", bytes.fromhex("0000c07f")),  # NaN
    )
    model = to_json_model(ds)
    assert "00080000" not in model
    assert model["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}
    assert model["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert model["00101001"]["Value"] == [{"Alphabetic": "A^B"}, None, {"Ideographic": "Yamada"}]
    assert model["00181150"]["Value"] == [1601]
    assert model["00200032"]["Value"] == [-158.5, 5.0, 1000.0]
    assert model["00280008"] == {"vr": "IS", "Value": ["1A"]}  # not a number: kept as is
    assert model["00280009"]["Value"] == ["00280010"]
    assert model["00280010"]["Value"] == [128]
    assert model["00281052"] == {"vr": "DS"}
    assert model["00431040"]["Value"] == ["NaN"]
    json.dumps(model, allow_nan=False)


def test_json_values_the_vr_does_not_allow_stay_strings() -> None:
    """As dcm2json writes them (PS3.18 F.2.3.1): IS that is not a 32-bit integer, DS over
    16 characters, SV/UV beyond what a JSON reader holds exactly."""
    ds = _dataset(
        _raw(0x00181150, "IS", b"1.0\\4294967296\\-2147483648"),
        _raw(0x00200032, "DS", b"0.488281249999999999\\0.5"),
        _raw(0x00720082, "SV", (2**60).to_bytes(8, "little", signed=True)),
    )
    model = to_json_model(ds)
    assert model["00181150"]["Value"] == ["1.0", "4294967296", -2147483648]
    assert model["00200032"]["Value"] == ["0.488281249999999999", 0.5]
    assert model["00720082"]["Value"] == [str(2**60)]


def test_json_strips_leading_padding_where_it_is_padding() -> None:
    """PS3.5 Table 6.2-1: leading spaces are not significant in CS, SH, LO (nor PN groups);
    LT, ST and UT keep them."""
    ds = _dataset(
        _raw(0x00080008, "CS", b" ORIGINAL\\ PRIMARY"),
        _raw(0x00100020, "LO", b"  12345 "),
        _raw(0x00100010, "PN", b" Doe^John"),
        _raw(0x00104000, "LT", b"  indented "),
    )
    model = to_json_model(ds)
    assert model["00080008"]["Value"] == ["ORIGINAL", "PRIMARY"]
    assert model["00100020"]["Value"] == ["12345"]
    assert model["00100010"]["Value"] == [{"Alphabetic": "Doe^John"}]
    assert model["00104000"]["Value"] == ["  indented"]


def test_implicit_vr_ambiguous_elements_are_numbers(tmp_path: Path) -> None:
    """Retired "US or SS" elements pydicom leaves as bytes are US numbers (implicit VR is
    little endian); LUT Descriptors are US even in a signed image, as in dcm2json."""
    ds = Dataset()
    ds.PixelRepresentation = 1
    ds.add_new(0x00280071, "US", 7)  # Perimeter Value (retired), "US or SS"
    ds.add_new(0x00281101, "US", [256, 0, 16])  # Red Palette Color LUT Descriptor
    ds.add_new(0x00281200, "OW", b"\x01\x00\x02\x00")  # Gray LUT Data (retired)
    path = tmp_path / "implicit.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    model = to_json_model(read_dataset(path), bulk=True)
    assert model["00280071"] == {"vr": "US", "Value": [7]}
    assert model["00281101"] == {"vr": "US", "Value": [256, 0, 16]}
    assert model["00281200"]["vr"] == "OW"
    assert base64.b64decode(model["00281200"]["InlineBinary"]) == b"\x01\x00\x02\x00"


def test_json_sequences_and_private_elements() -> None:
    item = Dataset()
    item.PatientID = "ABC"
    ds = Dataset()
    ds.OtherPatientIDsSequence = Sequence([item, Dataset()])
    ds.ReferencedImageSequence = Sequence()
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private value")
    model = to_json_model(ds)
    assert model["00101002"] == {
        "vr": "SQ",
        "Value": [{"00100020": {"vr": "LO", "Value": ["ABC"]}}, {}],
    }
    assert model["00081140"] == {"vr": "SQ"}
    assert model["00090010"] == {"vr": "LO", "Value": ["ACME 1.0"]}
    assert model["00091001"] == {"vr": "LO", "Value": ["private value"]}


def test_json_bulk_data_left_out_unless_asked() -> None:
    ds = Dataset()
    ds.PatientName = "X"
    ds.add_new(0x00431028, "OB", b"\x01\x02\x03")
    ds.PixelData = b"\x00\x01" * 8
    ds["PixelData"].VR = "OW"
    without = to_json_model(ds)
    assert without["00431028"] == {"vr": "OB"}
    assert without["7FE00010"] == {"vr": "OW"}
    with_bulk = to_json_model(ds, bulk=True)
    assert base64.b64decode(with_bulk["00431028"]["InlineBinary"]) == b"\x01\x02\x03"
    assert base64.b64decode(with_bulk["7FE00010"]["InlineBinary"]) == b"\x00\x01" * 8


def test_json_leaves_out_file_meta() -> None:
    ds = read_dataset(pydicom_file("CT_small.dcm"))
    assert not [key for key in to_json_model(ds) if key.startswith("0002")]


def test_an_element_pydicom_cannot_convert_is_shown_raw() -> None:
    ds = _dataset(_raw(0x00100010, "PN", b"A^B "), _raw(0x00280008, "ZZ", b"1A"))
    with pytest.raises(NotImplementedError):
        _ = ds[0x00280008]  # pydicom rejects the VR code
    assert to_json_model(ds) == {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]},
        "00280008": {"vr": "IS", "Value": ["1A"]},
    }
    [line] = [line for line in dump_lines(ds) if line.startswith("(0028,0008) Number of Frames")]
    assert line.endswith("IS: 1A")


def test_big_endian_bulk_data_is_little_endian() -> None:
    little = read_dataset(pydicom_file("MR_small.dcm"))
    big = read_dataset(pydicom_file("MR_small_bigendian.dcm"))
    assert to_json_model(big, bulk=True)["7FE00010"] == to_json_model(little, bulk=True)["7FE00010"]


# --- every bundled file: no crash, valid JSON ------------------------------------------


@pytest.mark.parametrize("path", _dicom_params())
def test_every_bundled_file_dumps_and_converts(path: Path) -> None:
    ds = read_dataset(path)
    assert dump_lines(ds)
    model = to_json_model(ds)
    json.dumps(model, allow_nan=False)
    json.dumps(to_json_model(ds, bulk=True), allow_nan=False)
    bulk_values = [e for e in _all_elements(model) if "InlineBinary" in e or "BulkDataURI" in e]
    assert not bulk_values


def _all_elements(model: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for element in model.values():
        found.append(element)
        if element["vr"] == "SQ":
            for item in element.get("Value", []):
                found += _all_elements(item)
    return found


# --- --tag ------------------------------------------------------------------------------

TAG_FORMS = ["PatientName", "patientname", "0010,0010", "(0010,0010)", "0x00100010", "0x100010"]


@pytest.mark.parametrize("text", [*TAG_FORMS, " (0010, 0010) ", "00100010", "0X100010"])
def test_parse_tag_forms(text: str) -> None:
    tag = parse_tag(text)
    assert isinstance(tag, pydicom.tag.BaseTag)
    assert tag == 0x00100010


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x281050", 0x00281050),
        ("28,1050", 0x00281050),
        ("WindowCenter", 0x00281050),
        ("0009,1001", 0x00091001),
        ("OverlayData", 0x60003000),
        ("(7FE0,0010)", 0x7FE00010),
    ],
)
def test_parse_tag_more(text: str, expected: int) -> None:
    assert parse_tag(text) == expected


@pytest.mark.parametrize(
    "text", ["", "Patient Name", "0010,00100", "(0010,0010", "0xZZ", "0x123456789", "PatientNam"]
)
def test_parse_tag_rejects_with_a_usage_error(text: str) -> None:
    with pytest.raises(errors.UsageError, match="GGGG,EEEE"):
        parse_tag(text)


def test_parse_tag_suggests_keywords() -> None:
    with pytest.raises(errors.UsageError, match="PatientName"):
        parse_tag("PatientNam")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_files/CT_small.dcm", "'CompressedSamples^CT1'"),
        ("test_files/MR_small_bigendian.dcm", "'CompressedSamples^MR1'"),
        ("test_files/ExplVR_BigEndNoMeta.dcm", None),
        ("test_files/rtplan.dcm", "'Last^First^mid^pre'"),
        ("charset_files/chrFren.dcm", "'Buc^Jérôme'"),
        ("charset_files/chrH31.dcm", "'Yamada^Tarou=山田^太郎=やまだ^たろう'"),
    ],
)
def test_tag_forms_print_the_same_value(name: str, expected: str | None) -> None:
    ds = read_dataset(DATA_ROOT / name)
    selected = select_elements(ds, [parse_tag(form) for form in TAG_FORMS])
    printed = {format_value(element) if element else None for _, element in selected}
    assert printed == {expected}
    assert {tag for tag, _ in selected} == {0x00100010}


def test_select_elements_reports_missing_and_reads_file_meta() -> None:
    ds = read_dataset(pydicom_file("CT_small.dcm"))
    tags = [parse_tag(t) for t in ("TransferSyntaxUID", "0x00181150", "PatientComments")]
    (_, meta), (_, exposure), (missing_tag, missing) = select_elements(ds, tags)
    assert meta is not None
    assert format_value(meta) == "1.2.840.10008.1.2.1 (Explicit VR Little Endian)"
    assert exposure is not None and format_value(exposure) == "1601"
    assert missing is None and missing_tag == 0x00104000


def test_element_lines_of_a_sequence() -> None:
    ds = read_dataset(pydicom_file("CT_small.dcm"))
    [(_, sequence)] = select_elements(ds, [parse_tag("OtherPatientIDsSequence")])
    assert sequence is not None
    lines = element_lines(sequence)
    assert lines[0].startswith("(0010,1002) Other Patient IDs Sequence")
    assert lines[0].endswith("SQ: 2 items")
    assert lines[1] == "  Item 1 of 2"
    assert lines[2].startswith("    (0010,0020) Patient ID") and lines[2].endswith("'ABCD1234'")


# --- the text dump ----------------------------------------------------------------------


def test_dump_file_meta_first() -> None:
    lines = dump_lines(read_dataset(pydicom_file("CT_small.dcm")))
    assert lines[0].startswith("File Meta Information --")
    assert lines[1].startswith("(0002,0000) File Meta Information Group Length")
    rule = lines.index("-" * 49)
    assert all(line.startswith("(0002,") for line in lines[1:rule])
    assert lines[rule + 1].startswith("(0008,0005) Specific Character Set")
    assert lines[rule + 1].endswith("CS: 'ISO_IR 100'")


def test_dump_columns_are_aligned() -> None:
    lines = dump_lines(read_dataset(pydicom_file("MR_small.dcm")))
    columns = {line.index(" UI: ") for line in lines if " UI: " in line}
    assert len(columns) == 1
    [name_line] = [line for line in lines if line.startswith("(0010,0010)")]
    assert name_line == f"{'(0010,0010) Patient' + chr(39) + 's Name':<{columns.pop() + 1}}PN: " + (
        "'CompressedSamples^MR1'"
    )


def test_dump_nests_sequences() -> None:
    lines = dump_lines(read_dataset(pydicom_file("nested_priv_SQ.dcm")))
    start = next(i for i, line in enumerate(lines) if line.startswith("(0001,0001)"))
    assert lines[start].endswith("SQ: 1 item")
    assert lines[start + 1] == "  Item 1 of 1"
    assert lines[start + 2].startswith("    (0001,0001)")
    assert lines[start + 2].endswith("SQ: 1 item")
    assert lines[start + 3] == "      Item 1 of 1"
    assert lines[start + 4].startswith("        (0001,0001)")
    assert lines[start + 4].endswith("UN: b'Double Nested SQ'")
    assert lines[start + 5].startswith("    (0001,0002)")


def test_dump_shows_private_creators() -> None:
    lines = dump_lines(read_dataset(pydicom_file("CT_small.dcm")))
    [line] = [line for line in lines if line.startswith("(0009,1001)")]
    assert line.startswith("(0009,1001) [GEMS_IDEN_01] Full fidelity ")
    assert line.endswith("LO: 'GE_GENESIS_FF'")
    ds = Dataset()
    ds.private_block(0x0029, "SIEMENS CT VA0 COAD", create=True).add_new(0x01, "LO", "x")
    assert dump_lines(ds)[1].startswith("(0029,1001) [SIEMENS CT VA0 COAD] Private tag data ")


def test_dump_shortens_long_values_unless_full() -> None:
    ds = read_dataset(pydicom_file("CT_small.dcm"))
    ds.ImageComments = "x" * 500
    short, full = dump_lines(ds), dump_lines(ds, full=True)
    [pixels] = [line for line in short if line.startswith("(7FE0,0010)")]
    assert pixels.endswith("OW: <32768 bytes>")
    [pixels] = [line for line in full if line.startswith("(7FE0,0010)")]
    assert pixels.split("OW: ")[1] == repr(ds.PixelData)
    [comment] = [line for line in short if line.startswith("(0020,4000)")]
    assert comment.endswith("...' <500 chars>") and len(comment) < 160
    [comment] = [line for line in full if line.startswith("(0020,4000)")]
    assert comment.endswith("LT: '" + "x" * 500 + "'")
    ds.ImageType = [f"VALUE{i}" for i in range(30)]
    [types] = [line for line in dump_lines(ds) if line.startswith("(0008,0008)")]
    assert types.endswith("...] <30 values>")


def test_dump_leaves_large_deferred_values_on_disk(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"), defer_size=1024)
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None
    assert any(line.endswith("OW: <32768 bytes>") for line in dump_lines(ds))
    assert to_json_model(ds)["7FE00010"] == {"vr": "OW"}
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None  # still not read
    assert "InlineBinary" in to_json_model(ds, bulk=True)["7FE00010"]


@pytest.mark.parametrize("name", ["chrRuss.dcm", "chrGreek.dcm", "chrX1.dcm", "chrKoreanMulti.dcm"])
def test_dump_decodes_the_character_set(name: str) -> None:
    ds = read_dataset(DATA_ROOT / "charset_files" / name)
    expected = str(ds.PatientName)
    assert not expected.isascii()
    [line] = [line for line in dump_lines(ds) if line.startswith("(0010,0010)")]
    assert line.endswith(f"PN: {expected!r}")
    assert to_json_model(ds)["00100010"]["Value"][0]["Alphabetic"] == expected.split("=")[0]


# --- --find -----------------------------------------------------------------------------


def test_find_elements_like_dataset_dir() -> None:
    ds = read_dataset(pydicom_file("CT_small.dcm"))
    found = find_elements(ds, "pat")
    keywords = {element.keyword for element in found}
    assert {"PatientName", "PatientID"} <= keywords
    assert set(ds.dir("pat")) <= keywords
    assert any(element.tag == 0x00111010 for element in found)  # [GEMS_PATI_01] Patient Status
    assert [e.tag for e in find_elements(ds, "PAT")] == [e.tag for e in found]
    assert [e.keyword for e in find_elements(ds, "transfer syntax")] == ["TransferSyntaxUID"]
    assert find_elements(ds, "no such thing") == []


# --- non-DICOM input and files without preamble or file meta ----------------------------


@pytest.mark.parametrize("name", sorted(NOT_DICOM))
def test_not_dicom_is_a_not_dicom_error(name: str) -> None:
    if not (DATA_ROOT / name).is_file():
        pytest.skip(f"{name} is not bundled with this pydicom")
    with pytest.raises(errors.NotDicomError):
        read_dataset(DATA_ROOT / name)


def test_empty_and_text_files_are_not_dicom(tmp_path: Path) -> None:
    for name, data in [("empty", b""), ("text.dcm", b"hello, this is not DICOM at all\n" * 20)]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(errors.NotDicomError):
            read_dataset(path)


@pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"])
def test_files_without_preamble_or_file_meta(name: str) -> None:
    ds = read_dataset(pydicom_file(name))
    lines = dump_lines(ds)
    assert lines[0].startswith("(0008,0005) Specific Character Set")
    model = to_json_model(ds)
    assert model["00080005"] == {"vr": "CS", "Value": ["ISO_IR 100"]}
    assert model == to_json_model(read_dataset(pydicom_file("ExplVR_LitEndNoMeta.dcm")))


def test_file_meta_without_preamble(tmp_path: Path) -> None:
    original = pydicom_file("CT_small.dcm")
    path = tmp_path / "no_preamble.dcm"
    path.write_bytes(original.read_bytes()[132:])  # no preamble, no "DICM", file meta kept
    ds = read_dataset(path)
    assert dump_lines(ds) == dump_lines(read_dataset(original))
    assert to_json_model(ds, bulk=True) == to_json_model(read_dataset(original), bulk=True)


if __name__ == "__main__":  # python -m tests.test_metadata: the figure to quote
    print(agreement_summary())
