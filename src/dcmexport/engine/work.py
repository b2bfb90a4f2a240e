"""The unit of batch work: convert one input, never raising for a per-file problem.

`convert_one`, `convert_many` and `convert_series_many` are top-level and take only picklable
arguments, so the same code runs in-process, in a local process pool and on Dask workers. A
broken file in a batch of 100 000 becomes one `error` row; the rest go on. The engine reads
the input through its source and hands the dataset to the exporters that the options ask for.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import sources
from ..dicom import decoding, limits
from ..errors import (
    DcmExportError,
    ExcludedError,
    InputReadError,
    NoPixelDataError,
    NotDicomError,
    StoreError,
)
from ..exporters import (
    DicomObject,
    SeriesJob,
    export_instance,
    export_object,
    export_series,
    objects_wanted,
    open_instance,
)
from ..manifest import ManifestRow, Status
from ..options import ConvertOptions, MetadataPhi
from ..sources import InputRef
from ..store import LocalStore, Store
from . import faults, replay

if TYPE_CHECKING:  # de-identification loads with the first run that asks for it
    from ..dicom.deid import DeidOptions

log = logging.getLogger(__name__)


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
    #: the resume state's key when it must not be `source` (de-identified runs: a keyed
    #: hash of the input's path, which the state never stores in clear)
    state_key: str = ""

    @property
    def key(self) -> str:
        """The input's key in the resume state."""
        return self.state_key or self.source


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
    #: taken in the worker, so the main process stats nothing per file (`RunState.record`):
    #: the input's fingerprint before it was read, and (size, mtime_ns) of each output
    fingerprint: tuple[int, int] | None = None
    written: dict[str, tuple[int, int] | None] | None = None


def guarded(source: str, seq: int, note: str, work: Callable[[], list[ManifestRow]]) -> FileResult:
    """Run one unit of work, turning expected faults into `skipped`/`error` results."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            rows = work()
        return FileResult(source, Status.OK, rows, seq=seq)
    except (NotDicomError, NoPixelDataError, ExcludedError) as exc:
        status, reason, detail = Status.SKIPPED, str(exc), ""
    except StoreError:
        raise
    except DcmExportError as exc:
        status, reason, detail = Status.ERROR, str(exc), ""
    except faults.PASS_THROUGH:
        raise
    except BaseException as exc:  # MemoryError, a Rust panic, a bug: one row, batch goes on
        if (fault := faults.store_fault(exc)) is not None:  # disk full: stops the run
            raise fault from None
        status, reason, detail = Status.ERROR, faults.plain_reason(exc), traceback.format_exc()
    row = ManifestRow(source=source, status=status, error=reason, note=note)
    return FileResult(source, status, [row], reason, detail, seq=seq)


def part_failed(result: FileResult) -> FileResult:
    """An output an exporter refused with an error (a volume part) fails its input or series:
    it is reported, counted in the exit status, and retried on a rerun. The rows written
    beside it stay in the manifest."""
    if result.status == Status.OK:
        failed = [row for row in result.rows if row.status == Status.ERROR]
        if failed:
            result.status, result.reason = Status.ERROR, failed[0].error
    return result


def _convert(
    item: WorkItem,
    options: ConvertOptions,
    store: Store,
    deid: DeidOptions | None,
    attempt: replay.Attempt | None = None,
) -> list[ManifestRow]:
    if item.ref.problem:
        raise InputReadError(item.ref.problem)
    data = sources.open_input(item.ref)
    walked = attempt.dataset() if attempt is not None else None  # read once, not twice
    ds = walked if walked is not None else decoding.read_dataset(data)
    decoding.check_limits(ds)  # before anything is sized by the header's counts
    note, metadata_ds = item.note, None
    if deid is not None and options.anonymize:  # once, before any exporter sees it
        from .deid import deidentified

        ds, note = deidentified(ds, options, deid, note)
    elif deid is not None and options.metadata_phi is MetadataPhi.NONE:
        from .deid import sidecar_header

        metadata_ds = sidecar_header(ds, deid)
    if objects_wanted(options):
        return export_object(DicomObject(ds, item.source, item.base, note), options, store)
    instance = open_instance(
        ds,
        source=item.source,
        base=item.base,
        note=note,
        frame_bases=dict(item.frame_bases),
        pixel_path=data if isinstance(data, str) else None,
        metadata_ds=metadata_ds,
    )
    rows = export_instance(instance, options, store)
    repairs = decoding.repair_notes(ds)  # what decoding had to repair, on every output
    for row in rows:
        row.note = "; ".join(n for n in (row.note, *repairs) if n)
    if attempt is not None and attempt.learn:
        converted = replay.Converted(item.source, item.base, item.note, rows)
        replay.learn(attempt, ds, converted, options, store)
    return rows


def _replayed(
    attempt: replay.Attempt, item: WorkItem, options: ConvertOptions, store: Store
) -> FileResult | None:
    """The input converted by its series' plan (`replay`), or None: the general path."""
    plan, pixels = attempt.plan, attempt.pixels
    if plan is None or pixels is None:
        return None
    try:
        row = replay.replay(plan, pixels, item.source, item.base, item.note, store)
    except Exception:  # a codestream, a write failing now: the general path decides
        log.debug("replay of %s failed: the general path converts it", item.seq, exc_info=True)
        return None
    return FileResult(item.source, Status.OK, [row], seq=item.seq)


