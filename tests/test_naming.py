"""Tests for `dcmexport.naming`: --layout templates and path components safe everywhere."""

from __future__ import annotations

import pickle
import unicodedata
import warnings
from pathlib import Path, PurePosixPath

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dcmexport.errors import UsageError
from dcmexport.naming import (
    LAYOUT_PRESETS,
    MAX_COMPONENT_BYTES,
    MISSING,
    Layout,
    input_stem,
    parse_layout,
    sanitize_component,
)

from .conftest import pydicom_file, pydicom_test_files_dir

RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789¹²³"
}


def dataset(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def raw_dataset(values: dict[str, str]) -> Dataset:
    """A dataset holding arbitrary text under any keyword, bypassing pydicom's VR checks."""
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            ds[tag_for_keyword(keyword)] = DataElement(tag_for_keyword(keyword), "UT", value)
    return ds


def render(template: str, ds: Dataset, **kwargs: object) -> str:
    layout = parse_layout(template)
    assert layout is not None
    args: dict = {"stem": "x", "index": 1, **kwargs}
    return str(layout.render(ds, **args))


def charset_file(name: str) -> Path:
    path = pydicom_test_files_dir().parent / "charset_files" / name
    if not path.exists():
        pytest.skip(f"pydicom charset file {name} not bundled")
    return path


# --- parsing -------------------------------------------------------------------------------


def test_mirror_is_none() -> None:
    assert parse_layout("mirror") is None


@pytest.mark.parametrize("name", sorted(LAYOUT_PRESETS))
def test_presets_parse_to_their_template(name: str) -> None:
    layout = parse_layout(name)
    assert layout is not None
    assert layout.template == LAYOUT_PRESETS[name]


def test_study_preset() -> None:
    ds = dataset(PatientID="P1", StudyDate="20240131", SeriesNumber="3", InstanceNumber="12")
    assert render("study", ds) == "P1/20240131/3/12"
    layout = parse_layout("study")
    assert layout is not None
    assert layout.fields == ("PatientID", "StudyDate", "SeriesNumber", "InstanceNumber")


def test_fields_are_unique_and_exclude_derived() -> None:
    layout = parse_layout("{Modality}/{SeriesNumber}_{Modality}_{stem}_{index}_{frame}")
    assert layout is not None
    assert layout.fields == ("Modality", "SeriesNumber")
    assert layout.uses_frame


def test_layout_pickles() -> None:
    layout = parse_layout("{PatientID}/{InstanceNumber:04d}")
    assert isinstance(layout, Layout)
    assert pickle.loads(pickle.dumps(layout)) == layout


def test_backslash_in_template_separates_folders() -> None:
    assert render(r"{PatientID}\{Modality}", dataset(PatientID="a", Modality="CT")) == "a/CT"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/{PatientID}", "relative"),
        (r"\{PatientID}", "relative"),
        ("C:/{PatientID}", "relative"),
        ("{PatientId}", "did you mean PatientID"),
        ("{NoSuchKeyword}", "unknown field"),
        ("{PatientID", "malformed"),
        ("PatientID}", "malformed"),
        ("{}", "empty {}"),
        ("{0}", "unknown field"),
        ("{PatientID.x}", "unknown field"),
        ("{PatientID!r}", "conversions"),
        ("{PatientID:{width}}", "nested"),
        ("{InstanceNumber:zz}", "format spec"),
        ("{PixelData}", "cannot name a file"),
        ("{ReferencedImageSequence}", "cannot name a file"),
        ("studdy", "preset"),
        ("out/fixed", "preset"),
        ("{PatientID}/../{StudyDate}", "'..'"),
        ("./{PatientID}", "'.'"),
        ("{PatientID}//{StudyDate}", "empty"),
        ("{PatientID}/", "empty"),
    ],
)
def test_bad_templates_are_usage_errors(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse_layout(template)


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{InstanceNumber:04d}", "0007"),  # IS
        ("{SeriesNumber:03d}", "012"),  # IS
        ("{Rows:05d}", "00512"),  # US
        ("{SliceThickness:.2f}", "2.50"),  # DS
        ("{SliceThickness}", "2.5"),
        ("{StudyID:04d}", "0042"),  # numeric text (SH)
        ("{AccessionNumber:04d}", "A12"),  # spec does not fit: plain text
        ("{StudyDate:.4}", "2024"),  # text spec
        ("{InstanceNumber:_>6}", "_____7"),
        ("{InstanceNumber:>6}", "7"),  # leading spaces are stripped from a name
    ],
)
def test_format_specs(template: str, expected: str) -> None:
    ds = dataset(
        InstanceNumber="7",
        SeriesNumber="12",
        Rows=512,
        SliceThickness="2.5",
        StudyID="42",
        AccessionNumber="A12",
        StudyDate="20240131",
    )
    assert render(template, ds) == expected


