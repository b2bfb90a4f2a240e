"""`build_report`: OUT/index.html and one page per study, from the manifest and the outputs.

Pages are jinja2 templates with autoescape on, so every tag value reaches the page as text.
Everything is relative to OUT and local (one CSS and one JS file beside the pages), so the
report opens straight from disk and never asks the network for anything. The pages carry no
timestamp: rebuilding an unchanged export gives byte-identical files.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import jinja2

from ..errors import UsageError
from ..manifest import MANIFEST_NAME, Kind
from ..store import write_atomic
from . import assets
from .contact_sheet import SHEETS_DIR, write_sheet
from .export import Header, Row, locate_source, read_headers, read_manifest
from .model import UNKNOWN_KEY, Export, Series, Study, group

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

INDEX_NAME = "index.html"
STUDIES = f"{assets.ASSETS_DIR}/studies"
STATIC_FILES = ("report.css", "report.js")
PARALLEL_CHUNK = 256  # stills per task when pictures are made on a process pool
PROBLEM_EXAMPLES = 20  # sources listed per reason on the index; the rest on a problems page


@dataclasses.dataclass
class ReportSummary:
    """What `build_report` wrote."""

    index: Path
    patients: int = 0
    studies: int = 0
    series: int = 0
    images: int = 0
    cines: int = 0
    failed: int = 0
    skipped: int = 0
    assets_made: int = 0
    assets_removed: int = 0
    contact_sheets: list[Path] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0


def _href(target: str, page: str) -> str:
    """`target` (relative to OUT) as a %-quoted URL relative to `page` (relative to OUT).

    Both are paths inside OUT without `..` (outputs are checked to stay inside OUT), so the
    way up is one `../` per folder of `page`.
    """
    up = "../" * page.count("/")
    return quote(
        up + target if target != "." else up.rstrip("/") or ".", safe="/", errors="surrogateescape"
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dcmexport.report", "templates"),
        autoescape=True,  # every template, whatever its name: tag values are never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["display_date"] = _display_date
    return env


def _display_date(value: str) -> str:
    """A DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _read_headers(out: Path, rows: list[Row], pool: cf.Executor | None) -> dict[str, Header]:
    sources = list(dict.fromkeys(r.source for r in rows if r.kind in (Kind.IMAGE, Kind.VIDEO)))
    paths = [locate_source(source, out) for source in sources]
    return dict(zip(sources, _map(read_headers, paths, pool), strict=True))


def _attach_pictures(out: Path, export: Export, pool: cf.Executor | None) -> tuple[int, set[str]]:
    """Thumbnails, previews and posters of every still and cine; (made, asset paths used)."""
    made, used = 0, set[str]()
    stills = []
    for series in _all_series(export):
        for still in series.stills:
            if assets.output_exists(out, still.output):
                stills.append(still)
            else:
                still.missing = True
        for cine in series.cines:
            if cine.gif and assets.output_exists(out, cine.gif):
                try:
                    cine.poster, n = assets.gif_poster(out, cine.gif)
                except (OSError, ValueError):
                    continue
                made += n
                used.add(cine.poster)
    pictures = _map(
        functools.partial(assets.still_pictures, out), [(s.output, s.raw) for s in stills], pool
    )
    for still, picture in zip(stills, pictures, strict=True):
        if picture is None:
            still.missing = True
            continue
        still.thumb, still.full = picture.thumb, picture.full
        still.width, still.height = picture.width, picture.height
        made += picture.made
        used.update((picture.thumb, picture.full))
    return made, used


def _map(
    function: Callable[[list[T]], list[U]], items: list[T], pool: cf.Executor | None
) -> list[U]:
    """`function` over chunks of `items`, on the pool when there is one (order kept)."""
    if pool is None:
        return function(items)
    chunks = [items[i : i + PARALLEL_CHUNK] for i in range(0, len(items), PARALLEL_CHUNK)]
    return [result for chunk in pool.map(function, chunks) for result in chunk]


