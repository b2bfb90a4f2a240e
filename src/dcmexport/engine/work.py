"""The unit of batch work: convert one input, never raising for a per-file problem.

`convert_one`, `convert_many` and `convert_series_many` are top-level and take only picklable
arguments, so the same code runs in-process, in a local process pool and on Dask workers. A
broken file in a batch of 100 000 becomes one `error` row; the rest go on. The engine reads
the input through its source and hands the dataset to the exporters that the options ask for.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
import warnings
from collections.abc import Callable

from .. import sources
from ..dicom import decoding
from ..errors import DcmExportError, InputReadError, NoPixelDataError, NotDicomError
from ..exporters import SeriesJob, export_instance, export_series, open_instance
from ..manifest import ManifestRow, Status
from ..options import ConvertOptions
from ..sources import InputRef
from ..store import LocalStore, Store


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One input, the output base claimed for it (relative to OUT, no extension), and its
    position in discovery order (the manifest's order).

    `frame_bases` are the claimed bases of the stills a ``{frame}`` template names, as
    (frame number, base); empty when stills go in the folder named after `base`.
    """

    #: the input as the manifest names it (as found: relative paths stay relative)
    source: str
    #: the input to read, with an absolute path
    ref: InputRef
    base: str
    note: str = ""
    seq: int = 0
    frame_bases: tuple[tuple[int, str], ...] = ()


@dataclasses.dataclass
class FileResult:
    """What happened to one input: manifest rows, and a traceback for `-v` if it crashed."""

    source: str
    status: Status | str
    rows: list[ManifestRow]
    reason: str = ""
    detail: str = ""
    seq: int = 0
    up_to_date: bool = False


def failure_reason(exc: BaseException) -> str:
    """The one-line reason for an exception nobody foresaw (a bug or an odd fault)."""
    return f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def guarded(source: str, seq: int, note: str, work: Callable[[], list[ManifestRow]]) -> FileResult:
    """Run one unit of work, turning expected faults into `skipped`/`error` results."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            rows = work()
        return FileResult(source, Status.OK, rows, seq=seq)
    except (NotDicomError, NoPixelDataError) as exc:
        status, reason, detail = Status.SKIPPED, str(exc), ""
    except DcmExportError as exc:
        status, reason, detail = Status.ERROR, str(exc), ""
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug or an unforeseen fault: report it, keep the batch going
        status, reason, detail = Status.ERROR, failure_reason(exc), traceback.format_exc()
    row = ManifestRow(source=source, status=status, error=reason, note=note)
    return FileResult(source, status, [row], reason, detail, seq=seq)


def _convert(item: WorkItem, options: ConvertOptions, store: Store) -> list[ManifestRow]:
    if item.ref.problem:
        raise InputReadError(item.ref.problem)
    data = sources.open_input(item.ref)
    ds = decoding.read_dataset(data)
    instance = open_instance(
        ds,
        source=item.source,
        base=item.base,
        note=item.note,
        frame_bases=dict(item.frame_bases),
        pixel_path=data if isinstance(data, str) else None,
    )
    return export_instance(instance, options, store)


def convert_one(
    item: WorkItem, options: ConvertOptions, out_root: str | os.PathLike[str] | Store
) -> FileResult:
    """Convert one input; every expected problem becomes a `skipped` or `error` result."""
    store = LocalStore(out_root) if isinstance(out_root, (str, os.PathLike)) else out_root
    return guarded(item.source, item.seq, item.note, lambda: _convert(item, options, store))


def convert_many(items: list[WorkItem], options: ConvertOptions, store: Store) -> list[FileResult]:
    """Convert a chunk of inputs in one task: amortises a process pool's per-task overhead."""
    return [convert_one(item, options, store) for item in items]


def convert_series(job: SeriesJob, options: ConvertOptions, store: Store) -> FileResult:
    """The series-level outputs of one series (`--series-video`); never raises for it."""
    return guarded(job.source, job.seq, job.note, lambda: export_series(job, options, store))


def convert_series_many(
    jobs: list[SeriesJob], options: ConvertOptions, store: Store
) -> list[tuple[str, FileResult]]:
    """Series outputs for a chunk of series (one executor task), keyed by series."""
    return [(job.key, convert_series(job, options, store)) for job in jobs]