def test_multiple_values_are_joined_with_dash() -> None:
    ds = dataset(ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], WindowCenter=["40", "400"])
    assert render("{ImageType}/{WindowCenter:05.1f}", ds) == "ORIGINAL-PRIMARY-AXIAL/040.0-400.0"


def test_person_name_carets_become_underscores() -> None:
    assert render("{PatientName}", dataset(PatientName="Doe^John^^^")) == "Doe_John"


def test_derived_fields() -> None:
    ds = dataset(SeriesNumber="2")
    template = "{SeriesNumber}/{stem}_{index:03d}_{frame:04d}"
    assert render(template, ds, stem="IM0001", index=5, frame=3) == "2/IM0001_005_0003"
    assert render(template, ds, stem="IM0001", index=5) == "2/IM0001_005"  # no dangling separator


def test_a_folder_of_only_frame_is_left_out_without_a_frame() -> None:
    ds = dataset(SeriesNumber="2")
    assert render("{SeriesNumber}/{frame:04d}", ds, frame=12) == "2/0012"
    assert render("{SeriesNumber}/{frame:04d}", ds) == "2"


@pytest.mark.parametrize(
    ("name", "stem"),
    [("x.dcm", "x"), ("X.DICOM", "X"), ("a/b/IM1.ima", "IM1"), ("1.2.840.5", "1.2.840.5")],
)
def test_input_stem(name: str, stem: str) -> None:
    assert input_stem(name) == stem


def test_missing_and_empty_values_use_the_placeholder() -> None:
    ds = dataset(PatientID="", SeriesNumber=None, StudyDate="")
    assert render("{PatientID}/{SeriesNumber:03d}/{StudyDate}/{Modality}", ds) == "/".join(
        [MISSING] * 4
    )
    assert render("{stem}", ds, stem="") == MISSING


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("chrFren.dcm", "Buc_Jérôme"),
        ("chrRuss.dcm", "Люкceмбypг"),
        ("chrGreek.dcm", "Διονυσιος"),
        ("chrX1.dcm", "Wang_XiaoDong=王_小東"),
        ("chrH31.dcm", "Yamada_Tarou=山田_太郎=やまだ_たろう"),
    ],
)
def test_names_are_decoded_with_the_files_character_set(file: str, expected: str) -> None:
    layout = parse_layout("{PatientName}/{PatientID}")
    assert layout is not None
    ds = pydicom.dcmread(charset_file(file), specific_tags=list(layout.fields))
    assert layout.render(ds, stem="x", index=1).parts[0] == expected


def test_render_reads_a_real_file_header() -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"), stop_before_pixels=True)
    rendered = parse_layout("{Modality}/{SeriesNumber:03d}/{InstanceNumber:04d}")
    assert rendered is not None
    assert str(rendered.render(ds, stem="CT_small", index=1)) == (
        f"CT/{int(ds.SeriesNumber):03d}/{int(ds.InstanceNumber):04d}"
    )


