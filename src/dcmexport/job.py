"""The unit of batch work: convert one input file, never raising for a per-file problem.

`convert_one` and `convert_many` are top-level and take only picklable arguments, so the same
code runs in-process, in a local process pool and on Dask workers. A broken file in a batch of
100 000 becomes one `error` row; the rest go on.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pydicom.dataset import Dataset

from . import decoding
from .archives import read_member
from .cine import Clip, MultiFrameClip, SliceClip, export_clip
from .errors import DcmExportError, InputReadError, NoPixelDataError, NotDicomError, UsageError
from .layout import inside_output, relative_to_output
from .manifest import ManifestRow
from .naming import input_stem
from .options import ConvertOptions, MetadataFormat
from .pipeline import Rendered, modality_rescale
from .render import check_renderable, render_decoded
from .series import SeriesItem
from .sidecar import sidecar_json, sidecar_txt
from .state import temp_dir
from .video import clip_timing
from .writers import encode_still, write_atomic


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One input, the output base reserved for it (relative to OUT, no extension), and its
    position in discovery order (the manifest's order)."""

    source: str
    base: str
    note: str = ""
    seq: int = 0
    #: the absolute path workers read (a Dask worker's working folder is not ours)
    path: str = ""
    #: an archive member: its name in the archive at `path`, and a tar member's bytes
    member: str = ""
    data: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    #: why this input cannot be converted (a missing DICOMDIR record, a refused member)
    problem: str = ""

    def read(self) -> tuple[Dataset, str | None]:
        """The dataset, and the path to decode large pixel data from (None if in memory)."""
        if self.data is not None:
            return decoding.read_dataset(self.data), None
        if self.member:
            return decoding.read_dataset(read_member(self.path, self.member)), None
        path = self.path or self.source
        return decoding.read_dataset(path), path


@dataclasses.dataclass
class FileResult:
    """What happened to one input: manifest rows, and a traceback for `-v` if it crashed."""

    source: str
    status: str  # ok | error | skipped
    rows: list[ManifestRow]
    reason: str = ""
    detail: str = ""
    seq: int = 0
    up_to_date: bool = False


def _manifest_row(
    item: WorkItem, frame: int | None, output: str, rendered: Rendered, ds: Dataset
) -> ManifestRow:
    row = ManifestRow(
        source=item.source,
        frame=frame,
        output=output,
        window_center=rendered.window_center,
        window_width=rendered.window_width,
        raw_offset=rendered.raw_offset,
        voi=rendered.voi,
        kind="image",
        note=item.note,
    )
    if rendered.raw_offset is not None:  # so that modality values can be recovered
        row.rescale_slope, row.rescale_intercept = modality_rescale(ds, (frame or 1) - 1)
    return row


def _targets(
    item: WorkItem, n_frames: int, options: ConvertOptions, ds: Dataset
) -> list[tuple[int, int | None, str]]:
    """(frame number, manifest frame column, output path relative to OUT) per still.

    Stills of a multi-frame input go in a folder named after its base, unless the layout
    template places them itself with ``{frame}``.
    """
    ext = options.format.extension
    if n_frames == 1:
        return [(1, None, f"{item.base}{ext}")]
    if options.frames is None:
        if options.video.kinds:
            return []
        raise NoPixelDataError(
            f"multi-frame ({n_frames} frames) with --video none: choose stills with --frames "
            "(all, first, middle, N, A-B) or a video with --video mp4, gif or both"
        )
    width = max(4, len(str(n_frames)))
    numbers = options.frames.frame_numbers(n_frames)
    layout = options.layout
    if layout is not None and layout.uses_frame:
        stem = input_stem(PurePosixPath(item.member or item.source).name)
        return [
            (n, n, f"{layout.render(ds, stem=stem, index=item.seq + 1, frame=n)}{ext}")
            for n in numbers
        ]
    return [(n, n, f"{item.base}/{n:0{width}d}{ext}") for n in numbers]


def _convert_file(item: WorkItem, options: ConvertOptions, out_root: Path) -> list[ManifestRow]:
    if item.problem:
        raise InputReadError(item.problem)
    ds, path = item.read()
    desc = check_renderable(ds)
    n_frames = decoding.number_of_frames(ds)
    rows = []
    if n_frames > 1 and options.video.kinds:
        rows += _write_videos(item, MultiFrameClip(ds, desc, path), ds, options, out_root)
    for number, frame_column, rel in _targets(item, n_frames, options, ds):
        decoded = decoding.decode_frame(ds, number - 1, path)
        rendered = render_decoded(
            decoded, ds, desc, number - 1, window=options.window, bits=options.bits, raw=options.raw
        )
        if rendered.image.dtype.itemsize > 1 and options.format.value == "jpeg":
            raise UsageError("--raw on data over 8 bits needs --format png or tiff")
        data = encode_still(rendered.image, options.format, options.quality)
        output = _write_output(out_root, rel, data)
        rows.append(_manifest_row(item, frame_column, output, rendered, ds))
    if options.metadata is not MetadataFormat.NONE:
        rows.append(_write_sidecar(item, ds, rows, options.metadata, out_root))
    return rows


