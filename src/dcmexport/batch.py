"""Batch conversion: plan output names, convert each file, write the manifest.

`convert_one` is the unit of work: a top-level function that never raises for a per-file
problem, so a broken file in a batch of 100 000 becomes one manifest row and the rest go on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import decoding
from .discovery import Found, discover
from .errors import DcmExportError, NoPixelDataError, NotDicomError, UsageError
from .layout import NameRegistry, inside_output, mirror_base, relative_to_output
from .manifest import ManifestRow, write_manifest
from .options import ConvertOptions
from .pipeline import Rendered, frame_transforms
from .render import check_renderable, render_decoded
from .writers import encode_still, write_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One input and the output base (relative to OUT, no extension) reserved for it."""

    source: str
    base: str
    note: str = ""


@dataclasses.dataclass
class FileResult:
    """What happened to one input: its manifest rows, and a traceback for `-v` if it crashed."""

    source: str
    status: str  # ok | error | skipped
    rows: list[ManifestRow]
    reason: str = ""
    detail: str = ""


@dataclasses.dataclass
class Summary:
    """The outcome of a `convert` run."""

    converted: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0
    elapsed: float = 0.0
    output: Path = Path("output")
    manifest: Path = Path("output") / MANIFEST_NAME

    @property
    def found(self) -> int:
        return self.converted + self.skipped + self.failed

    @property
    def exit_code(self) -> int:
        """0 all converted, 1 some failed, 2 nothing to convert (CONTRACT.md)."""
        if self.failed:
            return 1
        return 0 if self.converted else 2

    @property
    def files_per_second(self) -> float:
        return self.found / self.elapsed if self.elapsed > 0 else 0.0


def _rows_for_frame(
    source: str, frame: int | None, output: str, rendered: Rendered, ds: Any, note: str
) -> ManifestRow:
    row = ManifestRow(
        source=source,
        frame=frame,
        output=output,
        window_center=rendered.window_center,
        window_width=rendered.window_width,
        raw_offset=rendered.raw_offset,
        voi=rendered.voi,
        note=note,
    )
    if rendered.raw_offset is not None:
        t = frame_transforms(ds, (frame or 1) - 1, check_renderable(ds))
        row.rescale_slope, row.rescale_intercept = t.rescale_slope, t.rescale_intercept
    return row


def _convert_file(item: WorkItem, options: ConvertOptions, out_root: Path) -> list[ManifestRow]:
    ds = decoding.read_dataset(item.source)
    desc = check_renderable(ds)
    n_frames = decoding.number_of_frames(ds)
    ext = options.format.extension
    if n_frames == 1:
        targets = [(1, None, f"{item.base}{ext}")]
    elif options.frames is None:
        raise NoPixelDataError(
            f"multi-frame ({n_frames} frames): choose stills with --frames "
            "(all, first, middle, N, A-B); video export is not available yet"
        )
    else:
        numbers = options.frames.frame_numbers(n_frames)
        width = max(4, len(str(n_frames)))
        targets = [(n, n, f"{item.base}/{n:0{width}d}{ext}") for n in numbers]
    rows = []
    for number, frame_column, rel in targets:
        decoded = decoding.decode_frame(ds, number - 1, item.source)
        rendered = render_decoded(
            decoded, ds, desc, number - 1, window=options.window, bits=options.bits, raw=options.raw
        )
        if rendered.image.dtype.itemsize > 1 and options.format.value == "jpeg":
            raise UsageError("--raw on data over 8 bits needs --format png or tiff")
        target = inside_output(out_root, rel)
        write_atomic(target, encode_still(rendered.image, options.format, options.quality))
        output = relative_to_output(out_root, target)
        rows.append(_rows_for_frame(item.source, frame_column, output, rendered, ds, item.note))
    return rows


def convert_one(
    item: WorkItem, options: ConvertOptions, out_root: str | os.PathLike[str]
) -> FileResult:
    """Convert one input; every expected problem becomes a `skipped` or `error` result."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            rows = _convert_file(item, options, Path(out_root))
        return FileResult(item.source, "ok", rows)
    except (NotDicomError, NoPixelDataError) as exc:
        status, reason, detail = "skipped", str(exc), ""
    except DcmExportError as exc:
        status, reason, detail = "error", str(exc), ""
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug or an unforeseen fault: report it, keep the batch going
        status = "error"
        reason = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        detail = traceback.format_exc()
    row = ManifestRow(source=item.source, status=status, error=reason, note=item.note)
    return FileResult(item.source, status, [row], reason, detail)


def plan(found: Iterable[Found]) -> Iterator[WorkItem]:
    """Reserve a unique output base for every input, in discovery order."""
    registry = NameRegistry()
    for f in found:
        base, note = registry.claim(mirror_base(f))
        yield WorkItem(str(f.path), str(base), note)


def convert(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str] = "output",
    *,
    options: ConvertOptions | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    **option_values: Any,
) -> Summary:
    """Convert every DICOM image under `inputs` into `output`, and write its manifest.

    Pass ``options=ConvertOptions(...)`` or its fields as keywords (``format``, ``bits``,
    ``window``, ``raw``, ``frames``, ``quality``). `on_result` is called with each file's
    `FileResult` as it completes (the CLI prints errors from it).
    """
    if options is not None and option_values:
        raise UsageError("pass either options=ConvertOptions(...) or keyword options, not both")
    opts = options or ConvertOptions(**option_values)
    out_root = Path(output)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} exists and is not a folder")
    inputs = list(inputs)
    started = time.perf_counter()
    summary = Summary(output=out_root, manifest=out_root / MANIFEST_NAME)
    rows: list[ManifestRow] = []
    for item in plan(discover(inputs, exclude=[out_root])):
        result = convert_one(item, opts, out_root)
        rows.extend(result.rows)
        if result.status == "ok":
            summary.converted += 1
            summary.images += len(result.rows)
        elif result.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
        if on_result is not None:
            on_result(result)
    out_root.mkdir(parents=True, exist_ok=True)
    write_manifest(summary.manifest, rows)
    summary.elapsed = time.perf_counter() - started
    return summary