# --- hostile values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../x", "_._.._x"),
        ("/tmp/x", "_tmp_x"),
        (r"..\x", "_._x"),
        ("..", "_"),
        (".", "_"),
        ("a\x00b", "a_b"),
        ("a\x1fb\x7fc\x85d", "a_b_c_d"),
        ('<>:"|?*', "_______"),
        ("name. . ", "name"),
        ("  padded  ", "padded"),
        (".hidden", "_hidden"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("COM1", "_COM1"),
        ("lpt9", "_lpt9"),
        ("nul", "_nul"),
        ("Nul .tar.gz", "_Nul .tar.gz"),
        ("COM¹", "_COM¹"),
        ("COM10", "COM10"),
        ("CONSOLE", "CONSOLE"),
        ("e\u0301", "\u00e9"),  # NFC: decomposed é becomes composed
        ("a\u202egnp.exe", "a_gnp.exe"),  # right-to-left override
        ("", "_"),
    ],
)
def test_sanitize_component(value: str, expected: str) -> None:
    assert sanitize_component(value) == expected


@pytest.mark.parametrize("value", ["../../x", "/tmp/x", r"..\x", "CON", "a\x00b", "..", ""])
def test_tag_values_never_add_folders(value: str) -> None:
    rendered = PurePosixPath(render("{PatientID}/{StudyDate}", raw_dataset({"PatientID": value})))
    assert len(rendered.parts) == 2
    assert rendered.parts[0] == sanitize_component(value) or value == ""
    assert rendered.parts[1] == MISSING


def test_length_is_bounded_on_a_character_boundary() -> None:
    text = "é" * 200  # 2 bytes each
    assert len(sanitize_component(text).encode()) == MAX_COMPONENT_BYTES
    text = "a" + "中" * 100  # 1 + 3 bytes each: 150 is not a character boundary
    result = sanitize_component(text)
    assert result == "a" + "中" * 49
    assert len(sanitize_component("🙂" * 100, max_bytes=10).encode()) == 8


def test_truncation_does_not_leave_a_trailing_dot() -> None:
    assert sanitize_component("a" * 149 + ".b") == "a" * 149


# --- properties ----------------------------------------------------------------------------

#: Any text, including controls, separators, dots, NUL and lone surrogates.
any_text = st.text(st.characters(codec=None, categories=None), max_size=300) | st.sampled_from(
    ["..", ".", "/", "\\", "CON", "com1.txt", "LPT¹", " . ", "a/../../b", "\x00", "C:\\x"]
)

TEMPLATE = "{PatientID}/{StudyDate}/{SeriesNumber:04d}/{InstanceNumber}_{stem}_{frame}"


def check_component(part: str, max_bytes: int = MAX_COMPONENT_BYTES) -> None:
    assert part not in {"", ".", ".."}
    assert "/" not in part and "\\" not in part
    assert not any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in part)
    assert part == part.strip() and not part.endswith(".")
    assert part.split(".")[0].rstrip().upper() not in RESERVED
    assert len(part.encode("utf-8")) <= max_bytes
    assert unicodedata.is_normalized("NFC", part)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patient_id=any_text,
    study_date=any_text,
    series=any_text,
    instance=any_text,
    stem=any_text,
    frame=st.none() | st.integers(1, 10**6),
)
def test_rendered_paths_stay_inside_out(
    tmp_path: Path,
    patient_id: str,
    study_date: str,
    series: str,
    instance: str,
    stem: str,
    frame: int | None,
) -> None:
    layout = parse_layout(TEMPLATE)
    assert layout is not None
    ds = raw_dataset(
        {
            "PatientID": patient_id,
            "StudyDate": study_date,
            "SeriesNumber": series,
            "InstanceNumber": instance,
        }
    )
    rendered = layout.render(ds, stem=stem, index=1, frame=frame)
    assert not rendered.is_absolute()
    assert len(rendered.parts) == 4
    for part in rendered.parts:
        check_component(part)
    out = tmp_path.resolve()
    assert (out / rendered).resolve().is_relative_to(out)


@settings(max_examples=500, deadline=None)
@given(text=any_text, max_bytes=st.integers(8, 300))
def test_sanitize_component_properties(text: str, max_bytes: int) -> None:
    part = sanitize_component(text, max_bytes)
    check_component(part, max_bytes)
    assert sanitize_component(part, max_bytes) == part  # idempotent
