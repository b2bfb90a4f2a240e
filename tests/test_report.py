"""The HTML report, checked in a real browser: Debian's Chromium driven by Playwright.

One conversion per session (CT, MR, XA cine, US cine, colour, a planted `<script>` and a
broken file, `convert --html`), one browser per module. Pages are opened from disk (file://):
no console error, no request off the disk, every image decoded, every cine playing.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dcmexport.cli import main
from dcmexport.dicom.header_scan import SCAN_KEYWORDS, scan_header
from dcmexport.manifest import COLUMNS, Kind, Status
from dcmexport.report import build_report
from dcmexport.report.build import write_pages
from dcmexport.report.export import Header, Row
from dcmexport.report.model import group

from .conftest import pydicom_file

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
CONVERT_OPTIONS = ["--frames", "middle", "--series-video", "--html", "-q", "-j", "2"]
PLANTED = "<script>window.__planted = 1</script><b>bold?</b>"


# --------------------------------------------------------------------------- data


def _plant_script(source: Path, target: Path) -> None:
    """A copy of an MR slice in its own series whose description is markup."""
    ds = pydicom.dcmread(source)
    ds.SeriesDescription = PLANTED
    ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["report-test-planted"])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["report-test-planted-sop"])
    ds.SeriesNumber = 99
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory, sample_set: tuple[Path, list[Path]]) -> Path:
    root = tmp_path_factory.mktemp("report-samples") / "dicom"
    shutil.copytree(sample_set[0], root)  # the session's sample set (20 CT slices of 256²)
    extra = root / "extra"
    _plant_script(root / "MR" / "MR_0001.dcm", extra / "planted.dcm")
    # a JPEG 2000 stream no decoder reads (a truncated file would convert its rows: not broken)
    shutil.copy(pydicom_file("JPEG2000-embedded-sequence-delimiter.dcm"), extra / "broken.dcm")
    return root


@pytest.fixture(scope="session")
def export(samples: Path) -> Path:
    """`convert --html` of CT, MR, XA, US, colour and the extra files (one run)."""
    out, inputs = samples.parent / "out", samples.parent / "input"
    for folder in ("CT", "MR", "XA", "US", "color", "extra"):  # not the re-encoded copies
        shutil.copytree(samples / folder, inputs / folder)
    code = main(["convert", str(inputs), "-o", str(out), *CONVERT_OPTIONS])
    assert code == 1  # the broken file failed, everything else converted
    return out


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A page opened from disk, with every console error and every request recorded."""

    def __init__(self, browser: object, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.off_disk: list[str] = []
        self.context.route(lambda url: not url.startswith("file://"), self._block)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _block(self, route: object) -> None:
        self.off_disk.append(route.request.url)  # type: ignore[attr-defined]
        route.abort()  # type: ignore[attr-defined]

    def _console(self, message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            self.errors.append(message.text)  # type: ignore[attr-defined]

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.off_disk == []
        assert all(url.startswith("file://") for url in self.requests), self.requests

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: object) -> Iterator[object]:
    pages: list[Page] = []

    def opener(path: Path) -> Page:
        page = Page(browser, path)
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()


def _study_pages(out: Path) -> list[Path]:
    return sorted((out / "report_assets" / "studies").glob("*.html"))


def _decode_all_images(page: Page) -> list[dict]:
    """Scroll every shown <img> into view (lazy ones load then); return those not decoded.

    A cine's inner GIF <img> is fallback content a browser that plays <video> never shows.
    """
    shown = "Array.from(document.querySelectorAll('img:not(video img)'))"
    page.page.evaluate(
        f"async () => {{ for (const i of {shown}) {{ i.scrollIntoView();"
        " await new Promise(r => requestAnimationFrame(r)); } }"
    )
    page.page.wait_for_function(f"{shown}.every(i => i.complete)", timeout=15_000)
    return page.page.evaluate(
        f"{shown}.filter(i => !(i.naturalWidth > 0)).map(i => ({{src: i.src, alt: i.alt}}))"
    )


# --------------------------------------------------------------------------- tests


def test_header_scan_agrees_with_pydicom(samples: Path) -> None:
    """The report's fast header scan gives pydicom's values, or None (then pydicom is used)."""
    scanned = 0
    for path in sorted(p for p in samples.rglob("*") if p.is_file() and p.suffix != ".json"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            assert scan_header(path) is None
            continue
        values = scan_header(path)
        if values is None:
            continue
        scanned += 1
        expected = {k: str(ds[k].value) for k in SCAN_KEYWORDS if k in ds and ds[k].value != ""}
        assert {k: v for k, v in values.items() if v != ""} == expected, path
    assert scanned >= 40


def test_index_page_loads_clean(export: Path, open_page) -> None:
    page = open_page(export / "index.html")
    assert _decode_all_images(page) == []
    page.assert_clean()
    text = page.page.inner_text("body")
    for modality in ("CT", "MR", "XA", "US"):
        assert modality in text
    # the broken file is listed with its reason
    problems = page.page.inner_text("#problems")
    assert "broken.dcm" in problems
    with open(export / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    reason = next(r["error"] for r in rows if r["source"].endswith("broken.dcm"))
    assert reason and reason in problems


def test_study_page_images_cines_and_planted_script(export: Path, open_page) -> None:
    (study,) = _study_pages(export)
    page = open_page(study)
    assert _decode_all_images(page) == []
    sections = page.page.locator("section.series")
    modalities = set(sections.evaluate_all("s => s.map(x => x.dataset.modality)"))
    assert {"CT", "MR", "XA", "US"} <= modalities
    # the planted <script> is shown as text and never ran
    assert page.page.evaluate("window.__planted") is None
    assert page.page.get_by_text(PLANTED, exact=False).count() >= 1
    assert page.page.locator("section.series b").count() == 0
    # every cine plays: data for the current frame, then time advances
    videos = page.page.locator("video")
    assert videos.count() >= 3  # XA cine, US cine, CT series video (+ MR series video)
    for i in range(videos.count()):
        video = videos.nth(i)
        video.scroll_into_view_if_needed()
        video.evaluate("v => v.play()")
        page.page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle())
        start = video.evaluate("v => v.currentTime")
        page.page.wait_for_function(
            "([v, t]) => v.currentTime > t", arg=[video.element_handle(), start], timeout=10_000
        )
        video.evaluate("v => v.pause()")
    page.assert_clean()


def test_filter_hides_and_shows_rows(export: Path, open_page) -> None:
    (study,) = _study_pages(export)
    page = open_page(study)
    sections = page.page.locator("section.series")
    total = sections.count()

    def visible() -> int:
        return sections.evaluate_all("s => s.filter(x => !x.hidden).length")

    assert visible() == total
    page.page.select_option("#filter-modality", "CT")
    ct = visible()
    assert 0 < ct < total
    page.page.select_option("#filter-modality", "")
    page.page.fill("#filter-text", "bolus-that-matches-nothing")
    assert visible() == 0
    page.page.fill("#filter-text", "")
    assert visible() == total
    page.page.keyboard.press("Tab")  # keyboard: the skip link, then the filter controls
    page.assert_clean()


def test_click_enlarges_with_the_full_still(export: Path, open_page) -> None:
    (study,) = _study_pages(export)
    page = open_page(study)
    link = page.page.locator("a.enlarge").first
    link.focus()
    page.page.keyboard.press("Enter")
    dialog = page.page.locator("dialog#viewer")
    assert dialog.evaluate("d => d.open")
    page.page.wait_for_function(
        "document.querySelector('dialog#viewer img').complete && "
        "document.querySelector('dialog#viewer img').naturalWidth > 0"
    )
    width = page.page.evaluate("document.querySelector('dialog#viewer img').naturalWidth")
    assert width == 256  # the full-size CT still, not the 160 px thumbnail
    page.page.keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open")
    page.assert_clean()


def test_report_command_rebuilds_the_same_pages(export: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in [export / "index.html", *_study_pages(export)]}
    assert main(["report", str(export), "-q"]) == 0
    after = {p: p.read_bytes() for p in [export / "index.html", *_study_pages(export)]}
    assert after == before
    assert main(["report", str(tmp_path), "-q"]) == 2  # no manifest there
    # a resumed run (everything up to date, the broken file retried) gives the same pages
    inputs = export.parent / "input"
    assert main(["convert", str(inputs), "-o", str(export), *CONVERT_OPTIONS]) == 1
    resumed = {p: p.read_bytes() for p in [export / "index.html", *_study_pages(export)]}
    assert resumed == before


def test_contact_sheets(export: Path, tmp_path: Path, open_page) -> None:
    out = tmp_path / "out"
    shutil.copytree(export, out)
    assert main(["report", str(out), "--contact-sheet", "-q"]) == 0
    sheets = sorted((out / "contact_sheets").glob("*.png"))
    assert sheets, "no contact sheet written"
    ct = [s for s in sheets if s.name.startswith("CT_")]
    with Image.open(ct[0]) as im:
        assert im.size == (5 * 128, 4 * (128 + 14))  # 20 slices, 5 x 4 tiles
        assert np.asarray(im.convert("L")).std() > 10
    (study,) = _study_pages(out)
    page = open_page(study)
    hrefs = page.page.locator("a.sheet").evaluate_all("a => a.map(x => x.href)")
    assert {h.rsplit("/", 1)[1] for h in hrefs} == {s.name for s in sheets}
    page.assert_clean()


def test_screenshot(export: Path, tmp_path: Path, open_page) -> None:
    (study,) = _study_pages(export)
    page = open_page(study)
    _decode_all_images(page)
    page.page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    page.page.screenshot(path=str(shot), full_page=False)
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 20 and len(np.unique(grey)) > 50  # text, thumbnails: not blank
    page.assert_clean()


def test_16bit_tiff_stills_get_8bit_previews(samples: Path, tmp_path: Path, open_page) -> None:
    out = tmp_path / "tiff"
    options = ["--format", "tiff", "--bits", "16", "--html", "-q", "-j", "1"]
    code = main(["convert", str(samples / "MR"), "-o", str(out), *options])
    assert code == 0
    (study,) = _study_pages(out)
    page = open_page(study)
    assert _decode_all_images(page) == []
    assert page.page.locator("a.enlarge").count() == 5
    hrefs = page.page.locator("a.enlarge").evaluate_all("a => a.map(x => x.href)")
    assert all("/report_assets/previews/" in h and h.endswith(".png") for h in hrefs)
    page.assert_clean()


def _synthetic_rows(n: int, per_study: int) -> tuple[list[Row], dict[str, Header]]:
    rows, headers = [], {}
    for i in range(n):
        study, series = i // per_study, i // 50
        source = f"in/{study}/{series}/{i}.dcm"
        rows.append(
            Row(
                source,
                None,
                f"{study}/{series}/{i}.png",
                Status.OK,
                "",
                "40",
                "400",
                False,
                "",
                Kind.IMAGE,
                "",
            )
        )
        headers[source] = Header(
            patient_id=f"P{study % 97}",
            patient_name=f"Name^{study % 97}",
            study_uid=f"1.2.{study}",
            study_date="20240101",
            study_description="abdomen",
            series_uid=f"1.2.{study}.{series}",
            series_number=str(series),
            modality="CT",
            instance_number=str(i),
            rows="512",
            columns="512",
        )
    return rows, headers


def test_index_stays_small_for_100k_images(tmp_path: Path) -> None:
    """100 000 images in 1 000 studies: the index lists studies, never images (< 2 MB)."""
    rows, headers = _synthetic_rows(100_000, per_study=100)
    export = group(rows, headers)
    write_pages(tmp_path, export)
    size = (tmp_path / "index.html").stat().st_size
    assert size < 2_000_000
    assert len(list((tmp_path / "report_assets" / "studies").glob("*.html"))) == 1000


def test_build_report_without_sources_or_outputs(tmp_path: Path) -> None:
    """A manifest whose inputs and outputs are gone still gives a page (under "unknown")."""
    with open(tmp_path / "manifest.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(2000):
            writer.writerow(
                [f"gone/{i // 100}/{i}.dcm", "", f"{i // 100}/{i}.png", "ok", ""]
                + [""] * 6
                + ["image", ""]
            )
        writer.writerow(["gone/x.txt", "", "", "skipped", "not a DICOM file"] + [""] * 8)
    summary = build_report(tmp_path)
    assert summary.images == 2000 and summary.skipped == 1 and summary.studies == 1
    assert (tmp_path / "index.html").stat().st_size < 50_000


def test_gif_fallback_when_the_mp4_cannot_play(export: Path, tmp_path: Path, open_page) -> None:
    """A cine whose MP4 the browser cannot decode is replaced by its GIF."""
    out = tmp_path / "out"
    shutil.copytree(export, out)
    (out / "XA" / "XA_0001.mp4").write_bytes(b"\x00" * 1024)  # not a video any more
    (study,) = _study_pages(out)
    page = open_page(study)
    video = page.page.locator("video:has(source[src$='XA/XA_0001.mp4'])")
    video.evaluate("v => v.play().catch(() => {})")  # preload=none: the load starts here
    gif = page.page.locator("img[src$='XA/XA_0001.gif']:not(video img)")
    gif.wait_for(timeout=10_000)
    page.page.wait_for_function(
        "i => i.complete && i.naturalWidth > 0", arg=gif.element_handle(), timeout=10_000
    )
    # the failed MP4 load is the browser's own console message; nothing else may complain
    assert all("XA_0001.mp4" in e or "MEDIA" in e.upper() for e in page.errors), page.errors
    assert page.off_disk == []