def convert_one(
    item: WorkItem,
    options: ConvertOptions,
    out_root: str | os.PathLike[str] | Store,
    deid: DeidOptions | None = None,
) -> FileResult:
    """Convert one input; every expected problem becomes a `skipped` or `error` result.

    With `deid` and ``options.anonymize`` the input is de-identified before anything is
    written, and the result names it by its pseudonymous id only.
    """
    store = LocalStore(out_root) if isinstance(out_root, (str, os.PathLike)) else out_root
    fingerprint = sources.fingerprint(item.ref)  # before the read: a later change redoes it
    with limits.applied(options.limits):
        attempt = None
        if deid is None and not item.ref.problem:
            attempt = replay.start(item.ref.kind, str(item.ref.path), item.frame_bases, options)
        result = _replayed(attempt, item, options, store) if attempt is not None else None
        if result is None:
            result = part_failed(
                guarded(
                    item.source,
                    item.seq,
                    item.note,
                    lambda: _convert(item, options, store, deid, attempt),
                )
            )
    result.fingerprint = fingerprint
    result.written = {r.output: store.stat(r.output) for r in result.rows if r.output}
    if not options.anonymize:
        return result
    from .deid import redacted

    return redacted(result, item.ref)


def convert_many(
    items: list[WorkItem],
    options: ConvertOptions,
    store: Store,
    deid: DeidOptions | None = None,
) -> list[FileResult]:
    """Convert a chunk of inputs in one task: amortises a process pool's per-task overhead
    (and lets a source fetch the chunk together: `sources.prefetched`)."""
    with sources.prefetched([item.ref for item in items]):
        return [convert_one(item, options, store, deid) for item in items]


def convert_series(job: SeriesJob, options: ConvertOptions, store: Store) -> FileResult:
    """The series-level outputs of one series (`--series-video`); never raises for it."""
    with limits.applied(options.limits):
        return part_failed(
            guarded(job.source, job.seq, job.note, lambda: export_series(job, options, store))
        )


def convert_series_many(
    jobs: list[SeriesJob], options: ConvertOptions, store: Store
) -> list[tuple[str, FileResult]]:
    """Series outputs for a chunk of series (one executor task), keyed by series."""
    return [(job.key, convert_series(job, options, store)) for job in jobs]


def failed_result(item: WorkItem, reason: str) -> FileResult:
    """The result of an input whose worker process died or hung on it (`pool.resilient_map`)."""
    row = ManifestRow(source=item.source, status=Status.ERROR, error=reason, note=item.note)
    return FileResult(item.source, Status.ERROR, [row], reason, seq=item.seq)


def failed_series_result(job: SeriesJob, reason: str) -> tuple[str, FileResult]:
    """`failed_result` for a series job (`convert_series_many`'s item)."""
    row = ManifestRow(source=job.source, status=Status.ERROR, error=reason, note=job.note)
    return job.key, FileResult(job.source, Status.ERROR, [row], reason, seq=job.seq)