def _write_videos(
    item: WorkItem, clip: Clip, ds: Dataset, options: ConvertOptions, out_root: Path
) -> list[ManifestRow]:
    """`OUT/<base>.mp4` and/or `.gif` for a clip, with one manifest row each.

    Video is always the displayed image (8-bit, windowed); `--raw` applies to stills only.
    """
    timing = clip_timing(ds, clip.n_frames, options.fps)
    targets = {kind: inside_output(out_root, f"{item.base}.{kind}") for kind in options.video.kinds}
    tmp = temp_dir(out_root)
    result = export_clip(clip, options.window, timing, targets, tmp if tmp.is_dir() else None)
    center, width, label = result.window
    rows = []
    for kind, target in targets.items():
        note = "; ".join(n for n in (item.note, result.notes[kind]) if n)
        if options.raw:
            note += "; video shows the display rendering (--raw applies to stills)"
        rows.append(
            ManifestRow(
                source=item.source,
                output=relative_to_output(out_root, target),
                window_center=center,
                window_width=width,
                voi=label,
                kind="video",
                note=note,
            )
        )
    return rows


def _write_output(out_root: Path, rel: str, data: bytes) -> str:
    """Write one output atomically inside OUT; its path relative to OUT, for the manifest.

    The temporary file goes in the batch's temporary folder when there is one (a run clears
    it after a crash), else beside the output.
    """
    target = inside_output(out_root, rel)
    tmp = temp_dir(out_root)
    write_atomic(target, data, tmp if tmp.is_dir() else None)
    return relative_to_output(out_root, target)


def _write_sidecar(
    item: WorkItem,
    ds: Dataset,
    rows: list[ManifestRow],
    fmt: MetadataFormat,
    out_root: Path,
) -> ManifestRow:
    """`OUT/<base>.txt` or `.json` beside the images (CONTRACT.md), and its manifest row."""
    text = sidecar_txt(ds, rows) if fmt is MetadataFormat.TXT else sidecar_json(ds, rows)
    output = _write_output(out_root, f"{item.base}.{fmt.value}", text.encode("utf-8"))
    return ManifestRow(source=item.source, output=output, kind="metadata", note=item.note)


def convert_one(
    item: WorkItem, options: ConvertOptions, out_root: str | os.PathLike[str]
) -> FileResult:
    """Convert one input; every expected problem becomes a `skipped` or `error` result."""
    return _guarded(
        item.source, item.seq, item.note, lambda: _convert_file(item, options, Path(out_root))
    )


def convert_series(
    item: SeriesItem, options: ConvertOptions, out_root: str | os.PathLike[str]
) -> FileResult:
    """Make one series video (`--series-video`); never raises for a per-series problem."""
    return _guarded(
        item.source, item.seq, item.note, lambda: _series_video(item, options, Path(out_root))
    )


def _series_video(item: SeriesItem, options: ConvertOptions, out_root: Path) -> list[ManifestRow]:
    clip = SliceClip(item.paths, item.rows, item.columns)
    first = decoding.read_dataset(item.paths[0], stop_before_pixels=True)
    work = WorkItem(item.source, item.base, item.note, item.seq, item.paths[0])
    rows = _write_videos(work, clip, first, options, out_root)
    for row in rows:
        row.kind = "series-video"
    return rows


def _guarded(source: str, seq: int, note: str, work: Callable[[], list[ManifestRow]]) -> FileResult:
    """Run one unit of work, turning expected faults into `skipped`/`error` results."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            rows = work()
        return FileResult(source, "ok", rows, seq=seq)
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
    row = ManifestRow(source=source, status=status, error=reason, note=note)
    return FileResult(source, status, [row], reason, detail, seq=seq)


def convert_many(
    items: list[WorkItem], options: ConvertOptions, out_root: str | os.PathLike[str]
) -> list[FileResult]:
    """Convert a chunk of inputs in one task: amortises a process pool's per-task overhead."""
    return [convert_one(item, options, out_root) for item in items]
