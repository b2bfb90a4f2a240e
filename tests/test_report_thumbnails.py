"""`convert --html`: the thumbnail exporter writes the report's thumbnails from the renderings
in memory, under the names the report looks for, and the report then decodes no still.

The oracle for the pixels is the report's own path (read the written still back with Pillow
or tifffile, then shrink): both must give the same JPEG bytes.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import pytest

from dcmexport.cli import main
from dcmexport.dicom import decoding
from dcmexport.engine.batch import convert
from dcmexport.manifest import MANIFEST_NAME
from dcmexport.naming import THUMBNAILS_DIR, NameRegistry, thumbnail_name
from dcmexport.options import ConvertOptions
from dcmexport.report import assets, build_report
from dcmexport.sample import write_ct_series

LARGE, SMALL = 320, 64  # px: over and under naming.OWN_THUMBNAIL_MAX


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("thumb-inputs")
    write_ct_series(root / "large", 3, size=LARGE)
    write_ct_series(root / "small", 2, size=SMALL)
    return root


def _stills(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("CT_*.*"))


def _thumbnail(out: Path, output: str) -> Path:
    st = (out / output).stat()
    return out / thumbnail_name(output, st.st_size, st.st_mtime_ns)


def test_convert_html_writes_thumbnails_and_decodes_each_frame_once(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = []
    decode_frame = decoding.decode_frame

    def counting(*args: object, **kwargs: object) -> object:
        decoded.append(args[1])
        return decode_frame(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decoding, "decode_frame", counting)
    monkeypatch.setenv("DCMEXPORT_IN_PROCESS", "1")  # count here, not in a worker process
    out = tmp_path / "out"
    assert main(["convert", str(inputs), "-o", str(out), "--html", "-q", "-j", "1"]) == 0
    stills = _stills(out)
    assert len(stills) == 5 and len(decoded) == 5  # one decode per still, none for thumbnails
    large = [s for s in stills if s.startswith("large/")]
    assert all(_thumbnail(out, s).is_file() for s in large)
    assert len(list((out / THUMBNAILS_DIR).iterdir())) == len(large)  # small: their own
    # the report (already built by --html) finds them all and reads no still again
    monkeypatch.setattr(assets, "_load_for_display", _no_decoding)
    summary = build_report(out)
    assert summary.images == 5 and summary.assets_made == 0 and summary.assets_removed == 0
    page = next((out / "report_assets" / "studies").glob("*.html")).read_text("utf-8")
    for still in large:
        assert _thumbnail(out, still).relative_to(out).as_posix() in page


def _no_decoding(path: Path, stretch: bool) -> None:
    raise AssertionError(f"the report decoded {path.name} again")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"format": "jpeg"},
        {"bits": 16},
        {"bits": 16, "raw": True},
        {"format": "tiff", "bits": 16},
    ],
    ids=["png8", "jpeg", "png16", "raw16", "tiff16"],
)
def test_thumbnails_equal_the_reports_own(
    inputs: Path, tmp_path: Path, options: dict[str, object]
) -> None:
    """Same pixels as the report makes from the written still (a JPEG still differs: the
    report sees it after lossy compression, the exporter before)."""
    made, later = tmp_path / "made", tmp_path / "later"
    large = inputs / "large"
    convert([large], made, options=ConvertOptions(thumbnails=True, **options), jobs=1)  # type: ignore[arg-type]
    convert([large], later, options=ConvertOptions(**options), jobs=1)  # type: ignore[arg-type]
    assert not (later / THUMBNAILS_DIR).exists()
    build_report(later)
    stills = _stills(made)
    assert stills == _stills(later) and len(stills) == 3
    for still in stills:
        ours, theirs = _thumbnail(made, still).read_bytes(), _thumbnail(later, still).read_bytes()
        if options.get("format") == "jpeg":
            assert ours[:2] == theirs[:2] == b"\xff\xd8"
        else:
            assert ours == theirs, still


def test_html_changes_no_output_and_no_resume(inputs: Path, tmp_path: Path) -> None:
    """Thumbnails are not manifest rows and not part of the resume key: adding --html to a
    finished export redoes nothing, and the report makes the thumbnails that are missing."""
    plain, html = tmp_path / "plain", tmp_path / "html"
    convert([inputs], plain, jobs=1)
    convert([inputs], html, options=ConvertOptions(thumbnails=True), jobs=1)
    assert (plain / MANIFEST_NAME).read_bytes() == (html / MANIFEST_NAME).read_bytes()
    again = convert([inputs], plain, options=ConvertOptions(thumbnails=True), jobs=1)
    assert again.up_to_date == 5 and again.converted == 0
    assert not (plain / THUMBNAILS_DIR).exists()
    assert build_report(plain).assets_made == 3
    # a rewritten still gets a new thumbnail name: the old one is never shown, and pruned
    shutil.rmtree(html / "large")
    convert([inputs], html, options=ConvertOptions(thumbnails=True), jobs=1)
    summary = build_report(html)
    assert summary.assets_made == 0 and summary.assets_removed == 3
    assert len(list((html / THUMBNAILS_DIR).iterdir())) == 3


def test_report_folders_are_reserved_names() -> None:
    registry = NameRegistry()
    assert str(registry.claim(PurePosixPath("report_assets/thumbs/x"))[0]) == (
        "report_assets_2/thumbs/x"
    )
    assert str(registry.claim(PurePosixPath("contact_sheets"))[0]) == "contact_sheets_2"