@contextlib.contextmanager
def _pool(n_items: int) -> Iterator[cf.Executor | None]:
    """A process pool on every core for a large export (thumbnails cost ~1 ms each, header
    reads ~0.1 ms), none for a small one (a pool costs ~0.1 s to start)."""
    workers = min(os.cpu_count() or 1, n_items // PARALLEL_CHUNK)
    if workers < 2:
        yield None
        return
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        yield pool


def _all_series(export: Export) -> list[Series]:
    return [
        series
        for patient in export.patients
        for study in patient.studies.values()
        for series in study.series.values()
    ]


def _write_text(path: Path, text: str) -> None:
    """Write atomically, and not at all when the file already holds `text` (stable mtime)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    write_atomic(path, data)


def write_pages(out: Path, export: Export, *, contact_sheets: bool = False) -> set[str]:
    """Render the index, the study pages and the static files; the page paths written."""
    env = _environment()
    written = set()
    study_rows = []
    for patient in export.patients:
        for study in patient.studies.values():
            page = study.page
            _write_text(
                out / page,
                env.get_template("study.html").render(
                    root=_href(".", page) + "/",
                    patient=patient,
                    study=study,
                    unknown=patient.key == UNKNOWN_KEY,
                    href=lambda target, page=page: _href(target, page),
                    contact_sheets=contact_sheets,
                ),
            )
            written.add(page)
            study_rows.append((patient, study))
    modalities = sorted({m for _, study in study_rows for m in study.modalities})
    problems_page = f"{assets.ASSETS_DIR}/problems.html"
    long_problems = any(len(p.sources) > PROBLEM_EXAMPLES for p in export.problems)
    context = dict(
        export=export,
        study_rows=study_rows,
        modalities=modalities,
        examples=PROBLEM_EXAMPLES,
        problems_href=_href(problems_page, INDEX_NAME) if long_problems else "",
        unknown_key=UNKNOWN_KEY,
        series_count=sum(len(s.series) for _, s in study_rows),
    )
    _write_text(
        out / INDEX_NAME,
        env.get_template("index.html").render(
            root="", href=lambda t: _href(t, INDEX_NAME), **context
        ),
    )
    if long_problems:
        _write_text(
            out / problems_page,
            env.get_template("problems.html").render(
                root="../", href=lambda t: _href(t, problems_page), export=export
            ),
        )
        written.add(problems_page)
    static = resources.files("dcmexport.report") / "templates"
    for name in STATIC_FILES:
        _write_text(out / assets.ASSETS_DIR / name, (static / name).read_text("utf-8"))
    return written


def _study_of(export: Export) -> dict[str, Study]:
    return {s.key: s for p in export.patients for s in p.studies.values()}


def build_report(out: Path | str, *, contact_sheet: bool = False) -> ReportSummary:
    """Write OUT/index.html (and its pages and assets under OUT/report_assets/) for the
    export in `out`, from its manifest; `contact_sheet` also writes one PNG per series under
    OUT/contact_sheets/. Idempotent: an unchanged export gives the same files, and pictures
    are made only for stills that are new or rewritten (e.g. after a resumed run)."""
    started = time.perf_counter()
    out = Path(out)
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        raise UsageError(f"{out} has no {MANIFEST_NAME}: run `dcmexport convert ... -o {out}`")
    rows = list(read_manifest(manifest))
    with _pool(len(rows)) as pool:
        export = group(rows, _read_headers(out, rows, pool))
        made, used = _attach_pictures(out, export, pool)
    summary = ReportSummary(index=out / INDEX_NAME, assets_made=made)
    if contact_sheet:
        for series in _all_series(export):
            if any(not s.missing for s in series.stills):
                series.contact_sheet, n = write_sheet(out, series)
                summary.assets_made += n
                summary.contact_sheets.append(out / series.contact_sheet)
        _prune_sheets(out, {str(p.relative_to(out).as_posix()) for p in summary.contact_sheets})
    pages = write_pages(out, export, contact_sheets=contact_sheet)
    summary.assets_removed = assets.prune(out, used | pages)
    all_series = _all_series(export)
    summary.patients = len(export.patients)
    summary.studies = len(_study_of(export))
    summary.series = len(all_series)
    summary.images = sum(len(s.stills) for s in all_series)
    summary.cines = sum(len(s.cines) for s in all_series)
    summary.failed = export.counts.get("error", 0)
    summary.skipped = export.counts.get("skipped", 0)
    summary.elapsed = time.perf_counter() - started
    return summary


def _prune_sheets(out: Path, keep: set[str]) -> None:
    """Remove contact sheets of an earlier build that no series has any more."""
    folder = out / SHEETS_DIR
    for entry in folder.glob("*_series-*_*.png") if folder.is_dir() else ():
        if f"{SHEETS_DIR}/{entry.name}" not in keep:
            entry.unlink()
